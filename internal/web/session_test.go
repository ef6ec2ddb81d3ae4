package web

import (
	"bufio"
	"fmt"
	"net/http"
	"net/netip"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/klaxon-oncall/klaxon/escalation"
	"github.com/klaxon-oncall/klaxon/escalation/boltstore"
	"github.com/klaxon-oncall/klaxon/internal/auth"
	"github.com/klaxon-oncall/klaxon/internal/rotawatch"
)

func TestEveryPageNeedsASession(t *testing.T) {
	f := newFixture(t, nil)
	f.fire("g1")
	forged := NewSigner(make([]byte, 32)).sessionCookie("alice", time.Now().Add(time.Hour))
	expired := f.web.cfg.Signer.sessionCookie("alice", time.Now().Add(-time.Second))
	notOnRota := f.web.cfg.Signer.sessionCookie("carol", time.Now().Add(time.Hour))
	alice := f.signIn(aliceToken)
	tampered := strings.Replace(alice, ".alice", ".bob", 1)
	for _, path := range []string{"/", "/incidents/1", "/oncall", "/rota", "/status", "/?part=list", "/incidents/1?part=body", "/events"} {
		for name, cookie := range map[string]string{"none": "", "forged": forged, "expired": expired, "not on the rota": notOnRota, "tampered": tampered} {
			r := f.do("GET", path, nil, cookie, nil)
			switch {
			case r.code == http.StatusSeeOther && strings.HasPrefix(r.header.Get("Location"), "/signin?next="):
			case r.code == http.StatusUnauthorized && (strings.Contains(path, "part=") || path == "/events"):
			default:
				t.Errorf("GET %s with %s cookie: %d %s", path, name, r.code, r.header.Get("Location"))
			}
			if strings.Contains(r.body, "Disk full") {
				t.Errorf("GET %s with %s cookie shows the incident", path, name)
			}
		}
		// A person's API token sent as a bearer header is not a session.
		if r := f.do("GET", path, nil, "", map[string]string{"Authorization": "Bearer " + aliceToken}); r.code == 200 || strings.Contains(r.body, "Disk full") {
			t.Errorf("GET %s with an API bearer token: %d", path, r.code)
		}
		if path == "/events" {
			continue // signed in, it streams (TestEventStreamSaysWhenTheListChanges)
		}
		if r := f.do("GET", path, nil, alice, nil); r.code != 200 {
			t.Errorf("GET %s signed in: %d", path, r.code)
		}
	}
	state, n := f.snapshot(1)
	for name, cookie := range map[string]string{"none": "", "forged": forged, "not on the rota": notOnRota} {
		csrf := f.web.cfg.Signer.csrfToken(cookie)
		if r := f.do("POST", "/incidents/1/ack", url.Values{"csrf": {csrf}}, cookie, nil); r.code != http.StatusUnauthorized {
			t.Errorf("POST ack with %s cookie: %d", name, r.code)
		}
	}
	if s2, n2 := f.snapshot(1); s2 != state || n2 != n {
		t.Fatal("an unauthenticated POST changed the incident")
	}
}

func TestSignInSetsAStrictSessionCookie(t *testing.T) {
	tests := []struct {
		name   string
		public string
		secure bool
	}{
		{"http public URL", "", false},
		{"https public URL", "https://klaxon.example.org", true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t, func(c *Config) {
				if tc.public != "" {
					c.PublicURL = tc.public
				}
			})
			r := f.do("POST", "/signin", url.Values{"token": {aliceToken}, "next": {"/status"}}, "", nil)
			cs := (&http.Response{Header: r.header}).Cookies()
			if r.code != http.StatusSeeOther || r.header.Get("Location") != "/status" || len(cs) != 1 {
				t.Fatalf("%d %s %v", r.code, r.header.Get("Location"), cs)
			}
			c := cs[0]
			if !c.HttpOnly || c.SameSite != http.SameSiteLaxMode || c.Secure != tc.secure || c.Path != "/" {
				t.Fatalf("cookie %+v", c)
			}
			if d := time.Until(c.Expires); d > DefaultSessionTTL || d < DefaultSessionTTL-time.Minute {
				t.Fatalf("session lasts %s", d)
			}
			if strings.Contains(c.Value, aliceToken) || strings.Contains(f.logs.String(), aliceToken) {
				t.Fatal("the sign-in token leaks into the cookie or the log")
			}
		})
	}
}

