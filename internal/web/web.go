// Package web is Klaxon's web interface, made for a phone held half asleep:
// the open incidents, one incident with its alerts, timeline and pages, who
// is on call, the rota's next two weeks and the health of every channel.
// Pages are rendered on the server from templates embedded in the binary,
// work without JavaScript, and load nothing from elsewhere (CSP
// default-src 'self'); a small embedded script refreshes lists live from a
// server-sent event stream.
//
// Two ways in: a signed link, sent in every page to the person paged, lets
// that person see that incident and act on it (Acknowledge, Escalate,
// Resolve) until it expires; a person's API token (auth.File, the same one
// the API and CLI take), pasted into the sign-in form and exchanged for a
// session cookie, opens everything else. A GET never acts: only a form's POST
// does, with a CSRF token, and every action is recorded as the person, via "web".
package web

import (
	"context"
	"embed"
	"errors"
	"html/template"
	"io/fs"
	"log/slog"
	"net/http"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/klaxon-oncall/klaxon/escalation"
	"github.com/klaxon-oncall/klaxon/escalation/rota"
	"github.com/klaxon-oncall/klaxon/internal/auth"
	"github.com/klaxon-oncall/klaxon/internal/rotawatch"
	"github.com/klaxon-oncall/klaxon/internal/selftest"
	"github.com/klaxon-oncall/klaxon/notifiers"
)

//go:embed templates/*.html
var templateFS embed.FS

//go:embed static
var staticFS embed.FS

// Defaults for Config.
const (
	DefaultLinkTTL    = 24 * time.Hour
	DefaultSessionTTL = 12 * time.Hour
)

// SessionCookie is the session cookie's name when the public URL is http;
// HostSessionCookie its name when it is https.
const SessionCookie = "klaxon_session"

// HostSessionCookie is the session cookie's name when the public URL is
// https: the __Host- prefix makes browsers take it only if it is Secure,
// has Path=/ and no Domain, so a sibling subdomain can neither set nor
// shadow it.
const HostSessionCookie = "__Host-" + SessionCookie

// Actor applies a person's action to an incident; the escalation engine
// implements it (Engine.ActAs).
type Actor interface {
	ActAs(ctx context.Context, id uint64, action notifiers.Action, person, via, pageID string) (notifiers.Outcome, error)
}

// Store is what the pages read from the incident store.
type Store interface {
	Incidents(ctx context.Context, f escalation.Filter) ([]escalation.Incident, error)
	Incident(ctx context.Context, id uint64) (escalation.Incident, error)
	Timeline(ctx context.Context, id uint64) ([]escalation.Event, error)
	Pages(ctx context.Context, id uint64) ([]escalation.PageRecord, error)
	Counts(ctx context.Context) (map[escalation.State]int, error)
	Ping(ctx context.Context) error
}

// Health is what the status page shows of Klaxon's self-checks.
type Health struct {
	Report    selftest.Report
	Heartbeat selftest.HeartbeatStatus
	// Coverage lists people on call soon who cannot be paged.
	Coverage []string
}

// Config configures the web interface.
type Config struct {
	Store  Store
	Actor  Actor
	Rota   *rotawatch.Watcher
	Health func(ctx context.Context) Health
	Signer *Signer
	// Tokens exchanges sign-in tokens for people (PersonTokens over the
	// API token file); nil: nobody can sign in (signed links still work).
	Tokens Tokens
	// Sessions, if set, keeps every sign-in as a record in the store
	// (auth.Store): the cookie is a random secret naming it, and signing
	// out, revoking the token it was made from or leaving the rota ends it
	// at once, on every replica. Without it a session is a signed cookie
	// that lasts until it expires (tests of the pages alone).
	Sessions Sessions
	// PublicURL is Klaxon's public base URL: links are made on it, and
	// cookies are Secure when it is https. Without it no link is made.
	PublicURL string
	// LinkTTL is how long a signed link works (default DefaultLinkTTL).
	LinkTTL time.Duration
	// SessionTTL is how long a sign-in lasts (default DefaultSessionTTL).
	SessionTTL time.Duration
	// AuthHeader, if set, names a header an authenticating proxy sets to the
	// signed-in person's email (oauth2-proxy's X-Forwarded-Email). It is
	// believed only on connections from TrustedProxies, and maps to the rota
	// person with that email.
	AuthHeader     string
	TrustedProxies []netip.Prefix
	// LiveInterval is how often an event stream looks at the store on its
	// own (default 5s), and checks its session is still valid. Changes
	// the engine reports through Changed reach every stream at once; the
	// interval covers the rest (another replica's writes).
	LiveInterval time.Duration
	// MaxStreams bounds the event streams one session may hold open
	// (default DefaultMaxStreams); one more is answered 429.
	MaxStreams int
	Now        func() time.Time
	Logger     *slog.Logger
}

