package main

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/klaxon-oncall/klaxon/internal/auth"
	fakepd "github.com/klaxon-oncall/klaxon/internal/fakes/pagerduty"
	faketwilio "github.com/klaxon-oncall/klaxon/internal/fakes/twilio"
	"github.com/klaxon-oncall/klaxon/internal/testtools"
	"github.com/klaxon-oncall/klaxon/internal/web"
)

// Credentials of the auth matrix's server.
const (
	amWebhookToken = "matrix-webhook-token"
	amAPIToken     = "matrix-api-token"
	amMetricsToken = "matrix-metrics-token"
	amPDSecret     = "matrix-pagerduty-signing-secret"
	amTwilioToken  = "matrixTwilioAuthToken0123456789a"
	amPublicURL    = "https://klaxon.example.org"
)

// cred is one of the four ways the matrix calls every route.
type cred int

const (
	none    cred = iota // no credentials at all
	wrong               // a credential of the right kind with a wrong value
	right               // the credential the route needs
	another             // a real credential, but for another purpose
	removed             // the right kind of credential, of a person who has left the rota since it was made
)

var credNames = [...]string{"none", "wrong", "right", "another purpose", "removed person"}

// probe is how the matrix calls a route: build makes the request for a
// credential case; want is the status for none, wrong, right, another,
// removed.
type probe struct {
	build func(t *testing.T, base string, c cred) *http.Request
	want  [5]int
	// stream: the answer is an endless stream; only its status is read.
	stream bool
}

