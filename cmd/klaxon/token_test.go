package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/klaxon-oncall/klaxon/escalation/boltstore"
	"github.com/klaxon-oncall/klaxon/internal/auth"
	"github.com/klaxon-oncall/klaxon/internal/testtools"
)

// TestTokenCommand manages tokens in a stopped server's store: the store
// keeps hashes only, and a revoked token no longer authenticates.
func TestTokenCommand(t *testing.T) {
	data := t.TempDir()
	rota := filepath.Join(testtools.Root(), "rota.yaml")
	now := func() time.Time { return time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC) }
	tok := func(args ...string) (int, string, string) {
		var out, errb bytes.Buffer
		code := runToken(append(args, "--data", data, "--rota", rota), &out, &errb, now)
		return code, strings.TrimSpace(out.String()), errb.String()
	}
	authenticate := func(token string) (string, bool) {
		st, err := boltstore.Open(data, boltstore.Options{})
		if err != nil {
			t.Fatal(err)
		}
		defer st.Close()
		p, admin, ok := auth.NewStore(st, "").Authenticate(token)
		if admin {
			t.Fatal("a person token is admin")
		}
		return p, ok
	}
	code, alice, msg := tok("create", "--person", "alice")
	if code != 0 || alice == "" || !strings.Contains(msg, "revoke") {
		t.Fatalf("create: %d %q %q", code, alice, msg)
	}
	if p, ok := authenticate(alice); !ok || p != "alice" {
		t.Fatalf("the printed token does not authenticate as alice: %q %v", p, ok)
	}
	db, _ := os.ReadFile(filepath.Join(data, "klaxon.db"))
	if len(db) == 0 || bytes.Contains(db, []byte(alice)) {
		t.Fatal("the store holds the token itself (or there is no klaxon.db)")
	}
	code, feedURL, _ := tok("create", "--feed", "--rotation", "primary", "--public-url", "https://klaxon.example.org/")
	if code != 0 || !strings.HasPrefix(feedURL, "https://klaxon.example.org/rota.ics?token=") {
		t.Fatalf("feed: %d %q", code, feedURL)
	}
	for _, bad := range [][]string{
		{"create", "--person", "zed"},             // not in the rota
		{"create", "--feed", "--rotation", "ops"}, // not in the rota
		{"create"},                                  // nobody
		{"create", "--rotation", "primary"},         // an API token needs a person
		{"create", "--feed", "--person", "bad id!"}, // malformed
		{"revoke", "nosuch"},
		{"sessions", "end", "nosuch"},
	} {
		if code, _, _ := tok(bad...); code == 0 {
			t.Errorf("%v succeeded", bad)
		}
	}
	code, list, _ := tok("list")
	if code != 0 || !strings.Contains(list, "person:alice") || !strings.Contains(list, "rotation:primary") || strings.Contains(list, alice) {
		t.Fatalf("list: %d\n%s", code, list)
	}
	var id string
	for _, line := range strings.Split(list, "\n") {
		if strings.Contains(line, "person:alice") {
			id = strings.Fields(line)[0]
		}
	}
	if code, _, msg := tok("revoke", id); code != 0 {
		t.Fatalf("revoke %s: %s", id, msg)
	}
	if _, ok := authenticate(alice); ok {
		t.Fatal("a revoked token still authenticates")
	}
	// With etcd the data directory holds no tokens: the CLI says to ask a replica.
	t.Setenv("KLAXON_STORE", "etcd")
	if code, _, msg := tok("list"); code == 0 || !strings.Contains(msg, "--server") {
		t.Fatalf("list with KLAXON_STORE=etcd: %d %s", code, msg)
	}
}

func TestCLIRefusesTokenFlag(t *testing.T) {
	var out, errb bytes.Buffer
	code := run(context.Background(), []string{"ack", "--api-token", "s3cret-on-the-command-line", "1"}, nil, &out, &errb)
	if code != 2 || !strings.Contains(errb.String(), "KLAXON_API_TOKEN") || strings.Contains(errb.String(), "s3cret-on-the-command-line") {
		t.Fatalf("exit %d: %s", code, errb.String())
	}
}