// Sessions keeps web sessions in the store (auth.Store implements it).
type Sessions interface {
	StartSession(ctx context.Context, token string, now time.Time, ttl time.Duration) (secret string, s auth.WebSession, ok bool, err error)
	CheckSession(ctx context.Context, secret string, now time.Time) (auth.WebSession, bool, error)
	EndSession(ctx context.Context, secret string) error
}

// Web serves the web interface.
type Web struct {
	cfg    Config
	log    *slog.Logger
	pages  map[string]*template.Template
	secure bool
	cookie string // the session cookie's name
	base   string
	// publicHost is the public URL's host[:port].
	publicHost string

	closeOnce sync.Once
	closing   chan struct{} // closed by Close: event streams end

	mu      sync.Mutex
	changed chan struct{}  // closed (and replaced) by Changed
	streams map[string]int // open event streams by session
}

// DefaultMaxStreams is Config.MaxStreams's default: a phone and a laptop
// with two tabs each.
const DefaultMaxStreams = 4

// Changed tells every open event stream that the incidents may have
// changed, so each looks at once. It is the engine's Config.OnChange (it
// never blocks).
func (w *Web) Changed() {
	w.mu.Lock()
	close(w.changed)
	w.changed = make(chan struct{})
	w.mu.Unlock()
}

// changes returns the channel Changed closes next.
func (w *Web) changes() <-chan struct{} {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.changed
}

// openStream counts an event stream of session in, refusing one beyond the cap.
func (w *Web) openStream(session string) (release func(), ok bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.streams[session] >= w.cfg.MaxStreams {
		return nil, false
	}
	w.streams[session]++
	return func() {
		w.mu.Lock()
		defer w.mu.Unlock()
		if w.streams[session]--; w.streams[session] <= 0 {
			delete(w.streams, session)
		}
	}, true
}

// Close ends every open event stream, so a graceful shutdown need not wait
// for browsers to hang up. Register it with http.Server.RegisterOnShutdown.
func (w *Web) Close() { w.closeOnce.Do(func() { close(w.closing) }) }

// New builds the web interface.
func New(cfg Config) (*Web, error) {
	if cfg.Store == nil || cfg.Actor == nil || cfg.Rota == nil || cfg.Signer == nil {
		return nil, errors.New("web: Store, Actor, Rota and Signer are required")
	}
	if cfg.AuthHeader != "" && len(cfg.TrustedProxies) == 0 {
		return nil, errors.New("web: a trusted sign-in header needs the proxy's addresses")
	}
	if cfg.LinkTTL <= 0 {
		cfg.LinkTTL = DefaultLinkTTL
	}
	if cfg.SessionTTL <= 0 {
		cfg.SessionTTL = DefaultSessionTTL
	}
	if cfg.LiveInterval <= 0 {
		cfg.LiveInterval = 5 * time.Second
	}
	if cfg.MaxStreams <= 0 {
		cfg.MaxStreams = DefaultMaxStreams
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	w := &Web{cfg: cfg, log: cfg.Logger, base: strings.TrimRight(cfg.PublicURL, "/"), closing: make(chan struct{}),
		changed: make(chan struct{}), streams: map[string]int{}}
	if w.base != "" {
		u, err := url.Parse(w.base)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return nil, errors.New("web: the public URL must be an http or https URL")
		}
		w.secure, w.publicHost = u.Scheme == "https", u.Host
	}
	w.cookie = SessionCookie
	if w.secure {
		w.cookie = HostSessionCookie
	}
	var err error
	if w.pages, err = parseTemplates(); err != nil {
		return nil, err
	}
	return w, nil
}

