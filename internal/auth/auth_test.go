package auth

import (
	"encoding/base64"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestLoadOrCreate(t *testing.T) {
	path := filepath.Join(t.TempDir(), "sub", "api-token")
	tok, created, err := LoadOrCreate(path)
	if err != nil || !created {
		t.Fatalf("first call: created=%v err=%v", created, err)
	}
	raw, err := base64.RawURLEncoding.DecodeString(tok)
	if err != nil || len(raw) != TokenBytes {
		t.Fatalf("token is not %d random bytes in base64url: %v", TokenBytes, err)
	}
	fi, err := os.Stat(path)
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("token file mode %v, want 0600 (%v)", fi.Mode().Perm(), err)
	}
	again, created, err := LoadOrCreate(path)
	if err != nil || created || again != tok {
		t.Fatalf("second call must return the same token: created=%v err=%v", created, err)
	}
	other, _, _ := LoadOrCreate(filepath.Join(t.TempDir(), "x"))
	if other == tok {
		t.Fatal("two generated tokens are equal")
	}
	empty := filepath.Join(t.TempDir(), "empty")
	os.WriteFile(empty, []byte("\n"), 0o600)
	if _, _, err := LoadOrCreate(empty); err == nil || !strings.Contains(err.Error(), "empty") {
		t.Fatalf("empty token file: %v", err)
	}
}

func TestAuthenticate(t *testing.T) {
	path := filepath.Join(t.TempDir(), "tokens")
	now := time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)
	alice, aliceID, err := Create(path, API, Scope{Person: "alice"}, now)
	if err != nil {
		t.Fatal(err)
	}
	feed, _, err := Create(path, Feed, Scope{Rotation: "primary"}, now)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := os.ReadFile(path)
	if strings.Contains(string(b), alice) || strings.Contains(string(b), feed) {
		t.Fatal("the token file holds a token, not only its hash")
	}
	f := NewFile(path, "the-admin-token")
	tests := []struct {
		name, token  string
		person       string
		admin, known bool
	}{
		{"admin", "the-admin-token", "", true, true},
		{"person", alice, "alice", false, true},
		{"feed token is not an API token", feed, "", false, false},
		{"unknown", "nope", "", false, false},
		{"empty", "", "", false, false},
		{"admin with a suffix", "the-admin-token2", "", false, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, admin, ok := f.Authenticate(tt.token)
			if p != tt.person || admin != tt.admin || ok != tt.known {
				t.Fatalf("Authenticate = %q %v %v, want %q %v %v", p, admin, ok, tt.person, tt.admin, tt.known)
			}
		})
	}
	if s, ok := f.FeedScope(feed); !ok || s.Rotation != "primary" {
		t.Fatalf("feed scope %+v %v", s, ok)
	}
	if _, ok := f.FeedScope(alice); ok {
		t.Fatal("an API token reads feeds")
	}
	if err := Revoke(path, aliceID); err != nil {
		t.Fatal(err)
	}
	if _, _, ok := f.Authenticate(alice); ok {
		t.Fatal("a revoked token still authenticates")
	}
	if _, ok := f.FeedScope(feed); !ok {
		t.Fatal("revoking one token revoked another")
	}
	if err := Revoke(path, aliceID); err == nil {
		t.Fatal("revoking twice succeeded")
	}
	if NewFile(path, "").admin != nil {
		t.Fatal("an empty admin token is an admin token")
	}
	if _, _, ok := NewFile(path, "").Authenticate(""); ok {
		t.Fatal("empty token authenticates without an admin token")
	}
}

func TestMalformedTokenFileRejectsEverything(t *testing.T) {
	path := filepath.Join(t.TempDir(), "tokens")
	tok, _, _ := Create(path, API, Scope{Person: "alice"}, time.Now())
	f, _ := os.OpenFile(path, os.O_APPEND|os.O_WRONLY, 0)
	f.WriteString("garbage line\n")
	f.Close()
	if _, _, ok := NewFile(path, "").Authenticate(tok); ok {
		t.Fatal("a token from a malformed file authenticates")
	}
	if _, err := NewFile(path, "").List(); err == nil || !strings.Contains(err.Error(), ":2:") {
		t.Fatalf("error does not name the line: %v", err)
	}
}

func TestCreateRejects(t *testing.T) {
	path := filepath.Join(t.TempDir(), "tokens")
	for _, tt := range []struct {
		kind  Kind
		scope Scope
	}{
		{API, Scope{}}, {API, Scope{Rotation: "primary"}}, {Feed, Scope{}},
		{Feed, Scope{Person: "a", Rotation: "b"}}, {API, Scope{Person: "bad id"}}, {"other", Scope{Person: "a"}},
	} {
		if _, _, err := Create(path, tt.kind, tt.scope, time.Now()); err == nil {
			t.Errorf("Create(%s, %+v) succeeded", tt.kind, tt.scope)
		}
	}
}

func TestBearer(t *testing.T) {
	for h, want := range map[string]string{"Bearer abc": "abc", "bearer  abc ": "abc", "Basic abc": "", "": "", "Bearer": ""} {
		r, _ := http.NewRequest("GET", "/", nil)
		r.Header.Set("Authorization", h)
		if got := Bearer(r); got != want {
			t.Errorf("Bearer(%q) = %q, want %q", h, got, want)
		}
	}
}
