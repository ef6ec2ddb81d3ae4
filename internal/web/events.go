package web

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net/http"
	"time"

	"github.com/klaxon-oncall/klaxon/escalation"
)

// version fingerprints what a live page shows: the open and acknowledged
// incidents (id, state, step, who acknowledged), or for one incident also
// its timeline's length. A page renders with its version; the event stream
// says "change" when the version moves on.
func (w *Web) version(ctx context.Context, incident uint64) (string, error) {
	h := sha256.New()
	if incident != 0 {
		inc, err := w.cfg.Store.Incident(ctx, incident)
		if err != nil {
			return "", err
		}
		tl, err := w.cfg.Store.Timeline(ctx, incident)
		if err != nil {
			return "", err
		}
		pages, err := w.cfg.Store.Pages(ctx, incident)
		if err != nil {
			return "", err
		}
		fmt.Fprintf(h, "%d %s %d %d|", inc.ID, inc.State, inc.Escalation.Generation, len(tl))
		for _, p := range pages {
			fmt.Fprintf(h, "%s %s|", p.ID, p.Status)
		}
	} else {
		for _, st := range []escalation.State{escalation.Open, escalation.Acknowledged} {
			list, err := w.cfg.Store.Incidents(ctx, escalation.Filter{State: st, Limit: listLimit})
			if err != nil {
				return "", err
			}
			for _, inc := range list {
				e := inc.Escalation
				fmt.Fprintf(h, "%d %s %d %d %d %t %s|", inc.ID, inc.State, e.Generation, e.Step, e.Round, e.Exhausted, inc.AckedBy)
			}
		}
	}
	return hex.EncodeToString(h.Sum(nil)[:8]), nil
}

// keepAlive is how often an idle event stream sends a comment, so proxies
// keep it open.
const keepAlive = 15 * time.Second

// events is a server-sent event stream: "change" whenever the version of
// what the page shows moves on from ?since=. It looks when the engine says
// something changed (Changed), and every LiveInterval otherwise. It ends
// when the session does; a session holds at most MaxStreams of them.
func (w *Web) events(rw http.ResponseWriter, r *http.Request, v viewer) {
	q := r.URL.Query()
	var incident uint64
	if s := q.Get("incident"); s != "" {
		id, ok := w.incidentID(s)
		if !ok {
			http.Error(rw, "incident must be an incident number", http.StatusBadRequest)
			return
		}
		incident = id
	}
	last := q.Get("since")
	if len(last) > 64 {
		http.Error(rw, "since is too long", http.StatusBadRequest)
		return
	}
	release, ok := w.openStream(v.cookie)
	if !ok {
		rw.Header().Set("Retry-After", "30")
		http.Error(rw, "too many live streams for this session: close another tab", http.StatusTooManyRequests)
		return
	}
	defer release()
	rc := http.NewResponseController(rw)
	_ = rc.SetWriteDeadline(time.Time{}) // the stream outlives the server's write timeout
	rw.Header().Set("Content-Type", "text/event-stream")
	rw.Header().Set("X-Accel-Buffering", "no")
	rw.WriteHeader(http.StatusOK)
	fmt.Fprint(rw, "retry: 2000\n\n") // flushed after the first look, so a client that has the headers is being watched for
	tick := time.NewTicker(w.cfg.LiveInterval)
	defer tick.Stop()
	quiet := time.Duration(0)
	for {
		changed := w.changes() // taken before reading: a change during the read is not missed
		cur, err := w.version(r.Context(), incident)
		switch {
		case err == nil && cur != last:
			if last != "" || q.Get("since") != "" {
				fmt.Fprintf(rw, "event: change\ndata: %s\n\n", cur)
			}
			last, quiet = cur, 0
		case quiet >= keepAlive:
			fmt.Fprint(rw, ": still here\n\n")
			quiet = 0
		}
		if rc.Flush() != nil {
			return
		}
		select {
		case <-r.Context().Done():
			return
		case <-w.closing:
			return
		case <-changed:
		case <-tick.C:
			quiet += w.cfg.LiveInterval
		}
		if _, ok := w.viewer(r); !ok {
			fmt.Fprint(rw, "event: signedout\ndata: session ended\n\n")
			_ = rc.Flush()
			return
		}
	}
}