// CookieName is the name of the session cookie this interface sets and reads.
func (w *Web) CookieName() string { return w.cookie }

// Link returns the signed link a page carries for its recipient, or, for a
// page without a rota person, the incident's page (sign-in needed). It is
// the engine's Config.Link.
func (w *Web) Link(inc escalation.Incident, p escalation.PageRecord) string {
	if w.base == "" {
		return ""
	}
	if p.Recipient.PersonID == "" || !personID.MatchString(p.Recipient.PersonID) || p.ID == "" {
		return w.base + "/incidents/" + strconv.FormatUint(inc.ID, 10)
	}
	return w.base + "/l/" + w.cfg.Signer.LinkToken(p.ID, p.Recipient.PersonID, w.cfg.Now().Add(w.cfg.LinkTTL))
}

// Register mounts the interface on r, each route with its auth decision
// (the handlers check the credential themselves):
//
//	GET  /static/                  Public (style sheet and script, no data)
//	GET  /signin, POST /signin     Public (exchanges a person's API token for a session)
//	POST /signout                  Session + CSRF
//	GET  /l/{token}                SignedLink (shows, never acts)
//	POST /l/{token}                SignedLink + CSRF (acts as the link's person)
//	GET  /, /incidents/{id}, /oncall, /rota, /status, /events   Session
//	POST /incidents/{id}/{action}  Session + CSRF
func (w *Web) Register(r auth.Router) {
	static, _ := fs.Sub(staticFS, "static")
	files := http.FileServerFS(static)
	r.Handle("GET /static/", auth.Public, w.headers(http.StripPrefix("/static/", http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
		rw.Header().Set("Cache-Control", "public, max-age=3600")
		files.ServeHTTP(rw, r)
	}))))
	r.Handle("GET /signin", auth.Public, w.headers(http.HandlerFunc(w.signinForm)))
	r.Handle("POST /signin", auth.Public, w.headers(http.HandlerFunc(w.signin)))
	r.Handle("POST /signout", auth.Session, w.headers(w.session(w.signout)))
	r.Handle("GET /l/{token}", auth.SignedLink, w.headers(http.HandlerFunc(w.linkPage)))
	r.Handle("POST /l/{token}", auth.SignedLink, w.headers(http.HandlerFunc(w.linkAct)))
	r.Handle("GET /{$}", auth.Session, w.headers(w.session(w.list)))
	r.Handle("GET /incidents/{id}", auth.Session, w.headers(w.session(w.incident)))
	r.Handle("POST /incidents/{id}/{action}", auth.Session, w.headers(w.session(w.act)))
	r.Handle("GET /oncall", auth.Session, w.headers(w.session(w.oncall)))
	r.Handle("GET /rota", auth.Session, w.headers(w.session(w.rotaPage)))
	r.Handle("GET /status", auth.Session, w.headers(w.session(w.status)))
	r.Handle("GET /events", auth.Session, w.headers(w.session(w.events)))
}

// headers sets the security headers of every web response. The referrer
// policy keeps a signed link out of the Referer sent to runbooks and
// dashboards linked from an incident; it is same-origin rather than
// no-referrer because under no-referrer browsers send "Origin: null" on
// the site's own form posts, and a null origin is refused (sandboxed
// frames and data: pages of other sites send it).
func (w *Web) headers(h http.Handler) http.Handler {
	return http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
		hd := rw.Header()
		hd.Set("Content-Security-Policy", "default-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'")
		hd.Set("X-Content-Type-Options", "nosniff")
		hd.Set("Referrer-Policy", "same-origin")
		hd.Set("X-Frame-Options", "DENY")
		hd.Set("Cache-Control", "no-store")
		h.ServeHTTP(rw, r)
	})
}

