// Package server is Klaxon's HTTP face: the Alertmanager webhook, the incident
// API, health and metrics. Provider callbacks (Twilio, PagerDuty) are mounted
// on it by cmd/klaxon.
package server

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/klaxon-oncall/klaxon/escalation"
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
	// WebhookToken, when set, is required as a bearer token on the Alertmanager webhook.
	WebhookToken string
	// APIToken, when set, is required as a bearer token on /api/.
	APIToken string
	// MaxBody limits webhook bodies (default DefaultMaxBody).
	MaxBody int64
	Logger  *slog.Logger
	// Ready adds checks to /readyz beyond the store's (e.g. at least one channel up).
	Ready func(ctx context.Context) error
}

// Server routes Klaxon's HTTP requests.
type Server struct {
	cfg Config
	mux *http.ServeMux
	log *slog.Logger
}

// New builds a Server.
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
	s := &Server{cfg: cfg, mux: http.NewServeMux(), log: cfg.Logger}
	s.mux.HandleFunc("/webhook/alertmanager", s.alertmanager)
	s.mux.Handle("GET /api/v1/incidents", s.ProtectAPI(http.HandlerFunc(s.listIncidents)))
	s.mux.Handle("GET /api/v1/incidents/{id}", s.ProtectAPI(http.HandlerFunc(s.getIncident)))
	s.mux.Handle("POST /api/v1/incidents/{id}/{action}", s.ProtectAPI(http.HandlerFunc(s.act)))
	s.mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, map[string]string{"status": "alive"})
	})
	s.mux.HandleFunc("GET /readyz", s.ready)
	s.mux.Handle("GET /metrics", promhttp.HandlerFor(cfg.Metrics.Registry, promhttp.HandlerOpts{}))
	return s
}

// Mux exposes the router, for packages that register their own routes.
func (s *Server) Mux() *http.ServeMux { return s.mux }

// Handle mounts h on pattern (provider callbacks, rota API).
func (s *Server) Handle(pattern string, h http.Handler) { s.mux.Handle(pattern, h) }

// ServeHTTP implements http.Handler.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) { s.mux.ServeHTTP(w, r) }

// ProtectAPI requires the API token, when one is configured.
func (s *Server) ProtectAPI(h http.Handler) http.Handler {
	return requireToken(s.cfg.APIToken, h)
}

func requireToken(token string, h http.Handler) http.Handler {
	if token == "" {
		return h
	}
	want := sha256.Sum256([]byte(token))
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !tokenOK(r, want) {
			w.Header().Set("WWW-Authenticate", `Bearer realm="klaxon"`)
			writeError(w, http.StatusUnauthorized, "missing or wrong bearer token")
			return
		}
		h.ServeHTTP(w, r)
	})
}

// tokenOK compares the request's bearer token with want in constant time
// (hashing first, so neither the length nor the content leaks).
func tokenOK(r *http.Request, want [32]byte) bool {
	auth := r.Header.Get("Authorization")
	scheme, tok, ok := strings.Cut(auth, " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return false
	}
	got := sha256.Sum256([]byte(strings.TrimSpace(tok)))
	return subtle.ConstantTimeCompare(got[:], want[:]) == 1
}

func (s *Server) alertmanager(w http.ResponseWriter, r *http.Request) {
	count := func(outcome string) { s.cfg.Metrics.Webhooks.WithLabelValues(outcome).Inc() }
	if r.Method != http.MethodPost {
		count("method_not_allowed")
		w.Header().Set("Allow", http.MethodPost)
		writeError(w, http.StatusMethodNotAllowed, "use POST")
		return
	}
	if s.cfg.WebhookToken != "" && !tokenOK(r, sha256.Sum256([]byte(s.cfg.WebhookToken))) {
		count("unauthorized")
		w.Header().Set("WWW-Authenticate", `Bearer realm="klaxon"`)
		writeError(w, http.StatusUnauthorized, "missing or wrong bearer token")
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
		s.log.Warn("rejected Alertmanager webhook", "remote", r.RemoteAddr, "error", err)
		writeError(w, http.StatusBadRequest, err.Error())
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
	writeJSON(w, http.StatusOK, map[string]any{"status": outcome, "incident": res.Incident, "opened": res.Opened})
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
	actor := body.By
	if actor == "" {
		actor = "api"
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

func (s *Server) ready(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), 5*time.Second)
	defer cancel()
	if err := s.cfg.Store.Ping(ctx); err != nil {
		writeError(w, http.StatusServiceUnavailable, "store not writable: "+oneLine(err))
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
