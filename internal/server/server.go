// Package server is Klaxon's HTTP face: the Alertmanager webhook, the incident
// API, health and metrics. Provider callbacks (Twilio, PagerDuty) are mounted
// on it by cmd/klaxon.
package server

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode"

	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/klaxon-oncall/klaxon/escalation"
	"github.com/klaxon-oncall/klaxon/internal/auth"
	"github.com/klaxon-oncall/klaxon/internal/metrics"
	"github.com/klaxon-oncall/klaxon/notifiers"
)

// Engine is what the server asks of the escalation engine.
type Engine interface {
	Ingest(ctx context.Context, n escalation.Notification) (escalation.IngestResult, error)
	Act(ctx context.Context, id uint64, action notifiers.Action, actor string) (notifiers.Outcome, error)
}

// DefaultMaxBody is the default limit on a webhook body.
const DefaultMaxBody = 1 << 20

// Config configures a Server.
type Config struct {
	Engine  Engine
	Store   escalation.Store
	Metrics *metrics.Metrics
	// WebhookToken is the bearer token the Alertmanager webhook requires.
	WebhookToken string
	// Auth decides who an API bearer token belongs to (admin or a rota person).
	Auth auth.Authenticator
	// OnRota, if set, says whether a person is on the rota in force: a
	// person's token whose person is not is refused on every API route, as
	// the web already refuses them.
	OnRota func(person string) bool
	// MetricsToken, when set, is required as a bearer token on /metrics.
	MetricsToken string
	// Insecure waives the webhook and API tokens (--insecure-no-auth): every
	// API caller is admin. Signatures and feed tokens are still checked.
	Insecure bool
	// MaxBody limits webhook bodies (default DefaultMaxBody).
	MaxBody int64
	Logger  *slog.Logger
	// Ready adds checks to /readyz beyond the store's (e.g. at least one channel up).
	Ready func(ctx context.Context) error
}

// Server routes Klaxon's HTTP requests. Every route is mounted with an auth
// decision (see Routes).
type Server struct {
	cfg Config
	mux *http.ServeMux
	log *slog.Logger

	mu     sync.Mutex
	routes map[string]auth.Access
}

// Route is a mounted pattern and its auth decision.
type Route struct {
	Pattern string
	Access  auth.Access
}

// New builds a Server. Without Auth and without Insecure every API request is
// refused.
func New(cfg Config) *Server {
	if cfg.MaxBody <= 0 {
		cfg.MaxBody = DefaultMaxBody
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Metrics == nil {
		cfg.Metrics = metrics.New(nil)
	}
	s := &Server{cfg: cfg, mux: http.NewServeMux(), log: cfg.Logger, routes: map[string]auth.Access{}}
	s.Handle("/webhook/alertmanager", auth.WebhookToken, http.HandlerFunc(s.alertmanager))
	s.Handle("GET /api/v1/incidents", auth.APIToken, http.HandlerFunc(s.listIncidents))
	s.Handle("GET /api/v1/incidents/{id}", auth.APIToken, http.HandlerFunc(s.getIncident))
	s.Handle("POST /api/v1/incidents/{id}/{action}", auth.APIToken, http.HandlerFunc(s.act))
	s.Handle("GET /healthz", auth.Public, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, map[string]string{"status": "alive"})
	}))
	s.Handle("GET /readyz", auth.Public, http.HandlerFunc(s.ready))
	s.Handle("GET /metrics", auth.MetricsToken, promhttp.HandlerFor(cfg.Metrics.Registry, promhttp.HandlerOpts{}))
	return s
}

// Handle mounts h on pattern with its auth decision: APIToken and
// MetricsToken routes are wrapped here; WebhookToken, Signature, FeedToken,
// SignedLink and Session handlers check their credential themselves; Public
// routes are open.
func (s *Server) Handle(pattern string, access auth.Access, h http.Handler) {
	switch access {
	case auth.APIToken:
		h = s.ProtectAPI(h)
	case auth.MetricsToken:
		h = requireToken(s.cfg.MetricsToken, h)
	case auth.Public, auth.WebhookToken, auth.Signature, auth.FeedToken, auth.SignedLink, auth.Session:
	default:
		panic("server: route " + pattern + " has no valid auth decision")
	}
	s.mu.Lock()
	s.routes[pattern] = access
	s.mu.Unlock()
	s.mux.Handle(pattern, h)
}

// Routes lists every mounted route with its auth decision, sorted by pattern.
func (s *Server) Routes() []Route {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]Route, 0, len(s.routes))
	for p, a := range s.routes {
		out = append(out, Route{Pattern: p, Access: a})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Pattern < out[j].Pattern })
	return out
}

// ServeHTTP implements http.Handler.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) { s.mux.ServeHTTP(w, r) }

type identityKey struct{}

// Identity is who an API request was authenticated as.
type Identity struct {
	Person string // rota person id of a person token
	Admin  bool   // the shared admin token (or --insecure-no-auth)
}