// viewer is the signed-in person of a request.
type viewer struct {
	Person *rota.Person
	cookie string
}

type viewerKey struct{}

// session requires a signed-in person who is on the rota in force.
func (w *Web) session(h func(http.ResponseWriter, *http.Request, viewer)) http.Handler {
	return http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
		v, ok := w.viewer(r)
		if !ok {
			if r.Method == http.MethodGet && r.URL.Path != "/events" && r.URL.Query().Get("part") == "" {
				http.Redirect(rw, r, "/signin?next="+url.QueryEscape(r.URL.RequestURI()), http.StatusSeeOther)
				return
			}
			w.fail(rw, r, http.StatusUnauthorized, "Sign in first", "Your session has ended. Sign in again.")
			return
		}
		h(rw, r, v)
	})
}

func (w *Web) viewer(r *http.Request) (viewer, bool) {
	c, err := r.Cookie(w.cookie)
	if err != nil {
		return w.proxyViewer(r)
	}
	var id string
	ok := false
	if w.cfg.Sessions != nil {
		ss, found, err := w.cfg.Sessions.CheckSession(r.Context(), c.Value, w.cfg.Now())
		if err != nil {
			w.log.Error("web: reading the session from the store; treated as signed out", "error", err)
		}
		id, ok = ss.Person, found
	} else {
		id, ok = w.cfg.Signer.verifySession(c.Value, w.cfg.Now())
	}
	if !ok {
		return viewer{}, false
	}
	p := w.cfg.Rota.Current().People[id]
	if p == nil {
		if w.cfg.Sessions != nil { // no longer on the rota: the session ends
			_ = w.cfg.Sessions.EndSession(r.Context(), c.Value)
		}
		return viewer{}, false
	}
	return viewer{Person: p, cookie: c.Value}, true
}

// proxyViewer believes the trusted header only from the proxy's addresses.
func (w *Web) proxyViewer(r *http.Request) (viewer, bool) {
	if w.cfg.AuthHeader == "" {
		return viewer{}, false
	}
	// Exactly one value: a proxy that appends its header to the client's
	// instead of replacing it would otherwise let the client's come first.
	vals := r.Header.Values(w.cfg.AuthHeader)
	if len(vals) != 1 {
		if len(vals) > 1 {
			w.log.Warn("web: the trusted sign-in header came more than once; nobody is signed in (does the proxy replace it?)", "remote", r.RemoteAddr, "header", w.cfg.AuthHeader)
		}
		return viewer{}, false
	}
	email := vals[0]
	if email == "" || len(email) > 254 || strings.ContainsAny(email, ", ") {
		return viewer{}, false
	}
	ap, err := netip.ParseAddrPort(r.RemoteAddr)
	if err != nil {
		return viewer{}, false
	}
	addr := ap.Addr().Unmap()
	trusted := false
	for _, pfx := range w.cfg.TrustedProxies {
		trusted = trusted || pfx.Contains(addr)
	}
	if !trusted {
		return viewer{}, false
	}
	p, ok := w.cfg.Rota.Current().PersonByEmail(email)
	if !ok {
		return viewer{}, false
	}
	// Forms are bound to the person: the CSRF token is made from this.
	return viewer{Person: p, cookie: "proxy\x00" + p.ID}, true
}

