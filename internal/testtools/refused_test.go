package testtools

import (
	"errors"
	"net"
	"strings"
	"syscall"
	"testing"
)

// The refused URL refuses connections, and its port cannot be given to a
// server started after it (a closed server's port could).
func TestRefusedURL(t *testing.T) {
	u := RefusedURL(t)
	addr := strings.TrimPrefix(u, "http://")
	if l, err := net.Listen("tcp", addr); err == nil {
		l.Close()
		t.Fatalf("a new listener got %s, the refused URL's port", addr)
	}
	_, err := net.Dial("tcp", addr)
	if !errors.Is(err, syscall.ECONNREFUSED) {
		t.Fatalf("dialling %s: %v, want connection refused", u, err)
	}
}
