package selftest

import (
	"encoding/json"
	"net/http"
	"time"

	"github.com/klaxon-oncall/klaxon/notifiers"
)

// Report is the body of GET /api/v1/channels.
type Report struct {
	Channels []ChannelStatus `json:"channels"`
	// Usable counts channels that can page; 0 means nobody can be paged.
	Usable   int            `json:"usable"`
	Watchdog WatchdogStatus `json:"watchdog"`
	// With several replicas: RecordedBy is the replica that made these
	// verdicts (the leader), RecordedAt when it last recorded them, and Age
	// how long ago that was, in seconds, as of this answer.
	RecordedBy string    `json:"recorded_by,omitempty"`
	RecordedAt time.Time `json:"recorded_at,omitzero"`
	Age        *float64  `json:"age_seconds,omitempty"`
	// Heartbeat is the outbound heartbeat's last result (StatusContext only).
	Heartbeat *HeartbeatStatus `json:"heartbeat,omitempty"`
	// Alarms are the open rota and coverage alarms, key → title (StatusContext only).
	Alarms map[string]string `json:"alarms,omitempty"`
}

// Status returns what GET /api/v1/channels shows.
func (m *Monitor) Status() Report {
	r := Report{Channels: m.Channels(), Watchdog: m.Watchdog()}
	for _, c := range r.Channels {
		if c.Status != notifiers.Down {
			r.Usable++
		}
	}
	return r
}

// Handler serves GET /api/v1/channels as JSON (Report). It does no
// authentication: mount it behind the API token.
func (m *Monitor) Handler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			w.Header().Set("Allow", "GET, HEAD")
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusMethodNotAllowed)
			_ = json.NewEncoder(w).Encode(map[string]string{"error": "use GET"})
			return
		}
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Cache-Control", "no-store")
		rep, err := m.StatusContext(r.Context())
		if err != nil {
			w.WriteHeader(http.StatusServiceUnavailable)
			_ = json.NewEncoder(w).Encode(map[string]string{"error": "reading the leader's record of the checks: " + oneLine(err.Error())})
			return
		}
		_ = json.NewEncoder(w).Encode(rep)
	})
}
