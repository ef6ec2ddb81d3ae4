package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/klaxon-oncall/klaxon/escalation/etcdstore"
	"github.com/klaxon-oncall/klaxon/escalation/rota"
	"github.com/klaxon-oncall/klaxon/internal/selftest"
	"github.com/klaxon-oncall/klaxon/internal/web"
	"github.com/klaxon-oncall/klaxon/notifiers"
)

// What a replica tells while etcd, or part of it, is down: reads answer
// within --store-read-timeout, with the reason when etcd cannot be reached,
// and the cluster view answers from the replica's own knowledge.

// DefaultStoreReadTimeout bounds a read of the API or the web pages on etcd.
const DefaultStoreReadTimeout = 2 * time.Second

// readyTimeout bounds /readyz, so a probe with a 1s timeout gets an answer.
const readyTimeout = 800 * time.Millisecond

// following is the Monitor's Config.Follower: with etcd, true while this
// replica does not lead; nil with bolt (one replica, always checking).
func following(es *etcdstore.Store, el **election) func() bool {
	if es == nil {
		return nil
	}
	return func() bool { return *el == nil || !(*el).Leading() }
}

// webHealth is the web status page's view of the checks: the leader's (as
// recorded, on a follower), and the coverage computed from it.
func webHealth(ctx context.Context, mon *selftest.Monitor, r *rota.Rota, configured []notifiers.Channel) web.Health {
	rep, err := mon.StatusContext(ctx)
	if err != nil {
		rep = mon.Status() // the page's own store reads answer 503 with the reason
	}
	hb := mon.Heartbeat()
	if rep.Heartbeat != nil {
		hb = *rep.Heartbeat
	}
	up := func(ch notifiers.Channel) bool {
		for _, c := range rep.Channels {
			if c.Channel == ch {
				return c.Status != notifiers.Down
			}
		}
		return false
	}
	return web.Health{Report: rep, Heartbeat: hb,
		Coverage: selftest.RotaCoverage(r, time.Now(), selftest.DefaultCoverageHorizon, configured, up)}
}

// etcdMember is one member as this replica last found it.
type etcdMember struct {
	Endpoint  string `json:"endpoint"`
	ID        string `json:"id,omitempty"`
	Reachable bool   `json:"reachable"`
	// Leader marks the member that is the Raft leader.
	Leader   bool   `json:"leader,omitempty"`
	RaftTerm uint64 `json:"raftTerm,omitempty"`
	Version  string `json:"version,omitempty"`
	// LastContact is when the member last answered this replica.
	LastContact time.Time `json:"lastContact,omitzero"`
	Error       string    `json:"error,omitempty"`
}

// etcdView is the "etcd" field of GET /api/v1/cluster.
type etcdView struct {
	// Reachable: a quorum of members answers and one of them leads.
	Reachable bool         `json:"reachable"`
	Members   []etcdMember `json:"members"`
	// LastContact is when a quorum last answered this replica.
	LastContact time.Time `json:"lastContact,omitzero"`
	// CheckedAt is when the members were last asked.
	CheckedAt time.Time `json:"checkedAt,omitzero"`
	// Error says why etcd is not reachable.
	Error string `json:"error,omitempty"`
}

// etcdHealth asks every member for its status every second, so a replica
// knows the state of etcd without waiting on it: the reason a read fails,
// /readyz's answer and the cluster view come from here.
type etcdHealth struct {
	cli       *clientv3.Client
	endpoints []string
	timeout   time.Duration
	every     time.Duration

	mu   sync.Mutex
	view etcdView
}

func newEtcdHealth(cli *clientv3.Client) *etcdHealth {
	h := &etcdHealth{cli: cli, endpoints: cli.Endpoints(), timeout: time.Second, every: time.Second}
	for _, ep := range h.endpoints {
		h.view.Members = append(h.view.Members, etcdMember{Endpoint: ep, Error: "not asked yet"})
	}
	h.view.Error = h.reasonLocked()
	return h
}

// run asks the members until ctx ends.
func (h *etcdHealth) run(ctx context.Context) {
	t := time.NewTimer(0)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		h.check(ctx)
		t.Reset(h.every)
	}
}

