// Package twilio pages people by phone call and SMS through Twilio
// (github.com/twilio/twilio-go) and takes their answers back: a keypress on
// the call (1 acknowledge, 2 escalate, 9 repeat) or an SMS reply ("1", "2").
//
// Calls are placed with answering-machine detection; the call's TwiML is
// fetched from Klaxon's /webhook/twilio/voice callback only once Twilio knows
// whether a person or a machine answered, so a voicemail is never offered
// the menu and can never acknowledge. Every callback's X-Twilio-Signature is
// checked against PublicURL, and callbacks are idempotent because Twilio
// retries them.
//
// Channels: Voice() is notifiers.Phone and places calls only for KindPage.
// SMS() is notifiers.SMS: KindPage sends the page with reply codes,
// KindAcknowledged and KindResolved send a one-line notice to the person
// paged, other kinds are ignored.
package twilio

import (
	"context"
	"encoding/json"
	"fmt"
	"net/url"
	"sync"
	"time"

	"github.com/klaxon-oncall/klaxon/notifiers"
)

// Twilio is the Twilio account as Klaxon uses it: the phone and SMS
// channels, their self-test, and the callback handler.
type Twilio struct {
	cfg    Config
	apiURL *url.URL
	state  notifiers.StateStore

	// mu serialises read-modify-write of per-call state between
	// concurrent callbacks for the same call.
	mu sync.Mutex
	// keys serialises concurrent deliveries of the same callback (Twilio
	// retrying while the first attempt is still being handled).
	keys keyedMutex
	// routes holds the reply routing of texts not yet saved.
	routes smsRoutes
	// canaries are the SMS canaries waiting for their text to come back.
	canaries canaryWaits
}

// keyedMutex is a set of mutexes by key, each dropped once unused.
type keyedMutex struct {
	mu    sync.Mutex
	locks map[string]*keyLock
}

type keyLock struct {
	sync.Mutex
	users int
}

// lock locks key and returns its unlock function.
func (k *keyedMutex) lock(key string) func() {
	k.mu.Lock()
	if k.locks == nil {
		k.locks = map[string]*keyLock{}
	}
	l, ok := k.locks[key]
	if !ok {
		l = &keyLock{}
		k.locks[key] = l
	}
	l.users++
	k.mu.Unlock()
	l.Lock()
	return func() {
		l.Unlock()
		k.mu.Lock()
		l.users--
		if l.users == 0 {
			delete(k.locks, key)
		}
		k.mu.Unlock()
	}
}

// New validates cfg and returns the Twilio channels. It does not contact
// Twilio; SelfTest does.
func New(cfg Config) (*Twilio, error) {
	c, err := cfg.resolve()
	if err != nil {
		return nil, err
	}
	u, err := url.Parse(c.APIURL)
	if err != nil {
		return nil, fmt.Errorf("twilio config: API URL: %w", err)
	}
	t := &Twilio{cfg: c, apiURL: u, state: c.State}
	if t.state == nil {
		c.Logger.Warn("twilio: no durable state store configured; SMS reply routing and callback deduplication are lost on restart")
		t.state = newMemState()
	}
	return t, nil
}

// State buckets.
const (
	bucketPage     = "twilio.page"      // page id → pageRecord
	bucketSMSRoute = "twilio.sms-route" // phone number → smsRoute
	bucketSeen     = "twilio.seen"      // callback key → stored answer
	bucketCall     = "twilio.call"      // call SID → callState
)

// ExpiringBuckets are the state buckets that grow with every page, call and
// callback; Klaxon's retention prunes their old keys. (The SMS reply route
// per phone number is bounded and kept.)
var ExpiringBuckets = []string{bucketPage, bucketSeen, bucketCall}

// pageRecord is what a call's callbacks need to know about the page.
type pageRecord struct {
	PageID   string `json:"page_id"`
	Incident uint64 `json:"incident"`
	To       string `json:"to"`
	Script   string `json:"script"`
}

// smsRoute sends SMS replies from a number to the latest page texted to it.
type smsRoute struct {
	PageID   string `json:"page_id"`
	Incident uint64 `json:"incident"`
	// Seq orders routes to one number (when its text was begun, Unix ns), so
	// an older text whose API call finished last does not take over the route.
	Seq int64 `json:"seq,omitempty"`
}

