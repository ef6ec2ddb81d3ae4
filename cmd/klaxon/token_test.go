package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/klaxon-oncall/klaxon/internal/auth"
	"github.com/klaxon-oncall/klaxon/internal/testtools"
)

func TestTokenCommand(t *testing.T) {
	data := t.TempDir()
	rota := filepath.Join(testtools.Root(), "rota.yaml")
	now := func() time.Time { return time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC) }
	tok := func(args ...string) (int, string, string) {
		var out, errb bytes.Buffer
		code := runToken(append(args, "--data", data, "--rota", rota), &out, &errb, now)
		return code, strings.TrimSpace(out.String()), errb.String()
	}
	code, alice, msg := tok("create", "--person", "alice")
	if code != 0 || alice == "" || !strings.Contains(msg, "revoke") {
		t.Fatalf("create: %d %q %q", code, alice, msg)
	}
	f := auth.NewFile(filepath.Join(data, tokensFile), "")
	if p, admin, ok := f.Authenticate(alice); !ok || admin || p != "alice" {
		t.Fatalf("the printed token does not authenticate as alice: %q %v %v", p, admin, ok)
	}
	b, _ := os.ReadFile(filepath.Join(data, tokensFile))
	if strings.Contains(string(b), alice) {
		t.Fatal("the token file holds the token")
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
	if _, _, ok := f.Authenticate(alice); ok {
		t.Fatal("a revoked token still authenticates")
	}
}

func TestCLIRefusesTokenFlag(t *testing.T) {
	var out, errb bytes.Buffer
	code := run(context.Background(), []string{"ack", "--api-token", "s3cret-on-the-command-line", "1"}, nil, &out, &errb)
	if code != 2 || !strings.Contains(errb.String(), "KLAXON_API_TOKEN") || strings.Contains(errb.String(), "s3cret-on-the-command-line") {
		t.Fatalf("exit %d: %s", code, errb.String())
	}
}