// check asks every member once, together.
func (h *etcdHealth) check(ctx context.Context) {
	got := make([]etcdMember, len(h.endpoints))
	var wg sync.WaitGroup
	for i, ep := range h.endpoints {
		wg.Go(func() {
			cctx, cancel := context.WithTimeout(ctx, h.timeout)
			defer cancel()
			m := etcdMember{Endpoint: ep}
			st, err := h.cli.Status(cctx, ep)
			if err != nil {
				m.Error = oneLineErr(err)
			} else {
				m.Reachable, m.ID = true, fmt.Sprintf("%x", st.Header.MemberId)
				m.Leader, m.RaftTerm, m.Version = st.Leader == st.Header.MemberId, st.RaftTerm, st.Version
				m.LastContact = time.Now()
				if st.Leader == 0 {
					m.Error = "no Raft leader"
				}
			}
			got[i] = m
		})
	}
	wg.Wait()
	if ctx.Err() != nil {
		return
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	for i := range got {
		if !got[i].Reachable {
			got[i].LastContact = h.view.Members[i].LastContact
		}
	}
	h.view.Members = got
	h.view.CheckedAt = time.Now()
	h.view.Error = h.reasonLocked()
	h.view.Reachable = h.view.Error == ""
	if h.view.Reachable {
		h.view.LastContact = h.view.CheckedAt
	}
}

// reasonLocked says why etcd cannot be reached ("" when it can).
func (h *etcdHealth) reasonLocked() string {
	answer, led := 0, false
	for _, m := range h.view.Members {
		if m.Reachable {
			answer++
			led = led || m.Error == ""
		}
	}
	n := len(h.view.Members)
	switch {
	case answer <= n/2:
		return fmt.Sprintf("etcd unreachable: %d of %d members answer", answer, n)
	case !led:
		return fmt.Sprintf("etcd unreachable: %d of %d members answer, but none has a Raft leader", answer, n)
	}
	return ""
}

// snapshot returns the replica's knowledge of etcd.
func (h *etcdHealth) snapshot() etcdView {
	h.mu.Lock()
	defer h.mu.Unlock()
	v := h.view
	v.Members = append([]etcdMember(nil), h.view.Members...)
	return v
}

// unreachable is why etcd cannot be reached, or "".
func (h *etcdHealth) unreachable() string {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.view.Error
}

func oneLineErr(err error) string { return strings.Join(strings.Fields(err.Error()), " ") }

// boundReads gives every read (GET and HEAD, but the web's event stream) a
// deadline of timeout, /readyz one of readyTimeout, so no read waits on an
// etcd that cannot answer; a read that fails with the server's fault while
// etcd is unreachable, or after its deadline, answers 503 with the reason.
// /readyz answers 503 at once while etcd is known to be unreachable.
func boundReads(next http.Handler, timeout time.Duration, unreachable func() string) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if (r.Method != http.MethodGet && r.Method != http.MethodHead) || streams(r) {
			next.ServeHTTP(w, r)
			return
		}
		d := timeout
		if r.URL.Path == "/readyz" {
			if why := unreachable(); why != "" {
				writeUnavailable(w, r, why)
				return
			}
			d = min(d, readyTimeout)
		}
		ctx, cancel := context.WithTimeout(r.Context(), d)
		defer cancel()
		bw := &boundWriter{ResponseWriter: w, r: r, ctx: ctx, timeout: d, unreachable: unreachable}
		next.ServeHTTP(bw, r.WithContext(ctx))
	})
}

// streams reports whether r asks for an event stream, which lives long.
func streams(r *http.Request) bool {
	return r.URL.Path == "/events" || strings.Contains(r.Header.Get("Accept"), "text/event-stream")
}

func writeUnavailable(w http.ResponseWriter, r *http.Request, why string) {
	w.Header().Del("Content-Length")
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("Retry-After", "1")
	if strings.HasPrefix(r.URL.Path, "/api/") || r.URL.Path == "/readyz" || !strings.Contains(r.Header.Get("Accept"), "text/html") {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusServiceUnavailable)
		_ = json.NewEncoder(w).Encode(map[string]string{"error": why})
		return
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.WriteHeader(http.StatusServiceUnavailable)
	fmt.Fprintf(w, "Klaxon cannot read its store just now: %s. Try again in a moment.\n", why)
}

// boundWriter turns a handler's 5xx into the 503 with the reason when the
// read's deadline passed or etcd is unreachable.
type boundWriter struct {
	http.ResponseWriter
	r           *http.Request
	ctx         context.Context
	timeout     time.Duration
	unreachable func() string
	wrote       bool
	replaced    bool
}

// WriteHeader implements http.ResponseWriter.
func (b *boundWriter) WriteHeader(code int) {
	if b.wrote {
		return
	}
	b.wrote = true
	if code >= 500 {
		why := b.unreachable()
		if why == "" && b.ctx.Err() != nil {
			why = fmt.Sprintf("etcd did not answer within %s", b.timeout)
		}
		if why != "" {
			b.replaced = true
			writeUnavailable(b.ResponseWriter, b.r, why)
			return
		}
	}
	b.ResponseWriter.WriteHeader(code)
}

// Write implements http.ResponseWriter; a replaced answer's body is dropped.
func (b *boundWriter) Write(p []byte) (int, error) {
	if !b.wrote {
		b.WriteHeader(http.StatusOK)
	}
	if b.replaced {
		return len(p), nil
	}
	return b.ResponseWriter.Write(p)
}

// Unwrap lets http.ResponseController reach the connection.
func (b *boundWriter) Unwrap() http.ResponseWriter { return b.ResponseWriter }

// knownInfo is the election's view from the replica's own knowledge when etcd
// cannot be read: its role, the leader and replicas it last read, and etcd's
// members as it last found them.
type knownInfo struct {
	el     *election
	health *etcdHealth

	mu   sync.Mutex
	last leaderInfo
	at   time.Time
}

// info implements the cluster handler's status: never an error.
func (k *knownInfo) info(ctx context.Context) (leaderInfo, error) {
	view := k.health.snapshot()
	var info leaderInfo
	var err error
	if view.Error == "" {
		info, err = k.el.info(ctx)
	} else {
		err = fmt.Errorf("%s", view.Error)
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	if err == nil {
		k.last, k.at = info, time.Now()
	} else {
		info = k.last
		info.Store, info.Replica, info.Leading, info.LeaseTTL = "etcd", k.el.cfg.replica, k.el.Leading(), k.el.cfg.leaderTTL.String()
		info.LeaseLeft = ""
		info.ElectionReadAt = k.at
		info.ElectionError = "reading the election: " + oneLineErr(err)
	}
	info.Etcd = &view
	return info, nil
}
