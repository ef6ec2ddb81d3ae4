package pagerduty

import (
	"context"
	"encoding/json"
	"log/slog"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	pd "github.com/PagerDuty/go-pagerduty"

	"github.com/klaxon-oncall/klaxon/notifiers"
)

// State kept through Config.State, so a restart forgets nothing an attacker
// or a poll could exploit: webhook event ids already handled (a captured
// signed webhook cannot be replayed after a restart), the incidents being
// tracked for polling, and PagerDuty user id → email.
const (
	bucketEvents  = "pagerduty-webhook-events" // event id → unix nanoseconds handled
	bucketTracked = "pagerduty-tracked"        // incident key → trackedJSON
	bucketUsers   = "pagerduty-users"          // user id → userJSON
)

// userTTL is how long a looked-up email is trusted before it is asked again.
const userTTL = 24 * time.Hour

// sweepEvery is how many remembered events trigger an expiry sweep.
const sweepEvery = 256

type trackedJSON struct {
	RoutingKey string    `json:"routing_key,omitempty"`
	Incident   uint64    `json:"incident"`
	PageID     string    `json:"page_id,omitempty"`
	Since      time.Time `json:"since"`
	LastStatus string    `json:"last_status,omitempty"`
	ConfirmBy  time.Time `json:"confirm_by,omitzero"`
}

type userJSON struct {
	Email string    `json:"email"`
	At    time.Time `json:"at"`
}

// durable is the notifier's view of Config.State.
type durable struct {
	store   notifiers.StateStore
	sweeper notifiers.StateSweeper
	puts    atomic.Int64
}

// load restores the tracked incidents and drops expired event ids.
func (n *Notifier) loadState(ctx context.Context) {
	if n.state.sweeper == nil {
		if n.state.store != nil {
			n.log.Warn("PagerDuty state store cannot be walked: incidents tracked for polling are not restored after a restart")
		}
		return
	}
	type entry struct {
		key string
		t   tracked
	}
	var list []entry
	err := n.state.sweeper.SweepState(ctx, bucketTracked, func(key string, v []byte) bool {
		var tj trackedJSON
		if json.Unmarshal(v, &tj) != nil {
			return false
		}
		list = append(list, entry{key, tracked{routingKey: tj.RoutingKey, incident: tj.Incident, pageID: tj.PageID, since: tj.Since, lastStatus: tj.LastStatus, confirmBy: tj.ConfirmBy}})
		return true
	})
	if err != nil {
		n.log.Warn("PagerDuty tracked incidents not restored", slog.String("error", err.Error()))
	}
	// Oldest first, as the tracker keeps them.
	for i := 1; i < len(list); i++ {
		for j := i; j > 0 && list[j].t.since.Before(list[j-1].t.since); j-- {
			list[j], list[j-1] = list[j-1], list[j]
		}
	}
	waiting := 0
	for _, e := range list {
		n.tracked.track(e.key, e.t)
		n.tracked.setStatus(e.key, e.t.lastStatus)
		if !e.t.confirmBy.IsZero() && n.ConfirmWithin() > 0 {
			// A page still waiting for PagerDuty's evidence when the
			// process stopped: look again at once, by the same deadline.
			n.confirms.add(&pendingConfirm{pageID: e.t.pageID, incident: e.t.incident, key: e.key,
				sent: e.t.since, deadline: e.t.confirmBy, next: n.cfg.Now()})
			waiting++
		}
	}
	if waiting > 0 {
		n.log.Info("PagerDuty pages waiting for delivery confirmation checked again after a restart", slog.Int("pages", waiting))
	}
	if len(list) > 0 {
		n.log.Info("PagerDuty incidents tracked again after a restart", slog.Int("incidents", len(list)))
	}
	n.sweepEvents(ctx)
}

// reloadState replaces the tracked incidents with those in the store. Run
// calls it: with several replicas the one that becomes the leader polls the
// incidents the leader before it tracked, not the few it knew when it started.
func (n *Notifier) reloadState(ctx context.Context) {
	if n.state.sweeper == nil {
		return
	}
	n.tracked.reset()
	n.loadState(ctx)
}

