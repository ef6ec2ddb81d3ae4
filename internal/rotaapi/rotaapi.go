// Package rotaapi serves the rota over HTTP: who is on call now, the state of
// the rota file, and an iCalendar feed of shifts that staff subscribe to.
package rotaapi

import (
	"bytes"
	"encoding/json"
	"net/http"
	"net/url"
	"regexp"
	"strconv"
	"time"

	"github.com/klaxon-oncall/klaxon/escalation/rota"
	"github.com/klaxon-oncall/klaxon/internal/auth"
	"github.com/klaxon-oncall/klaxon/internal/rotawatch"
)

// Feed window of /rota.ics: shifts from FeedPast ago until DefaultFeedDays ahead.
const (
	FeedPast        = 14 * 24 * time.Hour
	DefaultFeedDays = 90
	MaxFeedDays     = 366
)

// FeedAuth maps a calendar feed token to what it may read (auth.File.FeedScope).
type FeedAuth func(token string) (auth.Scope, bool)

// Register adds the rota endpoints to r:
//
//	GET /api/v1/oncall  who is on call now per rotation, until when, and how to reach them (API token)
//	GET /api/v1/rota    whether the rota file is valid, its errors and warnings (API token)
//	GET /rota.ics       iCalendar feed of shifts; ?token= (a feed token: calendar
//	                    apps cannot send headers, so the URL is the secret), ?days=
//
// feed checks feed tokens (nil refuses every feed); now is the clock.
func Register(r auth.Router, w *rotawatch.Watcher, feed FeedAuth, now func() time.Time) {
	if now == nil {
		now = time.Now
	}
	if feed == nil {
		feed = func(string) (auth.Scope, bool) { return auth.Scope{}, false }
	}
	h := &handlers{w: w, now: now, feed: feed}
	r.Handle("GET /api/v1/oncall", auth.APIToken, http.HandlerFunc(h.oncall))
	r.Handle("GET /api/v1/rota", auth.APIToken, http.HandlerFunc(h.rota))
	r.Handle("GET /rota.ics", auth.FeedToken, http.HandlerFunc(h.ics))
}

type handlers struct {
	w    *rotawatch.Watcher
	now  func() time.Time
	feed FeedAuth
}

// Contact is a person as the API shows them.
type Contact struct {
	ID            string `json:"id"`
	Name          string `json:"name"`
	Phone         string `json:"phone,omitempty"`
	MatrixID      string `json:"matrix,omitempty"`
	PagerDutyUser string `json:"pagerduty,omitempty"`
	Timezone      string `json:"timezone,omitempty"`
}

// OnCall is one rotation's entry in GET /api/v1/oncall.
type OnCall struct {
	Rotation string    `json:"rotation"`
	OnCall   *Contact  `json:"on_call"` // null when nobody is on call
	Since    time.Time `json:"since,omitzero"`
	Until    time.Time `json:"until,omitzero"`
	Override bool      `json:"override,omitempty"`
	// CoveringFor is who the rotation itself has, when an override applies.
	CoveringFor string   `json:"covering_for,omitempty"`
	Reason      string   `json:"reason,omitempty"`
	Next        *Contact `json:"next,omitempty"`
}

// OnCallResponse is the body of GET /api/v1/oncall.
type OnCallResponse struct {
	At        time.Time `json:"at"`
	Timezone  string    `json:"timezone"`
	Rotations []OnCall  `json:"rotations"`
}

// RotaResponse is the body of GET /api/v1/rota.
type RotaResponse struct {
	Valid       bool      `json:"valid"`
	Source      string    `json:"source"`
	Errors      []string  `json:"errors"`
	Warnings    []string  `json:"warnings"`
	LoadedAt    time.Time `json:"loaded_at"`
	AttemptedAt time.Time `json:"attempted_at"`
}

func contact(p *rota.Person) *Contact {
	if p == nil {
		return nil
	}
	c := &Contact{ID: p.ID, Name: p.Name, Phone: p.Phone, MatrixID: p.MatrixID, PagerDutyUser: p.PagerDutyUser}
	if p.Location != nil {
		c.Timezone = p.Location.String()
	}
	return c
}

// currentHorizon bounds how far ahead "until" looks for a change of person.
const currentHorizon = 400 * 24 * time.Hour

