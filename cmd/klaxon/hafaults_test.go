package main

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

// TestBoundReads: a read waits on the store no longer than the bound and a
// failed read answers 503 with the reason; writes and event streams keep
// their own deadlines; /readyz answers at once while etcd is known down.
func TestBoundReads(t *testing.T) {
	const bound = 50 * time.Millisecond
	// store is a handler reading a store that answers only when its context ends.
	store := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Query().Get("ok") != "" {
			w.Write([]byte(`{"incidents":[]}`))
			return
		}
		_, has := r.Context().Deadline()
		if !has {
			w.Header().Set("X-No-Deadline", "1")
			w.WriteHeader(http.StatusAccepted)
			return
		}
		<-r.Context().Done()
		http.Error(w, "could not read incidents", http.StatusInternalServerError)
	})
	for _, tc := range []struct {
		name, method, path, accept, unreachable string
		code                                    int
		body                                    string
	}{
		{"read answered", "GET", "/api/v1/incidents?ok=1", "", "", 200, `{"incidents":[]}`},
		{"read past its bound", "GET", "/api/v1/incidents", "", "", 503, "etcd did not answer within 50ms"},
		{"read with etcd down", "GET", "/api/v1/incidents", "", "etcd unreachable: 0 of 3 members answer", 503, "etcd unreachable: 0 of 3 members answer"},
		{"web page with etcd down", "GET", "/incidents/1", "text/html", "etcd unreachable: 1 of 3 members answer", 503, "Klaxon cannot read its store just now: etcd unreachable: 1 of 3 members answer"},
		{"readyz with etcd down", "GET", "/readyz", "", "etcd unreachable: 0 of 3 members answer", 503, "etcd unreachable: 0 of 3 members answer"},
		{"write keeps its own deadline", "POST", "/webhook/alertmanager", "", "", 202, ""},
		{"event stream lives on", "GET", "/events", "text/event-stream", "", 202, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := boundReads(store, bound, func() string { return tc.unreachable })
			req := httptest.NewRequest(tc.method, tc.path, nil)
			if tc.accept != "" {
				req.Header.Set("Accept", tc.accept)
			}
			ctx, cancel := context.WithCancel(context.Background()) // no deadline of its own
			defer cancel()
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, req.WithContext(ctx))
			if rec.Code != tc.code || !strings.Contains(rec.Body.String(), tc.body) {
				t.Fatalf("%s %s: %d %q, want %d %q", tc.method, tc.path, rec.Code, rec.Body, tc.code, tc.body)
			}
			if strings.Contains(rec.Body.String(), "could not read") {
				t.Fatalf("the handler's own error leaked into the replaced answer: %q", rec.Body)
			}
			if tc.code == 503 && strings.HasPrefix(tc.path, "/api/") {
				var e map[string]string
				if err := json.Unmarshal(rec.Body.Bytes(), &e); err != nil || e["error"] == "" {
					t.Fatalf("API 503 body %q is not {\"error\": ...}", rec.Body)
				}
			}
		})
	}
}

// TestEtcdReason counts the members that answer, and a quorum without a
// Raft leader is no better than none.
func TestEtcdReason(t *testing.T) {
	for _, tc := range []struct {
		name    string
		members []etcdMember
		want    string
	}{
		{"all answer", []etcdMember{{Reachable: true, Leader: true}, {Reachable: true}, {Reachable: true}}, ""},
		{"quorum", []etcdMember{{Reachable: true}, {Error: "dial"}, {Reachable: true, Leader: true}}, ""},
		{"one of three", []etcdMember{{Reachable: true}, {Error: "dial"}, {Error: "dial"}}, "etcd unreachable: 1 of 3 members answer"},
		{"none", []etcdMember{{Error: "dial"}, {Error: "dial"}, {Error: "dial"}}, "etcd unreachable: 0 of 3 members answer"},
		{"no leader", []etcdMember{{Reachable: true, Error: "no Raft leader"}, {Reachable: true, Error: "no Raft leader"}, {Error: "dial"}},
			"etcd unreachable: 2 of 3 members answer, but none has a Raft leader"},
	} {
		h := &etcdHealth{view: etcdView{Members: tc.members}}
		if got := h.reasonLocked(); got != tc.want {
			t.Errorf("%s: %q, want %q", tc.name, got, tc.want)
		}
	}
}
