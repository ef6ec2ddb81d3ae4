package web

import (
	"context"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/klaxon-oncall/klaxon/escalation"
)

func linkPath(t *testing.T, link string) string {
	t.Helper()
	u, err := url.Parse(link)
	if err != nil || !strings.HasPrefix(u.Path, "/l/") {
		t.Fatalf("page link %q is not a signed link", link)
	}
	return u.Path
}

func TestPageCarriesALinkForItsRecipient(t *testing.T) {
	f := newFixture(t, nil)
	id := f.fire("g1")
	link := f.linkFor("alice")
	if !strings.HasPrefix(link, f.srv.URL+"/l/") || len(link) > len(f.srv.URL)+80 {
		t.Fatalf("link %q: want a short signed link on the public URL", link)
	}
	c, err := f.web.cfg.Signer.VerifyLink(strings.TrimPrefix(linkPath(t, link), "/l/"), time.Now())
	if err != nil || c.Person != "alice" || c.Incident != id {
		t.Fatalf("link claims %+v, %v", c, err)
	}
	if d := time.Until(c.Expires); d < DefaultLinkTTL-time.Minute || d > DefaultLinkTTL {
		t.Fatalf("link expires in %s, want %s", d, DefaultLinkTTL)
	}
}

func TestLinkGETShowsButNeverActs(t *testing.T) {
	f := newFixture(t, nil)
	id := f.fire("g1")
	path := linkPath(t, f.linkFor("alice"))
	state, n := f.snapshot(id)
	// Link previews and scanners fetch the link, some several times, some with HEAD.
	for _, m := range []string{"GET", "GET", "HEAD"} {
		r := f.do(m, path, nil, "", nil)
		if r.code != 200 {
			t.Fatalf("%s link: %d", m, r.code)
		}
		if m == "GET" && (!strings.Contains(r.body, "Acknowledge") || !strings.Contains(r.body, "Disk full on db-1")) {
			t.Fatalf("link page lacks the incident or its buttons:\n%s", r.body)
		}
	}
	// Even a GET that looks like the form changes nothing.
	f.do("GET", path+"?action=ack&csrf="+f.web.cfg.Signer.csrfToken(strings.TrimPrefix(path, "/l/")), nil, "", nil)
	if s2, n2 := f.snapshot(id); s2 != state || n2 != n || state != escalation.Open {
		t.Fatalf("GETs changed the incident: %s/%d → %s/%d", state, n, s2, n2)
	}
}

func TestLinkButtonActsAsThePersonViaWeb(t *testing.T) {
	tests := []struct {
		action string
		want   escalation.State
		text   string
	}{
		{"ack", escalation.Acknowledged, "acknowledged by Alice Archer via web"},
		{"resolve", escalation.Resolved, "resolved by Alice Archer via web"},
		{"escalate", escalation.Open, "escalated by Alice Archer via web"},
	}
	for _, tc := range tests {
		t.Run(tc.action, func(t *testing.T) {
			f := newFixture(t, nil)
			id := f.fire("g1")
			path := linkPath(t, f.linkFor("alice"))
			csrf := f.csrf(path, "")
			r := f.do("POST", path, url.Values{"csrf": {csrf}, "action": {tc.action}}, "", map[string]string{"Sec-Fetch-Site": "same-origin", "Origin": f.srv.URL})
			if r.code != http.StatusSeeOther || !strings.HasPrefix(r.header.Get("Location"), path+"?done=") {
				t.Fatalf("POST: %d %s %s", r.code, r.header.Get("Location"), r.body)
			}
			inc, _ := f.store.Incident(context.Background(), id)
			tl, _ := f.store.Timeline(context.Background(), id)
			found := false
			for _, e := range tl {
				found = found || (e.Text == tc.text && e.Channel == "web")
			}
			if inc.State != tc.want || !found {
				t.Fatalf("state %s, timeline %+v", inc.State, tl)
			}
			if tc.action == "escalate" && f.linkFor("bob") == "" {
				t.Fatal("escalating did not page the next step")
			}
			after := f.do("GET", r.header.Get("Location"), nil, "", nil)
			if after.code != 200 || !strings.Contains(after.body, doneMessage[tc.action]) {
				t.Fatalf("page after the action: %d\n%s", after.code, after.body)
			}
		})
	}
}