// sameOrigin refuses a state-changing request another site's page made:
// browsers say so in Sec-Fetch-Site and Origin. The Origin may name the
// request's Host or the public URL's (a proxy may rewrite Host). "Origin:
// null" is what a sandboxed frame, a data: page or a cross-site redirect
// sends: never this site's own form, so it is refused.
func (w *Web) sameOrigin(r *http.Request) bool {
	switch r.Header.Get("Sec-Fetch-Site") {
	case "", "same-origin", "none":
	default:
		return false
	}
	if len(r.Header.Values("Origin")) > 1 {
		return false
	}
	if o := r.Header.Get("Origin"); o != "" {
		u, err := url.Parse(o)
		if err != nil || (u.Host != r.Host && (w.publicHost == "" || u.Host != w.publicHost)) {
			return false
		}
	}
	return true
}

// maxForm bounds a form body.
const maxForm = 4 << 10

func parseForm(rw http.ResponseWriter, r *http.Request) bool {
	r.Body = http.MaxBytesReader(rw, r.Body, maxForm)
	return r.ParseForm() == nil
}

// linkActions are the actions a signed link's page offers.
var linkActions = map[string]bool{"ack": true, "escalate": true, "resolve": true}

func parseAction(s string) (notifiers.Action, bool) {
	switch s {
	case "ack":
		return notifiers.Ack, true
	case "escalate":
		return notifiers.Escalate, true
	case "resolve":
		return notifiers.Resolve, true
	case "unack":
		return notifiers.Unack, true
	}
	return "", false
}

// doneMessage is what a page says after an action, by the ?done= value the
// action redirected with (fixed texts: nothing from the query is shown).
var doneMessage = map[string]string{
	"ack":      "Acknowledged. Escalation stopped.",
	"escalate": "Escalated to the next step.",
	"resolve":  "Resolved.",
	"unack":    "Acknowledgement withdrawn: paging again.",
	"none":     "Nothing changed: see the incident's state below.",
}

func (w *Web) incidentID(s string) (uint64, bool) {
	id, err := strconv.ParseUint(s, 10, 64)
	return id, err == nil && id > 0
}

func (w *Web) signinForm(rw http.ResponseWriter, r *http.Request) {
	if _, ok := w.viewer(r); ok {
		http.Redirect(rw, r, safeNext(r.URL.Query().Get("next")), http.StatusSeeOther)
		return
	}
	w.render(rw, r, http.StatusOK, "signin", pageData{Title: "Sign in", Data: signinView{Next: safeNext(r.URL.Query().Get("next")), Enabled: w.cfg.Tokens != nil || w.cfg.Sessions != nil}})
}

// safeNext keeps a post-sign-in redirect on this site: a path (with an
// optional query) and nothing a browser could read as another origin.
// Browsers drop tabs and newlines from a URL and read "\\" as "/", so
// "/\t/evil.example" and "/\\evil.example" are "//evil.example" to them:
// control characters, spaces and backslashes anywhere are refused, and what
// is left must parse as a path-only URL.
func safeNext(s string) string {
	if s == "" || len(s) > 512 || s[0] != '/' || strings.HasPrefix(s, "//") {
		return "/"
	}
	for _, r := range s {
		if r < 0x21 || r == 0x7f || r == '\\' || (r >= 0x80 && r <= 0x9f) || r == utf8.RuneError || unicode.Is(unicode.Cf, r) || unicode.IsSpace(r) {
			return "/"
		}
	}
	u, err := url.Parse(s)
	if err != nil || u.Scheme != "" || u.Host != "" || u.User != nil || u.Opaque != "" || !strings.HasPrefix(u.Path, "/") || strings.HasPrefix(u.Path, "//") {
		return "/"
	}
	return s
}

type signinView struct {
	Next    string
	Enabled bool
	Failed  bool
}