// smsRoutes holds, per number, the route of the latest text begun in this
// process: a reply that arrives before its text's route is on disk (Twilio
// delivered faster than its API answered) still finds it. One entry per
// number paged, so it stays as small as the rota.
type smsRoutes struct {
	mu   sync.Mutex
	last int64
	m    map[string]smsRoute
}

// begin records the route of a text about to be sent to phone.
func (r *smsRoutes) begin(phone, pageID string, incident uint64, now time.Time) smsRoute {
	r.mu.Lock()
	defer r.mu.Unlock()
	seq := max(now.UnixNano(), r.last+1)
	r.last = seq
	rt := smsRoute{PageID: pageID, Incident: incident, Seq: seq}
	if r.m == nil {
		r.m = map[string]smsRoute{}
	}
	r.m[phone] = rt
	return rt
}

func (r *smsRoutes) get(phone string) (smsRoute, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	rt, ok := r.m[phone]
	return rt, ok
}

// routeWrite is the state write that makes rt phone's durable route unless
// a later text's route is already saved (the engine commits it with the
// page's result; see notifiers.Receipt.State).
func (t *Twilio) routeWrite(phone string, rt smsRoute) notifiers.StateWrite {
	data, _ := json.Marshal(rt) // strings and integers: it cannot fail
	return notifiers.StateWrite{Bucket: bucketSMSRoute, Key: phone, Value: data, Replaces: func(old []byte) bool {
		var cur smsRoute
		if old == nil || json.Unmarshal(old, &cur) != nil {
			return true // none, or unreadable: this one is better
		}
		return cur.Seq < rt.Seq
	}}
}

// route finds where a reply from phone goes: the latest text begun in this
// process, or the one saved before a restart, whichever is later.
func (t *Twilio) route(ctx context.Context, phone string) (smsRoute, bool, error) {
	var saved smsRoute
	ok, err := t.getJSON(ctx, bucketSMSRoute, phone, &saved)
	if err != nil {
		return smsRoute{}, false, err
	}
	if mem, found := t.routes.get(phone); found && (!ok || mem.Seq > saved.Seq) {
		return mem, true, nil
	}
	return saved, ok, nil
}

// callState is what happened on one call so far.
type callState struct {
	Acted   bool `json:"acted,omitempty"`   // a keypress was taken
	Machine bool `json:"machine,omitempty"` // AMD said a machine answered
	Final   bool `json:"final,omitempty"`   // a final NoAnswer/Failed report was made
}

func (t *Twilio) getJSON(ctx context.Context, bucket, key string, v any) (bool, error) {
	b, err := t.state.GetState(ctx, bucket, key)
	if err != nil {
		return false, fmt.Errorf("state %s/%s: %w", bucket, key, err)
	}
	if b == nil {
		return false, nil
	}
	if err := json.Unmarshal(b, v); err != nil {
		return false, fmt.Errorf("state %s/%s: %w", bucket, key, err)
	}
	return true, nil
}

func (t *Twilio) putJSON(ctx context.Context, bucket, key string, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	if err := t.state.PutState(ctx, bucket, key, b); err != nil {
		return fmt.Errorf("state %s/%s: %w", bucket, key, err)
	}
	return nil
}

// updateCall applies f to the stored state of call sid.
func (t *Twilio) updateCall(ctx context.Context, sid string, f func(*callState)) (callState, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	var cs callState
	if _, err := t.getJSON(ctx, bucketCall, sid, &cs); err != nil {
		return cs, err
	}
	f(&cs)
	return cs, t.putJSON(ctx, bucketCall, sid, cs)
}

// memState is the in-memory StateStore used when Config.State is nil.
type memState struct {
	mu sync.Mutex
	m  map[string][]byte
}

func newMemState() *memState { return &memState{m: map[string][]byte{}} }

func (s *memState) GetState(_ context.Context, bucket, key string) ([]byte, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	v, ok := s.m[bucket+"\x00"+key]
	if !ok {
		return nil, nil
	}
	return append([]byte(nil), v...), nil
}

func (s *memState) PutState(_ context.Context, bucket, key string, value []byte) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.m[bucket+"\x00"+key] = append([]byte(nil), value...)
	return nil
}
