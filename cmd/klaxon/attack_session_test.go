package main

import (
	"bytes"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/klaxon-oncall/klaxon/internal/auth"
)

// tokenCLI runs `klaxon token ARGS --server` against k with the admin token.
func (k *klaxonUnderTest) tokenCLI(t *testing.T, args ...string) (int, string) {
	t.Helper()
	t.Setenv("KLAXON_API_TOKEN", acAPIToken)
	var out, errb bytes.Buffer
	code := runToken(append(args, "--server", k.base, "--rota", k.rota, "--data", k.data), &out, &errb, time.Now)
	return code, out.String() + errb.String()
}

// tokenID is the id `klaxon token list` shows for the first token of person.
func (k *klaxonUnderTest) tokenID(t *testing.T, person string) string {
	t.Helper()
	code, list := k.tokenCLI(t, "list")
	for line := range strings.SplitSeq(list, "\n") {
		if f := strings.Fields(line); code == 0 && len(f) > 2 && f[1] == "api" && f[2] == "person:"+person {
			return f[0]
		}
	}
	t.Fatalf("no token of %s listed (%d): %s", person, code, list)
	return ""
}

// TestAttackCookieAfterSignout: a cookie copied before signing out no
// longer opens anything after it.
func TestAttackCookieAfterSignout(t *testing.T) {
	data := t.TempDir()
	alice := aliceTokenBeforeStart(t, data)
	k := startKlaxon(t, data, nil, nil)
	session := signIn(t, k.base, alice)
	copied := session
	csrf := formCSRF(t, cookieReq(newReq(t, "GET", k.base+"/", nil), session))
	if resp, _ := do(t, cookieReq(formPost(t, k.base+"/signout", url.Values{"csrf": {csrf}}), session)); resp.StatusCode != 303 {
		t.Fatalf("sign-out: %d", resp.StatusCode)
	}
	if code := send(t, cookieReq(newReq(t, "GET", k.base+"/", nil), copied)); code != 303 {
		t.Fatalf("a copied cookie opens / after sign-out: %d, want 303 to sign-in", code)
	}
	if strings.Contains(k.logs.String(), session) || strings.Contains(k.logs.String(), alice) {
		t.Fatal("a secret is in the log")
	}
}

// TestAttackCookieAfterTokenRevoke: revoking a person's token (through the
// running server, as `klaxon token revoke --server` does) ends the sessions
// it opened and refuses the token at once.
func TestAttackCookieAfterTokenRevoke(t *testing.T) {
	data := t.TempDir()
	alice := aliceTokenBeforeStart(t, data)
	k := startKlaxon(t, data, nil, nil)
	session := signIn(t, k.base, alice)
	if code, out := k.tokenCLI(t, "sessions"); code != 0 || !strings.Contains(out, "alice") {
		t.Fatalf("sessions: %d %s", code, out)
	}
	if code, out := k.tokenCLI(t, "revoke", k.tokenID(t, "alice")); code != 0 {
		t.Fatalf("revoke: %d %s", code, out)
	}
	if code := send(t, cookieReq(newReq(t, "GET", k.base+"/", nil), session)); code != 303 {
		t.Fatalf("a session opened by a revoked token opens /: %d", code)
	}
	if code := send(t, bearer(newReq(t, "GET", k.base+"/api/v1/incidents", nil), alice)); code != 401 {
		t.Fatalf("a revoked token: %d", code)
	}
	if code, out := k.tokenCLI(t, "sessions"); code != 0 || strings.Contains(out, "alice") {
		t.Fatalf("the session is still listed: %d %s", code, out)
	}
}

