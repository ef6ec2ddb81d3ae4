package selftest

import (
	"encoding/json"
	"net/http"

	"github.com/klaxon-oncall/klaxon/notifiers"
)

// Report is the body of GET /api/v1/channels.
type Report struct {
	Channels []ChannelStatus `json:"channels"`
	// Usable counts channels that can page; 0 means nobody can be paged.
	Usable   int            `json:"usable"`
	Watchdog WatchdogStatus `json:"watchdog"`
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
		_ = json.NewEncoder(w).Encode(m.Status())
	})
}
