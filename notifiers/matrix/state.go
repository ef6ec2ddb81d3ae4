package matrix

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"sync"

	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/id"

	"github.com/klaxon-oncall/klaxon/notifiers"
)

// stateBucket is the StateStore bucket holding everything this package keeps.
const stateBucket = StateBucket

// StateBucket is the Matrix channel's state bucket; keys under
// EventKeyPrefix (sent event → incident, for replies) expire with Klaxon's
// retention, the sync position and direct-message rooms do not.
const (
	StateBucket    = "matrix"
	EventKeyPrefix = keyEvent
)

// maxProcessed bounds the remembered ids of handled events. The sync position
// is saved after every batch, so only the events of one batch (plus a backfill)
// can come back after a crash; a few thousand ids is ample.
const maxProcessed = 2000

// Key prefixes in stateBucket.
const (
	keyNextBatch = "sync/next_batch/"
	keyFilter    = "sync/filter.v1/" // bump the version when syncFilter changes
	keyLastTS    = "sync/last_ts/"
	keyEvent     = "event/"
	keyIncident  = "incident/"
	keyDM        = "dm/"
	keyProcessed = "processed"
)

// eventRef is what Klaxon remembers about a message it posted that people may
// answer: the alert message, a later page in its thread, a direct message.
type eventRef struct {
	Room     id.RoomID  `json:"room"`
	Root     id.EventID `json:"root"` // thread root to answer in
	Incident uint64     `json:"incident"`
	PageID   string     `json:"page_id"`
}

// incidentRecord is Klaxon's memory of an incident's alert message in the
// alert room, enough to re-render it when its state changes.
type incidentRecord struct {
	Room   id.RoomID      `json:"room"`
	Root   id.EventID     `json:"root"`
	Page   notifiers.Page `json:"page"`   // the page that created the root message, compacted
	Extra  int            `json:"extra"`  // alerts left out of Page by compactPage
	Status string         `json:"status"` // current status line, "" while firing
	Paged  []string       `json:"paged"`  // display names paged so far, in order
}

// store wraps notifiers.StateStore with typed accessors.
type store struct {
	s notifiers.StateStore

	mu        sync.Mutex
	processed []string // ring of handled event ids, oldest first
	loaded    bool
}

func (st *store) getJSON(ctx context.Context, key string, v any) (bool, error) {
	b, err := st.s.GetState(ctx, stateBucket, key)
	if err != nil {
		return false, fmt.Errorf("matrix state %s: %w", key, err)
	}
	if b == nil {
		return false, nil
	}
	if err := json.Unmarshal(b, v); err != nil {
		return false, fmt.Errorf("matrix state %s: %w", key, err)
	}
	return true, nil
}

func (st *store) putJSON(ctx context.Context, key string, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	if err := st.s.PutState(ctx, stateBucket, key, b); err != nil {
		return fmt.Errorf("matrix state %s: %w", key, err)
	}
	return nil
}

func (st *store) event(ctx context.Context, ev id.EventID) (*eventRef, error) {
	var r eventRef
	ok, err := st.getJSON(ctx, keyEvent+string(ev), &r)
	if !ok || err != nil {
		return nil, err
	}
	return &r, nil
}

func (st *store) putEvent(ctx context.Context, ev id.EventID, r eventRef) error {
	return st.putJSON(ctx, keyEvent+string(ev), r)
}

func (st *store) incident(ctx context.Context, n uint64) (*incidentRecord, error) {
	var r incidentRecord
	ok, err := st.getJSON(ctx, keyIncident+strconv.FormatUint(n, 10), &r)
	if !ok || err != nil {
		return nil, err
	}
	return &r, nil
}

func (st *store) putIncident(ctx context.Context, n uint64, r *incidentRecord) error {
	return st.putJSON(ctx, keyIncident+strconv.FormatUint(n, 10), r)
}

func (st *store) dmRoom(ctx context.Context, user id.UserID) (id.RoomID, error) {
	b, err := st.s.GetState(ctx, stateBucket, keyDM+string(user))
	if err != nil {
		return "", fmt.Errorf("matrix state dm: %w", err)
	}
	return id.RoomID(b), nil
}

func (st *store) putDMRoom(ctx context.Context, user id.UserID, room id.RoomID) error {
	if err := st.s.PutState(ctx, stateBucket, keyDM+string(user), []byte(room)); err != nil {
		return fmt.Errorf("matrix state dm: %w", err)
	}
	return nil
}

func (st *store) loadProcessed(ctx context.Context) error {
	if st.loaded {
		return nil
	}
	var ids []string
	if _, err := st.getJSON(ctx, keyProcessed, &ids); err != nil {
		return err
	}
	st.processed, st.loaded = ids, true
	return nil
}

// wasProcessed reports whether ev was handled before (in this or an earlier run).
func (st *store) wasProcessed(ctx context.Context, ev id.EventID) (bool, error) {
	st.mu.Lock()
	defer st.mu.Unlock()
	if err := st.loadProcessed(ctx); err != nil {
		return false, err
	}
	for _, p := range st.processed {
		if p == string(ev) {
			return true, nil
		}
	}
	return false, nil
}

// markProcessed durably records ev as handled, forgetting the oldest ids
// beyond maxProcessed.
func (st *store) markProcessed(ctx context.Context, ev id.EventID) error {
	st.mu.Lock()
	defer st.mu.Unlock()
	if err := st.loadProcessed(ctx); err != nil {
		return err
	}
	st.processed = append(st.processed, string(ev))
	if over := len(st.processed) - maxProcessed; over > 0 {
		st.processed = append([]string(nil), st.processed[over:]...)
	}
	return st.putJSON(ctx, keyProcessed, st.processed)
}

// syncStore implements mautrix.SyncStore over notifiers.StateStore, so the
// sync position survives restarts.
type syncStore struct{ s notifiers.StateStore }

var _ mautrix.SyncStore = syncStore{}

// SaveFilterID stores the id of the server-side sync filter.
func (s syncStore) SaveFilterID(ctx context.Context, u id.UserID, filterID string) error {
	return s.s.PutState(ctx, stateBucket, keyFilter+string(u), []byte(filterID))
}

// LoadFilterID returns the stored filter id, or "".
func (s syncStore) LoadFilterID(ctx context.Context, u id.UserID) (string, error) {
	b, err := s.s.GetState(ctx, stateBucket, keyFilter+string(u))
	return string(b), err
}

// SaveNextBatch stores the position to resume syncing from.
func (s syncStore) SaveNextBatch(ctx context.Context, u id.UserID, token string) error {
	return s.s.PutState(ctx, stateBucket, keyNextBatch+string(u), []byte(token))
}

// LoadNextBatch returns the stored sync position, or "" on a first start.
func (s syncStore) LoadNextBatch(ctx context.Context, u id.UserID) (string, error) {
	b, err := s.s.GetState(ctx, stateBucket, keyNextBatch+string(u))
	return string(b), err
}