// IdentityOf returns the identity ProtectAPI attached to r's context.
func IdentityOf(r *http.Request) (Identity, bool) {
	id, ok := r.Context().Value(identityKey{}).(Identity)
	return id, ok
}

// ProtectAPI requires an API token (admin or a person's) and records who it
// belongs to in the request's context.
func (s *Server) ProtectAPI(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var id Identity
		switch {
		case s.cfg.Insecure:
			id.Admin = true
		case s.cfg.Auth != nil:
			person, admin, ok := s.cfg.Auth.Authenticate(auth.Bearer(r))
			if !ok {
				unauthorized(w)
				return
			}
			id = Identity{Person: person, Admin: admin}
			if !admin && s.cfg.OnRota != nil && !s.cfg.OnRota(person) {
				s.log.Warn("API token refused: its person is not on the rota in force", "person", person, "remote", r.RemoteAddr)
				writeError(w, http.StatusForbidden, "this token's person is not on the rota in force")
				return
			}
		default:
			unauthorized(w)
			return
		}
		h.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), identityKey{}, id)))
	})
}

func unauthorized(w http.ResponseWriter) {
	w.Header().Set("WWW-Authenticate", `Bearer realm="klaxon"`)
	writeError(w, http.StatusUnauthorized, "missing or wrong bearer token")
}

// requireToken requires token as a bearer token, when one is set.
func requireToken(token string, h http.Handler) http.Handler {
	if token == "" {
		return h
	}
	want := auth.Hash(token)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !auth.Equal(auth.Bearer(r), want) {
			unauthorized(w)
			return
		}
		h.ServeHTTP(w, r)
	})
}

func (s *Server) alertmanager(w http.ResponseWriter, r *http.Request) {
	count := func(outcome string) { s.cfg.Metrics.Webhooks.WithLabelValues(outcome).Inc() }
	if r.Method != http.MethodPost {
		count("method_not_allowed")
		w.Header().Set("Allow", http.MethodPost)
		writeError(w, http.StatusMethodNotAllowed, "use POST")
		return
	}
	if !s.cfg.Insecure && (s.cfg.WebhookToken == "" || !auth.Equal(auth.Bearer(r), auth.Hash(s.cfg.WebhookToken))) {
		count("unauthorized")
		unauthorized(w)
		return
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, s.cfg.MaxBody))
	if err != nil {
		var tooLarge *http.MaxBytesError
		if errors.As(err, &tooLarge) {
			count("too_large")
			writeError(w, http.StatusRequestEntityTooLarge, "body larger than "+strconv.FormatInt(s.cfg.MaxBody, 10)+" bytes")
			return
		}
		count("bad_request")
		writeError(w, http.StatusBadRequest, "reading body: "+oneLine(err))
		return
	}
	n, err := ParseWebhook(body)
	if err != nil {
		count("bad_request")
		s.log.Warn("rejected Alertmanager webhook", "remote", r.RemoteAddr, "error", oneLine(err))
		writeError(w, http.StatusBadRequest, oneLine(err))
		return
	}
	res, err := s.cfg.Engine.Ingest(r.Context(), n)
	if err != nil {
		count("store_error")
		s.log.Error("could not store Alertmanager webhook; Alertmanager will retry", "groupKey", n.GroupKey, "error", err)
		writeError(w, http.StatusServiceUnavailable, "could not store the notification; retry")
		return
	}
	outcome := "ok"
	if !res.Changed {
		outcome = "unchanged"
	}
	count(outcome)
	writeWebhookAnswer(w, outcome, res.Incident, res.Opened)
}

// writeWebhookAnswer writes a webhook's 200 as writeJSON writes the map
// {"incident", "opened", "status"}, without reflection, a map or sorting
// its keys: every webhook pays for it. outcome needs no escaping.
func writeWebhookAnswer(w http.ResponseWriter, outcome string, incident uint64, opened bool) {
	b := make([]byte, 0, 80)
	b = append(b, "{\n  \"incident\": "...)
	b = strconv.AppendUint(b, incident, 10)
	b = append(b, ",\n  \"opened\": "...)
	b = strconv.AppendBool(b, opened)
	b = append(b, ",\n  \"status\": \""...)
	b = append(b, outcome...)
	b = append(b, "\"\n}\n"...)
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(b)
}

// incidentView is an incident as the API shows it.
type incidentView struct {
	escalation.Incident
	Timeline []escalation.Event      `json:"timeline,omitempty"`
	Pages    []escalation.PageRecord `json:"pages,omitempty"`
}