func TestLinkSaysPlainlyWhenTheIncidentMovedOn(t *testing.T) {
	f := newFixture(t, nil)
	id := f.fire("g1")
	alice := linkPath(t, f.linkFor("alice"))
	// Alice escalates from the incident's page; her link is now about a step passed.
	bob := f.signIn(bobToken)
	if r := f.do("POST", "/incidents/1/escalate", url.Values{"csrf": {f.csrf("/incidents/1", bob)}}, bob, nil); r.code != http.StatusSeeOther {
		t.Fatalf("escalate: %d %s", r.code, r.body)
	}
	if r := f.do("GET", alice, nil, "", nil); !strings.Contains(r.body, "moved on since you were paged") {
		t.Fatalf("moved-on link page:\n%s", r.body)
	}
	// A late Escalate through the old link applies as of its page: nothing happens.
	_, n := f.snapshot(id)
	r := f.do("POST", alice, url.Values{"csrf": {f.csrf(alice, "")}, "action": {"escalate"}}, "", nil)
	if r.code != http.StatusSeeOther || !strings.HasSuffix(r.header.Get("Location"), "done=none") {
		t.Fatalf("late escalate: %d %s", r.code, r.header.Get("Location"))
	}
	if _, n2 := f.snapshot(id); n2 != n {
		t.Fatal("a late escalate through an old link escalated again")
	}
	// Acknowledged and resolved say so.
	f.do("POST", alice, url.Values{"csrf": {f.csrf(alice, "")}, "action": {"ack"}}, "", nil)
	if r := f.do("GET", alice, nil, "", nil); !strings.Contains(r.body, "Acknowledged by Alice Archer via web") {
		t.Fatalf("acknowledged link page:\n%s", r.body)
	}
	f.do("POST", alice, url.Values{"csrf": {f.csrf(alice, "")}, "action": {"resolve"}}, "", nil)
	r = f.do("GET", alice, nil, "", nil)
	if !strings.Contains(r.body, "resolved. There is nothing to do") || strings.Contains(r.body, `value="ack"`) {
		t.Fatalf("resolved link page:\n%s", r.body)
	}
}

func TestBadLinksAreRefusedAndChangeNothing(t *testing.T) {
	f := newFixture(t, nil)
	id := f.fire("g1")
	path := linkPath(t, f.linkFor("alice"))
	tok := strings.TrimPrefix(path, "/l/")
	parts := strings.SplitN(tok, ".", 4)
	flip := func(s string) string {
		b := []byte(s)
		if b[len(b)-1] == 'A' {
			b[len(b)-1] = 'B'
		} else {
			b[len(b)-1] = 'A'
		}
		return string(b)
	}
	s := f.web.cfg.Signer
	tests := []struct {
		name  string
		token string
		code  int
		says  string
	}{
		{"tampered signature", parts[0] + "." + parts[1] + "." + flip(parts[2]) + "." + parts[3], 403, "not valid"},
		{"other person", parts[0] + "." + parts[1] + "." + parts[2] + ".bob", 403, "not valid"},
		{"other incident", "2-1." + parts[1] + "." + parts[2] + "." + parts[3], 403, "not valid"},
		{"later expiry", parts[0] + "." + flip(parts[1]) + "." + parts[2] + "." + parts[3], 403, "not valid"},
		{"signed by another key", NewSigner(make([]byte, 32)).LinkToken(parts[0], "alice", time.Now().Add(time.Hour)), 403, "not valid"},
		{"expired", s.LinkToken(parts[0], "alice", time.Now().Add(-time.Minute)), 410, "expired"},
		{"person not on the rota", s.LinkToken(parts[0], "mallory", time.Now().Add(time.Hour)), 403, "Only people on the rota"},
		{"garbage", "not-a-token", 403, "not valid"},
		{"empty parts", "...", 403, "not valid"},
		{"oversized", strings.Repeat("A", 5000), 403, "not valid"},
	}
	state, n := f.snapshot(id)
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p := "/l/" + url.PathEscape(tc.token)
			if r := f.do("GET", p, nil, "", nil); r.code != tc.code || !strings.Contains(r.body, tc.says) || strings.Contains(r.body, "Disk full") {
				t.Fatalf("GET: %d\n%s", r.code, r.body)
			}
			csrf := s.csrfToken(tc.token)
			if r := f.do("POST", p, url.Values{"csrf": {csrf}, "action": {"ack"}}, "", nil); r.code != tc.code {
				t.Fatalf("POST: %d %s", r.code, r.body)
			}
		})
	}
	if s2, n2 := f.snapshot(id); s2 != state || n2 != n {
		t.Fatalf("refused links changed the incident: %s/%d → %s/%d", state, n, s2, n2)
	}
}