// TestAttackSessionAfterLeavingRota: a person who leaves the rota loses
// their web session at once, and it stays ended if they come back.
func TestAttackSessionAfterLeavingRota(t *testing.T) {
	data := t.TempDir()
	eve, _, err := auth.Create(filepath.Join(data, tokensFile), auth.API, auth.Scope{Person: "eve"}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	k := startKlaxon(t, data, nil, nil)
	session := signIn(t, k.base, eve)
	k.removeEve(t)
	// Refused at once (the rota in force is read on every request) ...
	if code := send(t, cookieReq(newReq(t, "GET", k.base+"/", nil), session)); code != 303 {
		t.Fatalf("eve's session opens / after she left the rota: %d", code)
	}
	// ... and ended: the rota change sweeps the sessions of people gone.
	deadline := time.Now().Add(30 * time.Second)
	for {
		code, out := k.tokenCLI(t, "sessions")
		if code == 0 && !strings.Contains(out, " eve ") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("eve's session outlived her leaving the rota: %d %s", code, out)
		}
		time.Sleep(20 * time.Millisecond) // polling a condition with a deadline
	}
	writeTestRota(t, k.rota, true)
	deadline = time.Now().Add(30 * time.Second)
	for send(t, bearer(newReq(t, "GET", k.base+"/api/v1/incidents", nil), eve)) != 200 { // back on the rota
		if time.Now().After(deadline) {
			t.Fatal("eve did not come back")
		}
		time.Sleep(20 * time.Millisecond) // polling a condition with a deadline
	}
	if code := send(t, cookieReq(newReq(t, "GET", k.base+"/", nil), session)); code != 303 {
		t.Fatalf("eve's old session came back with her: %d", code)
	}
}

// TestTokenSessionsEnd: `klaxon token sessions end ID` ends one session.
func TestTokenSessionsEnd(t *testing.T) {
	data := t.TempDir()
	alice := aliceTokenBeforeStart(t, data)
	k := startKlaxon(t, data, nil, nil)
	keep, end := signIn(t, k.base, alice), signIn(t, k.base, alice)
	_, list := k.tokenCLI(t, "sessions")
	var ids []string
	for line := range strings.SplitSeq(list, "\n") {
		if f := strings.Fields(line); len(f) > 1 && f[1] == "alice" {
			ids = append(ids, f[0])
		}
	}
	if len(ids) != 2 {
		t.Fatalf("want two sessions of alice: %s", list)
	}
	// Which id is which cookie is not shown; end one, and exactly one of
	// the cookies stops working.
	if code, out := k.tokenCLI(t, "sessions", "end", ids[0]); code != 0 {
		t.Fatalf("end: %d %s", code, out)
	}
	a, b := send(t, cookieReq(newReq(t, "GET", k.base+"/", nil), keep)), send(t, cookieReq(newReq(t, "GET", k.base+"/", nil), end))
	if (a == 200) == (b == 200) {
		t.Fatalf("after ending one of two sessions: %d and %d", a, b)
	}
}

// TestTokenFileMigrated: the DATA/tokens file of an earlier version moves
// into the store on first start and is renamed; its tokens keep working,
// and a second start finds nothing to move.
func TestTokenFileMigrated(t *testing.T) {
	data := t.TempDir()
	alice := aliceTokenBeforeStart(t, data)
	k := startKlaxon(t, data, nil, nil)
	if _, err := os.Stat(filepath.Join(data, tokensFile)); !os.IsNotExist(err) {
		t.Fatalf("the token file is still there: %v", err)
	}
	if _, err := os.Stat(filepath.Join(data, tokensFile+migratedSuffix)); err != nil {
		t.Fatal(err)
	}
	if code := send(t, bearer(newReq(t, "GET", k.base+"/api/v1/incidents", nil), alice)); code != 200 {
		t.Fatalf("a migrated token: %d", code)
	}
	if code, out := k.tokenCLI(t, "list"); code != 0 || !strings.Contains(out, "person:alice") {
		t.Fatalf("list: %d %s", code, out)
	}
	b, _ := os.ReadFile(filepath.Join(data, "klaxon.db"))
	if bytes.Contains(b, []byte(alice)) {
		t.Fatal("the store holds the token itself")
	}
}
