package selftest

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"time"

	"github.com/klaxon-oncall/klaxon/notifiers"
)

// Keys of the durable records in the "selftest" bucket.
const (
	keyChannels = "channels"
	keyWatchdog = WatchdogKey
	keyAlarms   = "alarms"
)

// channelRecord is what the Monitor knows of one channel. It is kept durable
// so a channel found down stays down (and its alarm open) across restarts.
type channelRecord struct {
	Status      notifiers.Status `json:"status"`
	Reason      string           `json:"reason,omitempty"`
	WillFail    bool             `json:"will_fail,omitempty"`
	Since       time.Time        `json:"since,omitzero"` // when Status began
	LastSuccess time.Time        `json:"last_success,omitzero"`
	LastCheck   time.Time        `json:"last_check,omitzero"`
	// Failures counts failed checks (and permanent send failures) in a row.
	Failures     int       `json:"failures,omitempty"`
	FirstFailure time.Time `json:"first_failure,omitzero"`
	LastError    string    `json:"last_error,omitempty"`
	// Alarm is the kind of alarm raised for this channel ("down", "degraded")
	// or "" when none is open; AlarmSince is when the condition began.
	Alarm      string    `json:"alarm,omitempty"`
	AlarmSince time.Time `json:"alarm_since,omitzero"`
	// LastDelivered is the last proven delivery: a page (or canary) the
	// channel confirmed arrived.
	LastDelivered time.Time `json:"last_delivered,omitzero"`
	// Unconfirmed counts unconfirmed pages (canaries, stalled syncs) in a
	// row; LastUnconfirmed is the latest one's reason.
	Unconfirmed     int    `json:"unconfirmed,omitempty"`
	LastUnconfirmed string `json:"last_unconfirmed,omitempty"`
	// NotDelivering, when set, is why the channel is degraded: it accepts
	// pages but does not deliver them (UnconfirmedToDegraded in a row),
	// since NotDeliveringSince, until a page is confirmed again.
	NotDelivering      string    `json:"not_delivering,omitempty"`
	NotDeliveringSince time.Time `json:"not_delivering_since,omitzero"`
}

func (r channelRecord) usable() bool { return r.Status != notifiers.Down }

// watchdogRecord is the dead man's switch's durable state.
type watchdogRecord struct {
	// ArmedAt is when Klaxon first started watching (the deadline's base
	// until the first Watchdog arrives).
	ArmedAt  time.Time `json:"armed_at,omitzero"`
	LastSeen time.Time `json:"last_seen,omitzero"`
	Alarmed  bool      `json:"alarmed,omitempty"`
	// SilentSince is the deadline's base when the alarm was raised.
	SilentSince time.Time `json:"silent_since,omitzero"`
}

// base is the time the deadline runs from: the last arrival, or when
// watching began if the Watchdog never arrived.
func (w watchdogRecord) base() time.Time {
	if !w.LastSeen.IsZero() {
		return w.LastSeen
	}
	return w.ArmedAt
}

// alarmRecord tracks the rota and coverage alarms.
type alarmRecord struct {
	// Raised is the set of keys with an open alarm, each with its title.
	Raised map[string]string `json:"raised,omitempty"`
}

// errCorrupt marks a stored record that cannot be decoded.
var errCorrupt = errors.New("corrupt record")

func getJSON(ctx context.Context, s notifiers.StateStore, key string, v any) (bool, error) {
	b, err := s.GetState(ctx, stateBucket, key)
	if err != nil {
		return false, fmt.Errorf("reading self-test state %q: %w", key, err)
	}
	if b == nil {
		return false, nil
	}
	if err := json.Unmarshal(b, v); err != nil {
		return false, fmt.Errorf("self-test state %q: %w: %v", key, errCorrupt, err)
	}
	return true, nil
}

func putJSON(ctx context.Context, s notifiers.StateStore, key string, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	if err := s.PutState(ctx, stateBucket, key, b); err != nil {
		return fmt.Errorf("saving self-test state %q: %w", key, err)
	}
	return nil
}

// channelOrder ranks channels as notifiers.Channels lists them.
func channelOrder(ch notifiers.Channel) int {
	for i, c := range notifiers.Channels {
		if c == ch {
			return i
		}
	}
	return len(notifiers.Channels)
}

func sortChannels(chs []notifiers.Channel) []notifiers.Channel {
	sort.SliceStable(chs, func(i, j int) bool {
		oi, oj := channelOrder(chs[i]), channelOrder(chs[j])
		if oi != oj {
			return oi < oj
		}
		return chs[i] < chs[j]
	})
	return chs
}

// StateBucket is the state-store bucket of the monitor's records; WatchdogKey
// is the one among them written where the Watchdog arrives (any replica), the
// others only by the replica that runs the self-tests.
const (
	StateBucket = "selftest"
	WatchdogKey = "watchdog"
)
