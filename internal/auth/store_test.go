package auth_test

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/klaxon-oncall/klaxon/escalation/boltstore"
	"github.com/klaxon-oncall/klaxon/internal/auth"
)

func openStore(t *testing.T) (*boltstore.Store, string) {
	t.Helper()
	dir := t.TempDir()
	st, err := boltstore.Open(dir, boltstore.Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return st, dir
}

// TestStoreSessions: a session lasts until it expires, is ended, or the
// token it was made from is revoked; only a person's API token makes one.
func TestStoreSessions(t *testing.T) {
	ctx := context.Background()
	st, _ := openStore(t)
	s := auth.NewStore(st, "admin-secret")
	now := time.Now()
	alice, aliceID, err := s.Create(ctx, auth.API, auth.Scope{Person: "alice"}, now)
	if err != nil {
		t.Fatal(err)
	}
	feed, _, err := s.Create(ctx, auth.Feed, auth.Scope{Rotation: "primary"}, now)
	if err != nil {
		t.Fatal(err)
	}
	for name, tok := range map[string]string{"admin": "admin-secret", "feed": feed, "unknown": "nope", "empty": ""} {
		if _, _, ok, err := s.StartSession(ctx, tok, now, time.Hour); ok || err != nil {
			t.Errorf("a session from the %s token: %v %v", name, ok, err)
		}
	}
	secret, ss, ok, err := s.StartSession(ctx, alice, now, time.Hour)
	if err != nil || !ok || ss.Person != "alice" || ss.TokenID != aliceID {
		t.Fatalf("start: %+v %v %v", ss, ok, err)
	}
	if got, ok, err := s.CheckSession(ctx, secret, now.Add(59*time.Minute)); !ok || err != nil || got.ID != ss.ID {
		t.Fatalf("check within its time: %v %v", ok, err)
	}
	if _, ok, _ := s.CheckSession(ctx, secret, now.Add(time.Hour)); ok {
		t.Fatal("an expired session is valid")
	}
	if _, ok, _ := s.CheckSession(ctx, secret, now); ok {
		t.Fatal("an expired session, once seen, was not deleted")
	}
	secret, _, _, _ = s.StartSession(ctx, alice, now, time.Hour)
	if err := s.EndSession(ctx, secret); err != nil {
		t.Fatal(err)
	}
	if _, ok, _ := s.CheckSession(ctx, secret, now); ok {
		t.Fatal("an ended session is valid")
	}
	secret, _, _, _ = s.StartSession(ctx, alice, now, time.Hour)
	list, err := s.Sessions(ctx, now)
	if err != nil || len(list) != 1 {
		t.Fatalf("sessions: %v %v", list, err)
	}
	if _, err := s.Revoke(ctx, aliceID); err != nil {
		t.Fatal(err)
	}
	if _, ok, _ := s.CheckSession(ctx, secret, now); ok {
		t.Fatal("a session of a revoked token is valid")
	}
	if _, err := s.Revoke(ctx, aliceID); !errors.Is(err, auth.ErrNoToken) {
		t.Fatalf("revoking twice: %v", err)
	}
	if _, err := s.EndSessionID(ctx, "snone"); !errors.Is(err, auth.ErrNoSession) {
		t.Fatalf("ending a missing session: %v", err)
	}
}

// TestStoreImport: a token file's tokens keep working once imported, and
// the store keeps their hashes only.
func TestStoreImport(t *testing.T) {
	ctx := context.Background()
	st, dir := openStore(t)
	path := filepath.Join(t.TempDir(), "tokens")
	tok, id, err := auth.Create(path, auth.API, auth.Scope{Person: "bob"}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	s := auth.NewStore(st, "")
	if n, err := s.Import(ctx, path); n != 1 || err != nil {
		t.Fatalf("import: %d %v", n, err)
	}
	if p, admin, ok := s.Authenticate(tok); !ok || admin || p != "bob" {
		t.Fatalf("imported token: %q %v %v", p, admin, ok)
	}
	list, err := s.List(ctx)
	if err != nil || len(list) != 1 || list[0].ID != id {
		t.Fatalf("list: %v %v", list, err)
	}
	os.WriteFile(path, []byte("garbage line\n"), 0o600)
	if _, err := s.Import(ctx, path); err == nil {
		t.Fatal("a malformed token file imported")
	}
	st.Close()
	b, _ := os.ReadFile(filepath.Join(dir, "klaxon.db"))
	if bytes.Contains(b, []byte(tok)) {
		t.Fatal("the store holds the token")
	}
}

// BenchmarkCheckSession is what every web request now pays to find its
// session (and the token it was made from) in a bbolt store.
func BenchmarkCheckSession(b *testing.B) {
	ctx := context.Background()
	dir := b.TempDir()
	st, err := boltstore.Open(dir, boltstore.Options{NoSync: true})
	if err != nil {
		b.Fatal(err)
	}
	defer st.Close()
	s := auth.NewStore(st, "")
	tok, _, _ := s.Create(ctx, auth.API, auth.Scope{Person: "alice"}, time.Now())
	secret, _, _, _ := s.StartSession(ctx, tok, time.Now(), time.Hour)
	now := time.Now()
	for b.Loop() {
		if _, ok, err := s.CheckSession(ctx, secret, now); !ok || err != nil {
			b.Fatal(ok, err)
		}
	}
}