// TestAuthMatrix walks every route the running server registered and calls
// each with no credentials, wrong ones, the right ones, the right ones
// for another purpose, and the right kind of credential of a person who was
// on the rota when it was made and has left it since (eve: her API token,
// feed token, web session and signed link). A route without an entry here
// fails the test: a new route must say what it needs.
func TestAuthMatrix(t *testing.T) {
	data := t.TempDir()
	pd := fakepd.New(t)
	tw := faketwilio.New(t, amTwilioToken)
	for k, v := range map[string]string{
		"KLAXON_WEBHOOK_TOKEN": amWebhookToken, "KLAXON_API_TOKEN": amAPIToken, "KLAXON_METRICS_TOKEN": amMetricsToken,
		"KLAXON_PAGERDUTY_ROUTING_KEY": pd.RoutingKey(), "KLAXON_PAGERDUTY_API_TOKEN": pd.APIToken(),
		"KLAXON_PAGERDUTY_EVENTS_URL": pd.URL(), "KLAXON_PAGERDUTY_API_URL": pd.URL(), "KLAXON_PAGERDUTY_WEBHOOK_SECRET": amPDSecret,
		"KLAXON_TWILIO_ACCOUNT_SID": tw.AccountSID(), "KLAXON_TWILIO_AUTH_TOKEN": amTwilioToken,
		"KLAXON_TWILIO_FROM": faketwilio.DefaultFrom, "KLAXON_TWILIO_API_URL": tw.URL(), "KLAXON_PUBLIC_URL": amPublicURL,
	} {
		t.Setenv(k, v)
	}
	rotaPath := filepath.Join(t.TempDir(), "rota.yaml")
	writeTestRota(t, rotaPath, true)
	feedToken, _, err := auth.Create(filepath.Join(data, tokensFile), auth.Feed, auth.Scope{Person: "alice"}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	aliceToken, _, err := auth.Create(filepath.Join(data, tokensFile), auth.API, auth.Scope{Person: "alice"}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	eveToken, _, err := auth.Create(filepath.Join(data, tokensFile), auth.API, auth.Scope{Person: "eve"}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	eveFeed, _, err := auth.Create(filepath.Join(data, tokensFile), auth.Feed, auth.Scope{Person: "eve"}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := parseServe([]string{"--listen", "127.0.0.1:0", "--data", data, "--rota", rotaPath}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	ready := make(chan started, 1)
	done := make(chan error, 1)
	var logs bytes.Buffer
	go func() {
		done <- serve(ctx, cfg, slog.New(slog.NewJSONHandler(&logs, nil)), serveHooks{ready: func(s started) { ready <- s }})
	}()
	t.Cleanup(func() { cancel(); <-done })
	var st started
	select {
	case st = <-ready:
	case err := <-done:
		t.Fatalf("serve ended: %v", err)
	case <-time.After(30 * time.Second):
		t.Fatal("serve did not start")
	}
	base := "http://" + st.addr

	// An incident to act on.
	firing, err := os.ReadFile(filepath.Join(testtools.Root(), "internal", "server", "testdata", "firing.json"))
	if err != nil {
		t.Fatal(err)
	}
	if resp := send(t, bearer(newReq(t, "POST", base+"/webhook/alertmanager", firing), amWebhookToken)); resp != 200 {
		t.Fatalf("seeding an incident: %d", resp)
	}

	// bearerProbe calls with a bearer token: the right one, or another
	// purpose's real token.
	bearerProbe := func(method, path string, body []byte, rightTok, otherTok string, want [5]int) probe {
		return probe{want: want, build: func(t *testing.T, base string, c cred) *http.Request {
			r := newReq(t, method, base+path, body)
			switch c {
			case wrong:
				bearer(r, rightTok+"x")
			case right:
				bearer(r, rightTok)
			case another:
				bearer(r, otherTok)
			case removed:
				bearer(r, eveToken)
			}
			return r
		}}
	}
	api := func(method, path string, ok int) probe {
		return bearerProbe(method, path, nil, amAPIToken, amWebhookToken, [5]int{401, 401, ok, 401, 403})
	}
	// adminAPI routes take the admin token only: a person's is refused.
	adminAPI := func(method, path, body string, ok int) probe {
		return bearerProbe(method, path, []byte(body), amAPIToken, amWebhookToken, [5]int{401, 401, ok, 401, 403})
	}
	public := func(path string, ok int) probe {
		return bearerProbe("GET", path, nil, amAPIToken, amWebhookToken, [5]int{ok, ok, ok, ok, ok})
	}
	// The web interface: a session made by signing in with alice's API token
	// (a cookie, and its CSRF token from a page's form), and a signed link of
	// the kind a page carries, with its CSRF token.
	session := signIn(t, base, aliceToken)
	tamperedSession := strings.TrimSuffix(session, ".alice") + ".bob"
	sessionCSRF := formCSRF(t, cookieReq(newReq(t, "GET", base+"/", nil), session))
	key, err := web.LoadKey(data)
	if err != nil {
		t.Fatal(err)
	}
	link := web.NewSigner(key).LinkToken("1-1", "alice", time.Now().Add(time.Hour))
	tamperedLink := strings.TrimSuffix(link, ".alice") + ".bob"
	linkCSRF := formCSRF(t, newReq(t, "GET", base+"/l/"+link, nil))
	// Eve's credentials, made while she is on the rota and working; then
	// she leaves it.
	eveSession := signIn(t, base, eveToken)
	eveLink := web.NewSigner(key).LinkToken("1-1", "eve", time.Now().Add(time.Hour))
	eveLinkCSRF := formCSRF(t, newReq(t, "GET", base+"/l/"+eveLink, nil))
	if code := send(t, cookieReq(newReq(t, "GET", base+"/", nil), eveSession)); code != 200 {
		t.Fatalf("eve's session before she leaves: %d", code)
	}
	if code := send(t, bearer(newReq(t, "GET", base+"/api/v1/oncall", nil), eveToken)); code != 200 {
		t.Fatalf("eve's token before she leaves: %d", code)
	}
	(&klaxonUnderTest{base: base, rota: rotaPath}).removeEveWith(t, amAPIToken)
	// sessionProbe calls a web page: no cookie, a tampered cookie, alice's
	// session, or alice's API token as a bearer header (not a session).
	sessionProbe := func(method, path string, form url.Values, want [5]int) probe {
		return probe{want: want, build: func(t *testing.T, base string, c cred) *http.Request {
			f := url.Values{}
			for k, v := range form {
				f[k] = v
			}
			if method == "POST" {
				f.Set("csrf", sessionCSRF)
			}
			r := newReq(t, method, base+path, []byte(f.Encode()))
			if method == "POST" {
				r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
			}
			switch c {
			case wrong:
				cookieReq(r, tamperedSession)
			case right:
				cookieReq(r, session)
			case another:
				bearer(r, aliceToken)
			case removed:
				cookieReq(r, eveSession)
			}
			return r
		}}
	}
	page := func(path string) probe { return sessionProbe("GET", path, nil, [5]int{303, 303, 200, 303, 303}) }
	// linkProbe calls a signed link: none (no link in the path), a tampered
	// link, the real one, or alice's API token in the link's place.
	linkProbe := func(method string, want [5]int) probe {
		return probe{want: want, build: func(t *testing.T, base string, c cred) *http.Request {
			tok := map[cred]string{none: "", wrong: tamperedLink, right: link, another: aliceToken, removed: eveLink}[c]
			var body []byte
			if method == "POST" {
				csrf := linkCSRF
				if c == removed {
					csrf = eveLinkCSRF
				}
				body = []byte(url.Values{"csrf": {csrf}, "action": {"ack"}}.Encode())
			}
			r := newReq(t, method, base+"/l/"+tok, body)
			if method == "POST" {
				r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
			}
			return r
		}}
	}
	signinForm := func(tok string) []byte { return []byte(url.Values{"token": {tok}}.Encode()) }

	pdBody := []byte(`{"event":{"id":"EVTMATRIX","event_type":"incident.annotated","resource_type":"incident","occurred_at":"` +
		time.Now().UTC().Format(time.RFC3339) + `","data":{"id":"PX","type":"incident"}}}`)
	smsForm := url.Values{"From": {"+15555550199"}, "To": {faketwilio.DefaultFrom}, "Body": {"1"}, "MessageSid": {"SMmatrix"}, "AccountSid": {tw.AccountSID()}}

	table := map[string]probe{
		"/webhook/alertmanager":                bearerProbe("POST", "/webhook/alertmanager", firing, amWebhookToken, amAPIToken, [5]int{401, 401, 200, 401, 401}),
		"GET /api/v1/incidents":                api("GET", "/api/v1/incidents", 200),
		"GET /api/v1/incidents/{id}":           api("GET", "/api/v1/incidents/1", 200),
		"POST /api/v1/incidents/{id}/{action}": api("POST", "/api/v1/incidents/1/escalate", 200),
		"GET /api/v1/oncall":                   api("GET", "/api/v1/oncall", 200),
		"GET /api/v1/rota":                     api("GET", "/api/v1/rota", 200),
		"GET /api/v1/channels":                 api("GET", "/api/v1/channels", 200),
		"GET /api/v1/cluster":                  api("GET", "/api/v1/cluster", 200),
		"GET /api/v1/tokens":                   adminAPI("GET", "/api/v1/tokens", "", 200),
		"POST /api/v1/tokens":                  adminAPI("POST", "/api/v1/tokens", `{"kind":"api","person":"bob"}`, 200),
		"DELETE /api/v1/tokens/{id}":           adminAPI("DELETE", "/api/v1/tokens/anosuch", "", 404),
		"GET /api/v1/sessions":                 adminAPI("GET", "/api/v1/sessions", "", 200),
		"DELETE /api/v1/sessions/{id}":         adminAPI("DELETE", "/api/v1/sessions/snosuch", "", 404),
		"GET /healthz":                         public("/healthz", 200),
		"GET /readyz":                          public("/readyz", 0), // 200 or 503 by channel health; the same for everyone
		"GET /metrics":                         bearerProbe("GET", "/metrics", nil, amMetricsToken, amAPIToken, [5]int{401, 401, 200, 401, 401}),
		"GET /rota.ics": {want: [5]int{401, 401, 200, 401, 401}, build: func(t *testing.T, base string, c cred) *http.Request {
			tok := map[cred]string{none: "", wrong: feedToken + "x", right: feedToken, another: aliceToken, removed: eveFeed}[c]
			path := "/rota.ics"
			if tok != "" {
				path += "?token=" + url.QueryEscape(tok)
			}
			return newReq(t, "GET", base+path, nil)
		}},
		// Provider callbacks: the provider's signature is the credential; a
		// person who left the rota has none of their own (the removed column
		// sends what the provider would: signed, about or from eve).
		"/webhook/pagerduty": {want: [5]int{400, 403, 202, 403, 202}, build: func(t *testing.T, base string, c cred) *http.Request {
			r := newReq(t, "POST", base+"/webhook/pagerduty", pdBody)
			r.Header.Set("Content-Type", "application/json")
			switch c {
			case wrong:
				r.Header.Set("X-PagerDuty-Signature", fakepd.Sign(pdBody, amPDSecret+"x"))
			case right, removed:
				r.Header.Set("X-PagerDuty-Signature", fakepd.Sign(pdBody, amPDSecret))
			case another:
				r.Header.Set("X-PagerDuty-Signature", fakepd.Sign(pdBody, amWebhookToken))
				bearer(r, amWebhookToken)
			}
			return r
		}},
		"/webhook/twilio/": {want: [5]int{403, 403, 200, 403, 200}, build: func(t *testing.T, base string, c cred) *http.Request {
			form := smsForm
			if c == removed { // a text from eve's phone: answered "not on the rota", nothing acts
				form = url.Values{"From": {"+15555550105"}, "To": {faketwilio.DefaultFrom}, "Body": {"1"}, "MessageSid": {"SMmatrixEve"}, "AccountSid": {tw.AccountSID()}}
			}
			r := newReq(t, "POST", base+"/webhook/twilio/sms", []byte(form.Encode()))
			r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
			switch c {
			case removed:
				r.Header.Set("X-Twilio-Signature", faketwilio.Signature(amTwilioToken, amPublicURL+"/webhook/twilio/sms", form))
			case wrong:
				r.Header.Set("X-Twilio-Signature", faketwilio.Signature(amTwilioToken+"x", amPublicURL+"/webhook/twilio/sms", smsForm))
			case right:
				r.Header.Set("X-Twilio-Signature", faketwilio.Signature(amTwilioToken, amPublicURL+"/webhook/twilio/sms", smsForm))
			case another:
				r.Header.Set("X-Twilio-Signature", faketwilio.Signature(amPDSecret, amPublicURL+"/webhook/twilio/sms", smsForm))
				bearer(r, amAPIToken)
			}
			return r
		}},
	}

	// Web routes (docs/web.md). A session is a cookie from the sign-in form:
	// an API bearer token opens no page. The admin token belongs to nobody,
	// so it signs nobody in.
	for pattern, p := range map[string]probe{
		"GET /static/": public("/static/app.css", 200),
		"GET /signin":  public("/signin", 200),
		"POST /signin": {want: [5]int{401, 401, 303, 401, 401}, build: func(t *testing.T, base string, c cred) *http.Request {
			tok := map[cred]string{none: "", wrong: aliceToken + "x", right: aliceToken, another: amAPIToken, removed: eveToken}[c]
			r := newReq(t, "POST", base+"/signin", signinForm(tok))
			r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
			return r
		}},
		"GET /l/{token}":                linkProbe("GET", [5]int{404, 403, 200, 403, 403}),
		"POST /l/{token}":               linkProbe("POST", [5]int{404, 403, 303, 403, 403}),
		"GET /{$}":                      page("/"),
		"GET /incidents/{id}":           page("/incidents/1"),
		"GET /oncall":                   page("/oncall"),
		"GET /rota":                     page("/rota"),
		"GET /status":                   page("/status"),
		"GET /events":                   {want: [5]int{401, 401, 200, 401, 401}, stream: true, build: sessionProbe("GET", "/events", nil, [5]int{}).build},
		"POST /incidents/{id}/{action}": sessionProbe("POST", "/incidents/1/ack", nil, [5]int{401, 401, 303, 401, 401}),
		"POST /signout":                 sessionProbe("POST", "/signout", nil, [5]int{401, 401, 303, 401, 401}),
	} {
		table[pattern] = p
	}

	routes := st.srv.Routes()
	seen := map[string]bool{}
	for _, rt := range routes {
		seen[rt.Pattern] = true
		p, ok := table[rt.Pattern]
		if !ok {
			t.Errorf("route %q (%s) has no entry in the auth matrix: add one saying what it needs", rt.Pattern, rt.Access)
			continue
		}
		t.Run(rt.Pattern, func(t *testing.T) {
			got := [5]int{}
			for c := none; c <= removed; c++ {
				if p.stream {
					got[c] = sendStream(t, p.build(t, base, c))
				} else {
					got[c] = send(t, p.build(t, base, c))
				}
			}
			if p.want[0] == 0 { // public: the same answer whatever is sent, never an auth failure
				for c := range got {
					if got[c] != got[0] || got[c] == 401 || got[c] == 403 {
						t.Fatalf("public route answers %v by credentials", got)
					}
				}
				return
			}
			for c := none; c <= removed; c++ {
				if got[c] != p.want[c] {
					t.Errorf("%s credentials: %d, want %d (all: %v)", credNames[c], got[c], p.want[c], got)
				}
			}
		})
	}
	for pattern := range table {
		if !seen[pattern] {
			t.Errorf("the auth matrix lists %q, which the server does not register", pattern)
		}
	}
	for _, secret := range []string{amWebhookToken, amAPIToken, amMetricsToken, amPDSecret, amTwilioToken, feedToken, aliceToken, session, link, eveToken, eveFeed, eveSession, eveLink} {
		if strings.Contains(logs.String(), secret) {
			t.Errorf("a secret appears in the log")
		}
	}
}

func newReq(t *testing.T, method, u string, body []byte) *http.Request {
	t.Helper()
	r, err := http.NewRequest(method, u, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func bearer(r *http.Request, tok string) *http.Request {
	r.Header.Set("Authorization", "Bearer "+tok)
	return r
}

// noRedirects answers a redirect with the redirect itself: a sign-in's 303
// and its cookie are what the matrix checks.
var noRedirects = &http.Client{Timeout: 30 * time.Second, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}

func send(t *testing.T, r *http.Request) int {
	t.Helper()
	resp, err := noRedirects.Do(r)
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode
}

// sendStream returns the status of an endless response (an event stream)
// and hangs up.
func sendStream(t *testing.T, r *http.Request) int {
	t.Helper()
	resp, err := http.DefaultClient.Do(r)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

func cookieReq(r *http.Request, session string) *http.Request {
	// Under both names: the server reads the one its public URL calls for
	// (__Host- with https).
	r.AddCookie(&http.Cookie{Name: web.SessionCookie, Value: session})
	r.AddCookie(&http.Cookie{Name: web.HostSessionCookie, Value: session})
	return r
}

// signIn exchanges a person's API token for a web session cookie.
func signIn(t *testing.T, base, token string) string {
	t.Helper()
	r := newReq(t, "POST", base+"/signin", []byte(url.Values{"token": {token}}.Encode()))
	r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	resp, err := noRedirects.Do(r)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	for _, c := range resp.Cookies() {
		if (c.Name == web.SessionCookie || c.Name == web.HostSessionCookie) && c.Value != "" {
			return c.Value
		}
	}
	t.Fatalf("signing in with a person's API token: %d, no session cookie", resp.StatusCode)
	return ""
}

var csrfField = regexp.MustCompile(`name="csrf" value="([^"]+)"`)

// formCSRF returns the CSRF token of the first form on the page r gets.
func formCSRF(t *testing.T, r *http.Request) string {
	t.Helper()
	resp, err := noRedirects.Do(r)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	m := csrfField.FindSubmatch(b)
	if resp.StatusCode != 200 || m == nil {
		t.Fatalf("GET %s: %d, no form with a CSRF token", r.URL.Path, resp.StatusCode)
	}
	return string(m[1])
}