func (n *Notifier) sweepEvents(ctx context.Context) {
	if n.state.sweeper == nil {
		return
	}
	now := n.cfg.Now()
	err := n.state.sweeper.SweepState(ctx, bucketEvents, func(_ string, v []byte) bool {
		at, err := strconv.ParseInt(string(v), 10, 64)
		return err == nil && now.Sub(time.Unix(0, at)) <= n.replays.ttl
	})
	if err != nil {
		n.log.Warn("PagerDuty webhook event ids not expired", slog.String("error", err.Error()))
	}
}

// handledBefore reports whether event id was handled within the replay
// window, by this process or one before a restart.
func (n *Notifier) handledBefore(ctx context.Context, id string, now time.Time) bool {
	if n.state.store == nil {
		return false
	}
	v, err := n.state.store.GetState(ctx, bucketEvents, id)
	if err != nil || v == nil {
		return false
	}
	at, err := strconv.ParseInt(string(v), 10, 64)
	return err == nil && now.Sub(time.Unix(0, at)) <= n.replays.ttl
}

// rememberHandled records event id as handled, durably.
func (n *Notifier) rememberHandled(ctx context.Context, id string, now time.Time) {
	if n.state.store == nil {
		return
	}
	if err := n.state.store.PutState(ctx, bucketEvents, id, []byte(strconv.FormatInt(now.UnixNano(), 10))); err != nil {
		n.log.Warn("PagerDuty webhook event id not stored: a replay after a restart would not be recognised", slog.String("error", err.Error()))
	}
	if n.state.puts.Add(1)%sweepEvery == 0 {
		n.sweepEvents(ctx)
	}
}

// track records key as paged for, in memory and in the store.
func (n *Notifier) track(ctx context.Context, key string, t tracked) {
	n.tracked.track(key, t)
	n.persistTracked(ctx, key)
}

func (n *Notifier) setStatus(ctx context.Context, key, status string) {
	n.tracked.setStatus(key, status)
	n.persistTracked(ctx, key)
}

func (n *Notifier) forget(ctx context.Context, key string) {
	n.tracked.forget(key)
	if n.state.store != nil {
		if err := n.state.store.PutState(ctx, bucketTracked, key, nil); err != nil {
			n.log.Warn("PagerDuty tracked incident not removed from the store", slog.String("error", err.Error()))
		}
	}
}

func (n *Notifier) persistTracked(ctx context.Context, key string) {
	if n.state.store == nil {
		return
	}
	t, ok := n.tracked.get(key)
	if !ok {
		return
	}
	b, _ := json.Marshal(trackedJSON{RoutingKey: t.routingKey, Incident: t.incident, PageID: t.pageID, Since: t.since, LastStatus: t.lastStatus, ConfirmBy: t.confirmBy})
	if err := n.state.store.PutState(ctx, bucketTracked, key, b); err != nil {
		n.log.Warn("PagerDuty tracked incident not stored", slog.String("error", err.Error()))
	}
}

// alias returns the email of PagerDuty user id, so a rota that names people
// by email matches an answer that carries only the user id. It is looked up
// with the REST API (GET /users/{id}) and cached in the store for userTTL.
// Without an API token, or when the lookup fails, there is none: the answer
// is then matched by id alone, and if that matches nobody it is recorded but
// does not stop escalation (the safe side).
func (n *Notifier) alias(ctx context.Context, log *slog.Logger, id string) string {
	if id == "" || n.cfg.APIToken == "" || strings.Contains(id, "@") {
		return ""
	}
	now := n.cfg.Now()
	if n.state.store != nil {
		if v, err := n.state.store.GetState(ctx, bucketUsers, id); err == nil && v != nil {
			var u userJSON
			if json.Unmarshal(v, &u) == nil && now.Sub(u.At) < userTTL && u.Email != "" {
				return u.Email
			}
		}
	}
	ctx, c := withCapture(ctx)
	u, err := n.client.GetUserWithContext(ctx, id, pd.GetUserOptions{})
	if err != nil {
		log.Warn("PagerDuty user's email could not be looked up; matching the rota by user id only",
			slog.String("user", id), slog.String("error", n.classify("look up user", err, c).Error()))
		return ""
	}
	if u.Email == "" {
		return ""
	}
	if n.state.store != nil {
		b, _ := json.Marshal(userJSON{Email: u.Email, At: now})
		if err := n.state.store.PutState(ctx, bucketUsers, id, b); err != nil {
			log.Warn("PagerDuty user's email not cached", slog.String("error", err.Error()))
		}
	}
	return u.Email
}