func (w *Web) signin(rw http.ResponseWriter, r *http.Request) {
	if !w.sameOrigin(r) {
		w.fail(rw, r, http.StatusForbidden, "Refused", "This form was sent from another site.")
		return
	}
	if !parseForm(rw, r) {
		w.fail(rw, r, http.StatusBadRequest, "Bad request", "The form could not be read.")
		return
	}
	next := safeNext(r.PostForm.Get("next"))
	var id, cookie string
	ok := false
	exp := w.cfg.Now().Add(w.cfg.SessionTTL)
	token := strings.TrimSpace(r.PostForm.Get("token"))
	switch {
	case w.cfg.Sessions != nil && len(token) <= maxTokenLen:
		secret, ss, found, err := w.cfg.Sessions.StartSession(r.Context(), token, w.cfg.Now(), w.cfg.SessionTTL)
		if err != nil {
			w.log.Error("web sign-in: the store could not record the session", "error", err)
			w.fail(rw, r, http.StatusServiceUnavailable, "Not signed in", "Klaxon could not record the sign-in. Try again.")
			return
		}
		id, cookie, ok = ss.Person, secret, found
		if ok && w.cfg.Rota.Current().People[id] == nil {
			_ = w.cfg.Sessions.EndSession(r.Context(), secret)
			ok = false
		}
	case w.cfg.Tokens != nil && w.cfg.Sessions == nil:
		id, ok = w.cfg.Tokens.Person(token)
		cookie = w.cfg.Signer.sessionCookie(id, exp)
	}
	if ok && w.cfg.Rota.Current().People[id] == nil {
		ok = false
	}
	if !ok {
		w.log.Warn("web sign-in refused", "remote", r.RemoteAddr)
		w.render(rw, r, http.StatusUnauthorized, "signin", pageData{Title: "Sign in", Data: signinView{Next: next, Enabled: w.cfg.Tokens != nil || w.cfg.Sessions != nil, Failed: true}})
		return
	}
	http.SetCookie(rw, &http.Cookie{Name: w.cookie, Value: cookie, Path: "/", Expires: exp,
		HttpOnly: true, Secure: w.secure, SameSite: http.SameSiteLaxMode})
	w.log.Info("web sign-in", "person", id)
	http.Redirect(rw, r, next, http.StatusSeeOther)
}

func (w *Web) signout(rw http.ResponseWriter, r *http.Request, v viewer) {
	if !parseForm(rw, r) || !w.sameOrigin(r) || !w.cfg.Signer.csrfOK(v.cookie, r.PostForm.Get("csrf")) {
		w.fail(rw, r, http.StatusForbidden, "Refused", "This form is stale or came from another site. Reload the page and try again.")
		return
	}
	if w.cfg.Sessions != nil && !strings.HasPrefix(v.cookie, "proxy\x00") {
		if err := w.cfg.Sessions.EndSession(r.Context(), v.cookie); err != nil {
			w.log.Error("web sign-out: the store could not end the session", "error", err)
			w.fail(rw, r, http.StatusServiceUnavailable, "Not signed out", "Klaxon could not end the session. Try again.")
			return
		}
	}
	http.SetCookie(rw, &http.Cookie{Name: w.cookie, Value: "", Path: "/", MaxAge: -1, HttpOnly: true, Secure: w.secure, SameSite: http.SameSiteLaxMode})
	http.Redirect(rw, r, "/signin", http.StatusSeeOther)
}

// linkClaim checks the request's signed link; it answers the refusal itself.
func (w *Web) linkClaim(rw http.ResponseWriter, r *http.Request) (Claim, *rota.Person, bool) {
	c, err := w.cfg.Signer.VerifyLink(r.PathValue("token"), w.cfg.Now())
	switch {
	case errors.Is(err, ErrLinkExpired):
		w.fail(rw, r, http.StatusGone, "Link expired",
			"This link expired on "+c.Expires.UTC().Format("2 Jan 15:04 MST")+". Answer the latest page, reply to the text, or sign in.")
		return c, nil, false
	case err != nil:
		w.log.Warn("web link refused", "remote", r.RemoteAddr, "error", err)
		w.fail(rw, r, http.StatusForbidden, "Link not valid", "This link is not valid: it was altered or was not made by this Klaxon.")
		return c, nil, false
	}
	p := w.cfg.Rota.Current().People[c.Person]
	if p == nil {
		w.fail(rw, r, http.StatusForbidden, "Not on the rota", "Only people on the rota can act on incidents.")
		return c, nil, false
	}
	return c, p, true
}

