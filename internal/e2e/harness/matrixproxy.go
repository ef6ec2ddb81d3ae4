package harness

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
)

// MatrixProxy stands in front of a homeserver and, while broken, behaves as
// the homeserver did on the night Klaxon exists for: every send is answered
// 200 with a new, made-up event id and relayed to nobody, and reads of
// events (/sync, /messages) hang until the proxy heals or the client gives
// up. Everything else (whoami, joined rooms, power levels: what an account
// check asks) is relayed, so those checks still pass.
type MatrixProxy struct {
	srv    *httptest.Server
	broken atomic.Bool

	mu     sync.Mutex
	healed chan struct{} // closed when the proxy heals
	// Swallowed counts sends answered without relaying them.
	swallowed atomic.Int64
}

// StartMatrixProxy starts a proxy in front of the homeserver at upstream,
// healthy until Break.
func StartMatrixProxy(tb testing.TB, upstream string) *MatrixProxy {
	tb.Helper()
	u, err := url.Parse(upstream)
	if err != nil {
		tb.Fatalf("matrix proxy: %v", err)
	}
	p := &MatrixProxy{healed: make(chan struct{})}
	close(p.healed)
	rp := httputil.NewSingleHostReverseProxy(u)
	rp.FlushInterval = -1
	p.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if p.broken.Load() {
			switch path := r.URL.Path; {
			case r.Method == http.MethodPut && strings.Contains(path, "/send/"):
				p.swallowed.Add(1)
				w.Header().Set("Content-Type", "application/json")
				fmt.Fprintf(w, `{"event_id":"$%s"}`, randomID())
				return
			case strings.HasSuffix(path, "/sync") || strings.HasSuffix(path, "/messages"):
				p.mu.Lock()
				healed := p.healed
				p.mu.Unlock()
				select {
				case <-healed: // relay once healed
				case <-r.Context().Done():
					return
				}
			}
		}
		rp.ServeHTTP(w, r)
	}))
	tb.Cleanup(p.srv.Close)
	return p
}

// URL is the proxy's base URL, to give Klaxon as its homeserver.
func (p *MatrixProxy) URL() string { return p.srv.URL }

// Break makes the proxy swallow sends and stall reads.
func (p *MatrixProxy) Break() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.broken.Swap(true) {
		return
	}
	p.healed = make(chan struct{})
}

// Heal makes the proxy relay everything again; stalled reads go on.
func (p *MatrixProxy) Heal() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.broken.Swap(false) {
		close(p.healed)
	}
}

// Swallowed counts the sends the proxy answered without relaying them.
func (p *MatrixProxy) Swallowed() int64 { return p.swallowed.Load() }

func randomID() string {
	b := make([]byte, 12)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}