func (h *handlers) oncall(w http.ResponseWriter, req *http.Request) {
	if len(req.URL.Query()) > 0 {
		http.Error(w, "no query parameters are accepted", http.StatusBadRequest)
		return
	}
	r := h.w.Current()
	now := h.now()
	resp := OnCallResponse{At: now, Timezone: r.Location.String(), Rotations: []OnCall{}}
	for _, id := range r.RotationIDs() {
		rot := r.Rotations[id]
		oc := OnCall{Rotation: id}
		if s, ok := rota.Current(rot, now, currentHorizon); ok {
			oc.OnCall = contact(r.People[s.Person])
			oc.Since, oc.Until = s.Start, s.End
			oc.Override, oc.Reason = s.Override, s.Reason
			if s.Override {
				oc.CoveringFor = s.Scheduled
			}
			if next, ok := rota.Current(rot, s.End, currentHorizon); ok {
				oc.Next = contact(r.People[next.Person])
			}
		} else if rot.Start.After(now) {
			oc.Until = rot.Start
		}
		resp.Rotations = append(resp.Rotations, oc)
	}
	writeJSON(w, resp)
}

func (h *handlers) rota(w http.ResponseWriter, req *http.Request) {
	if len(req.URL.Query()) > 0 {
		http.Error(w, "no query parameters are accepted", http.StatusBadRequest)
		return
	}
	resp := RotaResponse{
		Valid:       h.w.Valid(),
		Source:      h.w.Current().Source,
		Errors:      h.w.Errors(),
		Warnings:    []string{},
		LoadedAt:    h.w.LoadedAt(),
		AttemptedAt: h.w.AttemptedAt(),
	}
	if resp.Errors == nil {
		resp.Errors = []string{}
	}
	for _, x := range h.w.Warnings() {
		resp.Warnings = append(resp.Warnings, x.String())
	}
	writeJSON(w, resp)
}

var idParam = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$`)

// icsQuery validates the feed's query: only token, person, rotation and
// days, each at most once and well-formed.
func icsQuery(q url.Values) (token, person, rotation string, days int, msg string) {
	days = DefaultFeedDays
	for k, v := range q {
		if len(v) != 1 {
			return "", "", "", 0, "parameter " + strconv.Quote(k) + " given more than once"
		}
		switch k {
		case "token":
			token = v[0]
		case "person", "rotation":
			if !idParam.MatchString(v[0]) {
				return "", "", "", 0, "invalid " + k
			}
			if k == "person" {
				person = v[0]
			} else {
				rotation = v[0]
			}
		case "days":
			n, err := strconv.Atoi(v[0])
			if err != nil || n < 1 || n > MaxFeedDays {
				return "", "", "", 0, "days must be a whole number from 1 to " + strconv.Itoa(MaxFeedDays)
			}
			days = n
		default:
			return "", "", "", 0, "unknown parameter (accepted: token, person, rotation, days)"
		}
	}
	return token, person, rotation, days, ""
}

func (h *handlers) ics(w http.ResponseWriter, req *http.Request) {
	if len(req.URL.RawQuery) > 1024 {
		http.Error(w, "query too long", http.StatusBadRequest)
		return
	}
	q, err := url.ParseQuery(req.URL.RawQuery)
	if err != nil {
		http.Error(w, "malformed query", http.StatusBadRequest)
		return
	}
	token, person, rotation, days, msg := icsQuery(q)
	if msg != "" {
		http.Error(w, msg, http.StatusBadRequest)
		return
	}
	scope, ok := h.feed(token)
	if !ok {
		http.Error(w, "missing, wrong or revoked feed token (create one with: klaxon token create --feed)", http.StatusUnauthorized)
		return
	}
	// The token decides what the feed shows; a query may only repeat it.
	if (person != "" && person != scope.Person) || (rotation != "" && rotation != scope.Rotation) {
		http.Error(w, "this feed token is for "+scope.String()+" only", http.StatusForbidden)
		return
	}
	person, rotation = scope.Person, scope.Rotation
	r := h.w.Current()
	if person != "" && r.People[person] == nil {
		http.Error(w, "unknown person", http.StatusNotFound)
		return
	}
	if rotation != "" && r.Rotations[rotation] == nil {
		http.Error(w, "unknown rotation", http.StatusNotFound)
		return
	}
	now := h.now()
	var buf bytes.Buffer
	err = rota.WriteICS(&buf, r, rota.ICSOptions{
		Rotation: rotation, Person: person,
		From: now.Add(-FeedPast), To: now.AddDate(0, 0, days), Now: now,
	})
	if err != nil {
		http.Error(w, "cannot build calendar", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/calendar; charset=utf-8")
	w.Header().Set("Cache-Control", "private, max-age=300")
	w.Header().Set("Referrer-Policy", "no-referrer")
	_, _ = w.Write(buf.Bytes())
}

func writeJSON(w http.ResponseWriter, v any) {
	body, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		http.Error(w, "cannot encode response", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	_, _ = w.Write(append(body, '\n'))
}
