//go:build unix

package testtools

import (
	"fmt"
	"syscall"
	"testing"
)

// RefusedURL is an http://127.0.0.1:PORT URL that refuses connections for
// the rest of the test: a socket is bound to the port and never listens, so
// no server started meanwhile (this test's or a parallel one's) can be given
// the port, as it could after closing a server and reusing its address.
func RefusedURL(tb testing.TB) string {
	tb.Helper()
	fd, err := syscall.Socket(syscall.AF_INET, syscall.SOCK_STREAM, 0)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { syscall.Close(fd) })
	if err := syscall.Bind(fd, &syscall.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}}); err != nil {
		tb.Fatal(err)
	}
	sa, err := syscall.Getsockname(fd)
	if err != nil {
		tb.Fatal(err)
	}
	return fmt.Sprintf("http://127.0.0.1:%d", sa.(*syscall.SockaddrInet4).Port)
}