func (w *Web) linkPage(rw http.ResponseWriter, r *http.Request) {
	c, p, ok := w.linkClaim(rw, r)
	if !ok {
		return
	}
	d, err := w.detail(r.Context(), c.Incident)
	if w.readFailed(rw, r, err) {
		return
	}
	d.Link = &linkView{Token: r.PathValue("token"), Expires: c.Expires}
	for _, pg := range d.pages {
		if pg.ID == c.PageID && pg.Generation != d.inc.Escalation.Generation && d.inc.State == escalation.Open {
			d.Link.MovedOn = true
		}
	}
	w.render(rw, r, http.StatusOK, "incident", pageData{Title: "Incident " + strconv.FormatUint(c.Incident, 10), Viewer: p,
		CSRF: w.cfg.Signer.csrfToken(r.PathValue("token")), Done: doneMessage[r.URL.Query().Get("done")], Data: d, Robots: true})
}

func (w *Web) linkAct(rw http.ResponseWriter, r *http.Request) {
	c, p, ok := w.linkClaim(rw, r)
	if !ok {
		return
	}
	if !parseForm(rw, r) || !w.sameOrigin(r) || !w.cfg.Signer.csrfOK(r.PathValue("token"), r.PostForm.Get("csrf")) {
		w.fail(rw, r, http.StatusForbidden, "Refused", "This form is stale or came from another site. Open the link again.")
		return
	}
	// A link does only what its page shows: it may sit in a PagerDuty
	// incident or a shared room that others read, and withdrawing an
	// acknowledgement (which restarts paging) is not one of its buttons.
	if name := r.PostForm.Get("action"); !linkActions[name] {
		w.fail(rw, r, http.StatusBadRequest, "Unknown action", "A link can acknowledge, escalate or resolve; sign in for anything else.")
		return
	}
	done, ok := w.apply(rw, r, c.Incident, r.PostForm.Get("action"), p, c.PageID)
	if ok {
		http.Redirect(rw, r, "/l/"+url.PathEscape(r.PathValue("token"))+"?done="+done, http.StatusSeeOther)
	}
}

func (w *Web) act(rw http.ResponseWriter, r *http.Request, v viewer) {
	id, ok := w.incidentID(r.PathValue("id"))
	if !ok {
		w.fail(rw, r, http.StatusNotFound, "No such incident", "Incident numbers are positive whole numbers.")
		return
	}
	if !parseForm(rw, r) || !w.sameOrigin(r) || !w.cfg.Signer.csrfOK(v.cookie, r.PostForm.Get("csrf")) {
		w.fail(rw, r, http.StatusForbidden, "Refused", "This form is stale or came from another site. Reload the page and try again.")
		return
	}
	done, ok := w.apply(rw, r, id, r.PathValue("action"), v.Person, "")
	if ok {
		back := "/incidents/" + strconv.FormatUint(id, 10)
		if r.PostForm.Get("from") == "list" {
			back = "/"
		}
		http.Redirect(rw, r, back+"?done="+done, http.StatusSeeOther)
	}
}

// apply acts as person through the engine and returns the ?done= value.
func (w *Web) apply(rw http.ResponseWriter, r *http.Request, id uint64, name string, p *rota.Person, pageID string) (string, bool) {
	action, ok := parseAction(name)
	if !ok {
		w.fail(rw, r, http.StatusBadRequest, "Unknown action", "Use the buttons: acknowledge, escalate or resolve.")
		return "", false
	}
	out, err := w.cfg.Actor.ActAs(r.Context(), id, action, p.Name, string(notifiers.Web), pageID)
	switch {
	case errors.Is(err, escalation.ErrNotFound), errors.Is(err, notifiers.ErrUnknownIncident):
		w.fail(rw, r, http.StatusNotFound, "No such incident", "There is no incident "+strconv.FormatUint(id, 10)+".")
		return "", false
	case err != nil:
		w.log.Error("web action failed", "incident", id, "action", action, "error", err)
		w.fail(rw, r, http.StatusServiceUnavailable, "Not recorded", "Klaxon could not record that. Try again, or reply to the page.")
		return "", false
	}
	w.log.Info("web action", "incident", id, "action", action, "person", p.ID, "applied", out.Applied)
	if !out.Applied {
		return "none", true
	}
	return name, true
}