func TestSignInRefusals(t *testing.T) {
	f := newFixture(t, nil)
	tests := []struct {
		name string
		form url.Values
		hdr  map[string]string
		code int
	}{
		{"wrong token", url.Values{"token": {"wrongToken-0123456789abcdef"}}, nil, 401},
		{"no token", url.Values{}, nil, 401},
		{"short token", url.Values{"token": {"abc"}}, nil, 401},
		{"token of someone not on the rota", url.Values{"token": {carolToken}}, nil, 401},
		{"the admin API token", url.Values{"token": {adminToken}}, nil, 401},
		{"a feed token", url.Values{"token": {aliceFeed}}, nil, 401},
		{"an API token as a bearer header", url.Values{}, map[string]string{"Authorization": "Bearer " + aliceToken}, 401},
		{"oversized", url.Values{"token": {strings.Repeat("x", 10000)}}, nil, 400},
		{"cross-site", url.Values{"token": {aliceToken}}, map[string]string{"Sec-Fetch-Site": "cross-site"}, 403},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := f.do("POST", "/signin", tc.form, "", tc.hdr)
			if r.code != tc.code || r.header.Get("Set-Cookie") != "" {
				t.Fatalf("%d (want %d), Set-Cookie %q", r.code, tc.code, r.header.Get("Set-Cookie"))
			}
		})
	}
	if strings.Contains(f.logs.String(), carolToken) || strings.Contains(f.logs.String(), "wrongToken") || strings.Contains(f.logs.String(), adminToken) {
		t.Fatal("a tried token is in the log")
	}
	// An open redirect after sign-in is refused.
	for _, next := range []string{"//evil.example/x", "https://evil.example", "/\\evil.example"} {
		r := f.do("POST", "/signin", url.Values{"token": {aliceToken}, "next": {next}}, "", nil)
		if r.header.Get("Location") != "/" {
			t.Errorf("next=%q redirected to %q", next, r.header.Get("Location"))
		}
	}
}

func TestSignedInActionsNeedCSRFAndAreRecordedAsThePerson(t *testing.T) {
	f := newFixture(t, nil)
	id := f.fire("g1")
	bob := f.signIn(bobToken)
	alice := f.signIn(aliceToken)
	bobCSRF := f.csrf("/", bob)
	state, n := f.snapshot(id)
	for name, form := range map[string]url.Values{"none": {}, "another session's": {"csrf": {f.web.cfg.Signer.csrfToken(alice)}}} {
		if r := f.do("POST", "/incidents/1/ack", form, bob, nil); r.code != 403 {
			t.Errorf("%s csrf: %d", name, r.code)
		}
	}
	for _, p := range []string{"/incidents/0/ack", "/incidents/x/ack", "/incidents/99/ack"} {
		if r := f.do("POST", p, url.Values{"csrf": {bobCSRF}}, bob, nil); r.code != 404 {
			t.Errorf("POST %s: %d", p, r.code)
		}
	}
	if r := f.do("POST", "/incidents/1/explode", url.Values{"csrf": {bobCSRF}}, bob, nil); r.code != 400 {
		t.Errorf("unknown action: %d", r.code)
	}
	if s2, n2 := f.snapshot(id); s2 != state || n2 != n {
		t.Fatal("refused POSTs changed the incident")
	}
	r := f.do("POST", "/incidents/1/ack", url.Values{"csrf": {bobCSRF}, "from": {"list"}}, bob, nil)
	if r.code != http.StatusSeeOther || r.header.Get("Location") != "/?done=ack" {
		t.Fatalf("ack: %d %s", r.code, r.header.Get("Location"))
	}
	if s, _ := f.snapshot(id); s != escalation.Acknowledged {
		t.Fatalf("state %s", s)
	}
	if r := f.do("GET", "/?done=ack", nil, bob, nil); !strings.Contains(r.body, "Acknowledged by Bob Baker via web") || !strings.Contains(r.body, doneMessage["ack"]) {
		t.Fatalf("list after ack:\n%s", r.body)
	}
	// Signing out ends the session for this browser.
	r = f.do("POST", "/signout", url.Values{"csrf": {bobCSRF}}, bob, nil)
	if r.code != http.StatusSeeOther || !strings.Contains(r.header.Get("Set-Cookie"), "Max-Age=0") {
		t.Fatalf("sign out: %d %s", r.code, r.header.Get("Set-Cookie"))
	}
}