func TestLinkPOSTNeedsItsCSRFTokenAndSameSite(t *testing.T) {
	f := newFixture(t, nil)
	id := f.fire("g1")
	path := linkPath(t, f.linkFor("alice"))
	good := f.csrf(path, "")
	other := f.web.cfg.Signer.csrfToken("some other link")
	tests := []struct {
		name string
		form url.Values
		hdr  map[string]string
		code int
	}{
		{"no csrf", url.Values{"action": {"ack"}}, nil, 403},
		{"another link's csrf", url.Values{"csrf": {other}, "action": {"ack"}}, nil, 403},
		{"cross-site fetch", url.Values{"csrf": {good}, "action": {"ack"}}, map[string]string{"Sec-Fetch-Site": "cross-site"}, 403},
		{"foreign origin", url.Values{"csrf": {good}, "action": {"ack"}}, map[string]string{"Origin": "https://evil.example"}, 403},
		{"origin with the public URL's host but another port", url.Values{"csrf": {good}, "action": {"ack"}}, map[string]string{"Origin": "http://127.0.0.1:1"}, 403},
		{"unknown action", url.Values{"csrf": {good}, "action": {"delete"}}, nil, 400},
		{"no action", url.Values{"csrf": {good}}, nil, 400},
		{"oversized form", url.Values{"csrf": {good}, "action": {"ack"}, "pad": {strings.Repeat("x", 8000)}}, nil, 403},
	}
	state, n := f.snapshot(id)
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if r := f.do("POST", path, tc.form, "", tc.hdr); r.code != tc.code {
				t.Fatalf("%d, want %d: %s", r.code, tc.code, r.body)
			}
		})
	}
	if s2, n2 := f.snapshot(id); s2 != state || n2 != n {
		t.Fatalf("refused POSTs changed the incident: %s/%d → %s/%d", state, n, s2, n2)
	}
}

func TestOriginOfThePublicURLBehindAProxyIsAccepted(t *testing.T) {
	f := newFixture(t, func(c *Config) { c.PublicURL = "https://klaxon.example.org" })
	id := f.fire("g1")
	path := linkPath(t, f.linkFor("alice"))
	// The proxy passed its own Host; the browser's Origin is the public URL's.
	r := f.do("POST", path, url.Values{"csrf": {f.csrf(path, "")}, "action": {"ack"}}, "",
		map[string]string{"Origin": "https://klaxon.example.org", "Sec-Fetch-Site": "same-origin"})
	if r.code != http.StatusSeeOther {
		t.Fatalf("%d %s", r.code, r.body)
	}
	if s, _ := f.snapshot(id); s != escalation.Acknowledged {
		t.Fatalf("state %s", s)
	}
}