func (s *Server) listIncidents(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	state, err := escalation.ParseState(q.Get("state"))
	if err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	f := escalation.Filter{State: state}
	if v := q.Get("limit"); v != "" {
		if f.Limit, err = strconv.Atoi(v); err != nil || f.Limit < 1 || f.Limit > 1000 {
			writeError(w, http.StatusBadRequest, "limit must be a number from 1 to 1000")
			return
		}
	}
	if v := q.Get("before"); v != "" {
		if f.Before, err = strconv.ParseUint(v, 10, 64); err != nil {
			writeError(w, http.StatusBadRequest, "before must be an incident number")
			return
		}
	}
	list, err := s.cfg.Store.Incidents(r.Context(), f)
	if err != nil {
		s.log.Error("listing incidents", "error", err)
		writeError(w, http.StatusInternalServerError, "could not read incidents")
		return
	}
	if list == nil {
		list = []escalation.Incident{}
	}
	writeJSON(w, http.StatusOK, map[string]any{"incidents": list})
}

func (s *Server) incidentID(w http.ResponseWriter, r *http.Request) (uint64, bool) {
	id, err := strconv.ParseUint(r.PathValue("id"), 10, 64)
	if err != nil || id == 0 {
		writeError(w, http.StatusBadRequest, "incident id must be a positive number")
		return 0, false
	}
	return id, true
}

func (s *Server) getIncident(w http.ResponseWriter, r *http.Request) {
	id, ok := s.incidentID(w, r)
	if !ok {
		return
	}
	inc, err := s.cfg.Store.Incident(r.Context(), id)
	if errors.Is(err, escalation.ErrNotFound) {
		writeError(w, http.StatusNotFound, "no incident "+strconv.FormatUint(id, 10))
		return
	}
	if err != nil {
		s.log.Error("reading incident", "id", id, "error", err)
		writeError(w, http.StatusInternalServerError, "could not read the incident")
		return
	}
	v := incidentView{Incident: inc}
	if v.Timeline, err = s.cfg.Store.Timeline(r.Context(), id); err == nil {
		v.Pages, err = s.cfg.Store.Pages(r.Context(), id)
	}
	if err != nil {
		s.log.Error("reading timeline", "id", id, "error", err)
		writeError(w, http.StatusInternalServerError, "could not read the timeline")
		return
	}
	writeJSON(w, http.StatusOK, v)
}

func (s *Server) act(w http.ResponseWriter, r *http.Request) {
	id, ok := s.incidentID(w, r)
	if !ok {
		return
	}
	var action notifiers.Action
	switch a := r.PathValue("action"); a {
	case "ack", "acknowledge":
		action = notifiers.Ack
	case "unack", "unacknowledge":
		action = notifiers.Unack
	case "escalate":
		action = notifiers.Escalate
	case "resolve":
		action = notifiers.Resolve
	default:
		writeError(w, http.StatusNotFound, "unknown action "+strconv.Quote(clip(a))+" (want ack, unack, escalate or resolve)")
		return
	}
	var body struct {
		By string `json:"by"`
	}
	if r.ContentLength != 0 {
		if err := json.NewDecoder(io.LimitReader(r.Body, 64<<10)).Decode(&body); err != nil && !errors.Is(err, io.EOF) {
			writeError(w, http.StatusBadRequest, "malformed JSON: "+oneLine(err))
			return
		}
	}
	actor, msg := actorOf(r, body.By)
	if msg != "" {
		writeError(w, http.StatusForbidden, msg)
		return
	}
	out, err := s.cfg.Engine.Act(r.Context(), id, action, actor)
	switch {
	case errors.Is(err, escalation.ErrNotFound), errors.Is(err, notifiers.ErrUnknownIncident):
		writeError(w, http.StatusNotFound, "no incident "+strconv.FormatUint(id, 10))
		return
	case err != nil:
		s.log.Error("incident action failed", "id", id, "action", action, "error", err)
		writeError(w, http.StatusServiceUnavailable, "could not record the action; retry")
		return
	}
	writeJSON(w, http.StatusOK, out)
}

// actorOf decides who an action is recorded as. A person token acts as its
// person only: a different "by" is refused. The admin token is recorded as
// "api" (a "by" it gives is kept as a claim, "api (as NAME)").
func actorOf(r *http.Request, by string) (actor, refusal string) {
	id, _ := IdentityOf(r)
	switch {
	case id.Person != "" && by != "" && by != id.Person:
		return "", "this token acts as " + id.Person + " only; \"by\" cannot name someone else"
	case id.Person != "":
		return id.Person, ""
	case by != "":
		return "api (as " + clip(strings.Map(func(r rune) rune {
			if unicode.IsControl(r) {
				return -1
			}
			return r
		}, by)) + ")", ""
	}
	return "api", ""
}

func (s *Server) ready(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), 5*time.Second)
	defer cancel()
	if err := s.cfg.Store.Ping(ctx); err != nil {
		writeError(w, http.StatusServiceUnavailable, "store not usable: "+oneLine(err))
		return
	}
	if s.cfg.Ready != nil {
		if err := s.cfg.Ready(ctx); err != nil {
			writeError(w, http.StatusServiceUnavailable, oneLine(err))
			return
		}
	}
	writeJSON(w, http.StatusOK, map[string]string{"status": "ready"})
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
}

func writeError(w http.ResponseWriter, code int, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(map[string]string{"error": msg})
}