func TestPersonRemovedFromTheRotaLosesAccess(t *testing.T) {
	f := newFixture(t, nil)
	f.fire("g1")
	bob := f.signIn(bobToken)
	link := linkPath(t, f.linkFor("alice"))
	// Both are renamed: the ids "alice" and "bob" leave the rota.
	y := strings.Replace(strings.Replace(testRota, "bob:   {name: Bob Baker", "bobby: {name: Bob Baker", 1), "members: [bob]", "members: [bobby]", 1)
	y = strings.Replace(y, "alice: {name: Alice Archer", "alicia: {name: Alice Archer", 1)
	y = strings.Replace(y, "members: [alice]", "members: [alicia]", 1)
	y = strings.Replace(y, "owners: [alice]", "owners: [alicia]", 1)
	if err := os.WriteFile(f.rotaPath, []byte(y), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := f.watcher.Reload(); err != nil || f.watcher.Current().People["bob"] != nil {
		t.Fatalf("reload: %v", err)
	}
	if r := f.do("GET", "/", nil, bob, nil); r.code != http.StatusSeeOther {
		t.Fatalf("removed person's session still works: %d", r.code)
	}
	if r := f.do("GET", link, nil, "", nil); r.code != 403 {
		t.Fatalf("removed person's link still works: %d", r.code)
	}
}

func TestPagesAreSelfContainedAndLight(t *testing.T) {
	f := newFixture(t, nil)
	f.fire("g1")
	alice := f.signIn(aliceToken)
	assets := 0
	for _, a := range []string{"/static/app.css", "/static/live.js"} {
		r := f.do("GET", a, nil, "", nil)
		if r.code != 200 {
			t.Fatalf("%s: %d", a, r.code)
		}
		assets += len(r.body)
	}
	pages := map[string]string{"/": alice, "/incidents/1": alice, "/oncall": alice, "/rota": alice, "/status": alice,
		"/signin": "", linkPath(t, f.linkFor("alice")): ""}
	for path, cookie := range pages {
		r := f.do("GET", path, nil, cookie, nil)
		if r.code != 200 {
			t.Fatalf("%s: %d", path, r.code)
		}
		if csp := r.header.Get("Content-Security-Policy"); !strings.Contains(csp, "default-src 'self'") {
			t.Errorf("%s: CSP %q", path, csp)
		}
		if r.header.Get("Referrer-Policy") != "same-origin" || r.header.Get("X-Content-Type-Options") != "nosniff" {
			t.Errorf("%s: headers %v", path, r.header)
		}
		if total := len(r.body) + assets; total > 100<<10 {
			t.Errorf("%s weighs %d bytes with its assets", path, total)
		}
		// Nothing is fetched from elsewhere: every src and href stays on this site
		// (except links a person follows on purpose).
		for _, attr := range []string{`src="http`, `src="//`, `rel="stylesheet" href="http`} {
			if strings.Contains(r.body, attr) {
				t.Errorf("%s loads something from elsewhere (%s)", path, attr)
			}
		}
		if !strings.Contains(r.body, `name="viewport" content="width=device-width`) {
			t.Errorf("%s has no phone viewport", path)
		}
	}
	// An annotation cannot smuggle a javascript: URL into a link.
	if r := f.do("GET", "/incidents/1", nil, alice, nil); strings.Contains(r.body, "javascript:") || !strings.Contains(r.body, "https://runbooks.example.org/disk") {
		t.Fatal("incident page: javascript: URL shown or runbook missing")
	}
}

func TestEventStreamSaysWhenTheListChanges(t *testing.T) {
	f := newFixture(t, nil)
	f.fire("g1")
	alice := f.signIn(aliceToken)
	ver, err := f.web.version(t.Context(), 0)
	if err != nil {
		t.Fatal(err)
	}
	req, _ := http.NewRequestWithContext(t.Context(), "GET", f.srv.URL+"/events?since="+ver, nil)
	req.AddCookie(&http.Cookie{Name: f.web.CookieName(), Value: alice})
	resp, err := f.client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if ct := resp.Header.Get("Content-Type"); resp.StatusCode != 200 || ct != "text/event-stream" {
		t.Fatalf("%d %s", resp.StatusCode, ct)
	}
	lines := make(chan string, 100)
	go func() {
		sc := bufio.NewScanner(resp.Body)
		for sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
	}()
	expectChange := func(what string) {
		t.Helper()
		deadline := time.After(10 * time.Second)
		for {
			select {
			case l, ok := <-lines:
				if !ok {
					t.Fatalf("stream ended before %s", what)
				}
				if l == "event: change" {
					return
				}
			case <-deadline:
				t.Fatalf("no change event after %s", what)
			}
		}
	}
	f.fire("g2")
	expectChange("a new incident")
	if _, err := f.eng.ActAs(t.Context(), 1, "ack", "Alice Archer", "web", ""); err != nil {
		t.Fatal(err)
	}
	expectChange("an acknowledgement")
	// Close (a graceful shutdown) ends the stream.
	f.web.Close()
	deadline := time.After(3 * time.Second) // well before the client's own 10s timeout
	for open := true; open; {
		select {
		case _, open = <-lines:
		case <-deadline:
			t.Fatal("the event stream outlived Close")
		}
	}
	// The fragment the script fetches shows the new incident.
	if r := f.do("GET", "/?part=list", nil, alice, nil); !strings.Contains(r.body, `id="incident-2"`) || strings.Contains(r.body, "<html") {
		t.Fatalf("list fragment:\n%s", r.body)
	}
}

func TestKeyFile(t *testing.T) {
	dir := t.TempDir()
	k1, err := LoadKey(dir)
	if err != nil || len(k1) != 32 {
		t.Fatalf("%d %v", len(k1), err)
	}
	fi, _ := os.Stat(filepath.Join(dir, KeyFile))
	if fi.Mode().Perm() != 0o600 {
		t.Fatalf("key file mode %s", fi.Mode().Perm())
	}
	k2, err := LoadKey(dir)
	if err != nil || string(k1) != string(k2) {
		t.Fatal("the key changed on the second load: every link sent would break on restart")
	}
	tests := []struct {
		name    string
		content []byte
		mode    os.FileMode
		want    string
	}{
		{"readable by others", k1, 0o644, "readable by others"},
		{"short", []byte("short"), 0o600, "has 5 bytes"},
		{"long", make([]byte, 64), 0o600, "has 33 bytes"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			d := t.TempDir()
			p := filepath.Join(d, KeyFile)
			if err := os.WriteFile(p, tc.content, tc.mode); err != nil {
				t.Fatal(err)
			}
			os.Chmod(p, tc.mode)
			_, err := LoadKey(d)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want %q", err, tc.want)
			}
			if strings.Contains(err.Error(), string(k1)) {
				t.Fatal("the key is in the error")
			}
		})
	}
}