func (w *Web) readFailed(rw http.ResponseWriter, r *http.Request, err error) bool {
	switch {
	case err == nil:
		return false
	case errors.Is(err, escalation.ErrNotFound):
		w.fail(rw, r, http.StatusNotFound, "No such incident", "There is no such incident.")
	default:
		w.log.Error("web: reading the store", "error", err)
		w.fail(rw, r, http.StatusServiceUnavailable, "Store unavailable", "Klaxon could not read its store. Try again.")
	}
	return true
}

func (w *Web) list(rw http.ResponseWriter, r *http.Request, v viewer) {
	rows, err := w.openIncidents(r.Context())
	if w.readFailed(rw, r, err) {
		return
	}
	ver, err := w.version(r.Context(), 0)
	if w.readFailed(rw, r, err) {
		return
	}
	pd := pageData{Title: "Incidents", Nav: "incidents", Viewer: v.Person, Session: true, CSRF: w.cfg.Signer.csrfToken(v.cookie),
		Done: doneMessage[r.URL.Query().Get("done")], Data: rows, Live: "/?part=list", Events: "/events?since=" + ver, Version: ver}
	if r.URL.Query().Get("part") == "list" {
		w.renderPart(rw, "list", "incident-list", pd)
		return
	}
	w.render(rw, r, http.StatusOK, "list", pd)
}

func (w *Web) incident(rw http.ResponseWriter, r *http.Request, v viewer) {
	id, ok := w.incidentID(r.PathValue("id"))
	if !ok {
		w.fail(rw, r, http.StatusNotFound, "No such incident", "Incident numbers are positive whole numbers.")
		return
	}
	d, err := w.detail(r.Context(), id)
	if w.readFailed(rw, r, err) {
		return
	}
	ver, err := w.version(r.Context(), id)
	if w.readFailed(rw, r, err) {
		return
	}
	sid := strconv.FormatUint(id, 10)
	pd := pageData{Title: "Incident " + sid, Nav: "incidents", Viewer: v.Person, Session: true,
		CSRF: w.cfg.Signer.csrfToken(v.cookie), Done: doneMessage[r.URL.Query().Get("done")], Data: d,
		Live: "/incidents/" + sid + "?part=body", Events: "/events?incident=" + sid + "&since=" + ver, Version: ver}
	if r.URL.Query().Get("part") == "body" {
		w.renderPart(rw, "incident", "incident-body", pd)
		return
	}
	w.render(rw, r, http.StatusOK, "incident", pd)
}

func (w *Web) oncall(rw http.ResponseWriter, r *http.Request, v viewer) {
	w.render(rw, r, http.StatusOK, "oncall", pageData{Title: "On call", Nav: "oncall", Viewer: v.Person, Session: true,
		CSRF: w.cfg.Signer.csrfToken(v.cookie), Data: w.onCallView()})
}

func (w *Web) rotaPage(rw http.ResponseWriter, r *http.Request, v viewer) {
	w.render(rw, r, http.StatusOK, "rota", pageData{Title: "Rota", Nav: "rota", Viewer: v.Person, Session: true,
		CSRF: w.cfg.Signer.csrfToken(v.cookie), Data: w.rotaView()})
}

func (w *Web) status(rw http.ResponseWriter, r *http.Request, v viewer) {
	w.render(rw, r, http.StatusOK, "status", pageData{Title: "Status", Nav: "status", Viewer: v.Person, Session: true,
		CSRF: w.cfg.Signer.csrfToken(v.cookie), Data: w.statusView(r.Context())})
}
