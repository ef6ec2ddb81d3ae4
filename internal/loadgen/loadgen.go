// Package loadgen is the webhook sender of Klaxon's throughput benchmarks: a
// keep-alive HTTP/1.1 connection that writes a request and reads its response
// in the calling goroutine.
//
// net/http's Transport runs two goroutines per connection and hands every
// request and response between them; with 64 senders on the 2 cores Klaxon
// is measured on, that cost about 30 µs of CPU per webhook, a sixth of the
// machine, which the benchmarks then counted against Klaxon. In production
// Alertmanager runs on its own machine. The responses are still parsed by
// net/http (http.ReadResponse), so a malformed answer fails the benchmark.
package loadgen

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"time"
)

// Conn posts requests over one connection, one at a time.
type Conn struct {
	c    net.Conn
	r    *bufio.Reader
	host string
	buf  []byte
}

// Dial connects to addr (host:port).
func Dial(addr string) (*Conn, error) {
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		return nil, err
	}
	return &Conn{c: c, r: bufio.NewReader(c), host: addr}, nil
}

// Post sends body to path with the given bearer token and content type
// application/json, and returns the response's status code and body.
func (c *Conn) Post(path, token string, body []byte) (int, []byte, error) {
	c.buf = fmt.Appendf(c.buf[:0], "POST %s HTTP/1.1\r\nHost: %s\r\nUser-Agent: Alertmanager/0.28.1\r\n"+
		"Authorization: Bearer %s\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n", path, c.host, token, len(body))
	c.buf = append(c.buf, body...)
	if _, err := c.c.Write(c.buf); err != nil {
		return 0, nil, err
	}
	resp, err := http.ReadResponse(c.r, nil)
	if err != nil {
		return 0, nil, err
	}
	out, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		return 0, nil, err
	}
	if resp.Close {
		return resp.StatusCode, out, fmt.Errorf("the server closed the connection after a %d", resp.StatusCode)
	}
	return resp.StatusCode, out, nil
}

// Close closes the connection.
func (c *Conn) Close() error { return c.c.Close() }