// TestPersonTokensAreTheAPITokensOfPeople checks that web sign-in takes a
// person's API token from the token file and nothing else: not the admin
// token (it belongs to nobody), not a feed token, not a near miss.
func TestPersonTokensAreTheAPITokensOfPeople(t *testing.T) {
	path := filepath.Join(t.TempDir(), "tokens")
	writeTokenFile(t, path)
	pt := PersonTokens(auth.NewFile(path, adminToken))
	tests := []struct{ name, token, want string }{
		{"alice's API token", aliceToken, "alice"},
		{"bob's API token", bobToken, "bob"},
		{"the admin token", adminToken, ""},
		{"alice's feed token", aliceFeed, ""},
		{"a near miss", aliceToken + "x", ""},
		{"empty", "", ""},
		{"oversized", strings.Repeat("x", 10000), ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, ok := pt.Person(tc.token)
			if ok != (tc.want != "") || got != tc.want {
				t.Fatalf("Person = %q, %v; want %q", got, ok, tc.want)
			}
		})
	}
	// A token created after the server started works at once.
	tok, _, err := auth.Create(path, auth.API, auth.Scope{Person: "dave"}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if got, ok := pt.Person(tok); !ok || got != "dave" {
		t.Fatalf("a new token: Person = %q, %v", got, ok)
	}
}

