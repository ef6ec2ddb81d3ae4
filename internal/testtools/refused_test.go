package testtools

import (
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"syscall"
	"testing"
)

// The refused URL refuses, and servers started after it never get its port.
func TestRefusedURL(t *testing.T) {
	u := RefusedURL(t)
	for range 50 {
		srv := httptest.NewServer(http.NotFoundHandler())
		if srv.URL == u {
			t.Fatalf("a new server got the refused URL's port: %s", u)
		}
		srv.Close()
	}
	_, err := net.Dial("tcp", strings.TrimPrefix(u, "http://"))
	if !errors.Is(err, syscall.ECONNREFUSED) {
		t.Fatalf("dialling %s: %v, want connection refused", u, err)
	}
}