func TestTrustedProxyHeader(t *testing.T) {
	const hdr = "X-Forwarded-Email"
	loopback := []netip.Prefix{netip.MustParsePrefix("127.0.0.1/32")}
	elsewhere := []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}
	tests := []struct {
		name    string
		proxies []netip.Prefix
		email   string
		ok      bool
	}{
		{"from the proxy", loopback, "bob@example.org", true},
		{"case-insensitive", loopback, "BOB@Example.org", true},
		{"not from the proxy", elsewhere, "bob@example.org", false},
		{"email of nobody on the rota", loopback, "mallory@example.org", false},
		{"no header", loopback, "", false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t, func(c *Config) { c.AuthHeader, c.TrustedProxies = hdr, tc.proxies })
			y := strings.Replace(testRota, `bob:   {name: Bob Baker, phone: "+15555550102"}`, `bob:   {name: Bob Baker, phone: "+15555550102", email: bob@example.org}`, 1)
			if err := os.WriteFile(f.rotaPath, []byte(y), 0o600); err != nil {
				t.Fatal(err)
			}
			if err := f.watcher.Reload(); err != nil {
				t.Fatal(err)
			}
			f.fire("g1")
			h := map[string]string{}
			if tc.email != "" {
				h[hdr] = tc.email
			}
			r := f.do("GET", "/", nil, "", h)
			if got := r.code == 200; got != tc.ok {
				t.Fatalf("GET / with %s: %d", hdr, r.code)
			}
			if !tc.ok {
				return
			}
			csrf := csrfField.FindStringSubmatch(r.body)[1]
			if r := f.do("POST", "/incidents/1/ack", url.Values{"csrf": {csrf}}, "", h); r.code != http.StatusSeeOther {
				t.Fatalf("ack: %d %s", r.code, r.body)
			}
			inc, _ := f.store.Incident(t.Context(), 1)
			if inc.AckedBy != "Bob Baker" || inc.AckedVia != "web" {
				t.Fatalf("acknowledged by %q via %q", inc.AckedBy, inc.AckedVia)
			}
		})
	}
	if _, err := New(Config{Store: &boltstore.Store{}, Actor: &lateActor{}, Rota: &rotawatch.Watcher{}, Signer: NewSigner(nil), AuthHeader: hdr}); err == nil {
		t.Fatal("a trusted header without proxy addresses was accepted")
	}
}

func TestAStormOfIncidentsStaysUnder100KB(t *testing.T) {
	f := newFixture(t, nil)
	for i := range listLimit {
		f.fire(fmt.Sprint("storm-", i))
	}
	alice := f.signIn(aliceToken)
	total := 0
	for _, p := range []string{"/static/app.css", "/static/live.js"} {
		total += len(f.do("GET", p, nil, "", nil).body)
	}
	r := f.do("GET", "/", nil, alice, nil)
	if n := strings.Count(r.body, `class="card"`); r.code != 200 || n != listLimit {
		t.Fatalf("%d, %d incidents listed", r.code, n)
	}
	if total += len(r.body); total > 100<<10 {
		t.Fatalf("the list of %d incidents weighs %d bytes with its style sheet and script", listLimit, total)
	}
	t.Logf("%d incidents: %d bytes with assets", listLimit, total)
}
