package selftest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/klaxon-oncall/klaxon/escalation"
	"github.com/klaxon-oncall/klaxon/notifiers"
)

// t0 is the fake clock's start: 03:10 UTC.
var t0 = time.Date(2026, 3, 2, 3, 10, 0, 0, time.UTC)

// fakeTester returns a settable verdict and counts calls. If block is set,
// SelfTest waits on it (ignoring its context) to model a hung provider.
type fakeTester struct {
	mu    sync.Mutex
	h     notifiers.Health
	calls int
	block chan struct{}
	panic bool
}

func tester(s notifiers.Status, reason string) *fakeTester {
	return &fakeTester{h: notifiers.Health{Status: s, Reason: reason}}
}

func (f *fakeTester) set(s notifiers.Status, reason string, willFail bool) {
	f.mu.Lock()
	f.h = notifiers.Health{Status: s, Reason: reason, WillFail: willFail}
	f.mu.Unlock()
}

func (f *fakeTester) SelfTest(ctx context.Context) notifiers.Health {
	f.mu.Lock()
	f.calls++
	h, block, p := f.h, f.block, f.panic
	f.mu.Unlock()
	if p {
		panic("boom")
	}
	if block != nil {
		<-block
	}
	return h
}

func (f *fakeTester) Calls() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.calls
}

// alarmCall is one Raise or Clear.
type alarmCall struct {
	Op, Key, Title, Policy string
	Labels                 map[string]string
}

// fakeAlarmer records Raise and Clear; fail makes them fail.
type fakeAlarmer struct {
	mu    sync.Mutex
	calls []alarmCall
	fail  bool
}

func (a *fakeAlarmer) Raise(ctx context.Context, key, title, policy string, labels map[string]string) (escalation.IngestResult, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.fail {
		return escalation.IngestResult{}, errors.New("store unavailable")
	}
	a.calls = append(a.calls, alarmCall{Op: "raise", Key: key, Title: title, Policy: policy, Labels: labels})
	return escalation.IngestResult{Changed: true, Opened: true}, nil
}

func (a *fakeAlarmer) Clear(ctx context.Context, key, text string) (escalation.IngestResult, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.fail {
		return escalation.IngestResult{}, errors.New("store unavailable")
	}
	a.calls = append(a.calls, alarmCall{Op: "clear", Key: key, Title: text})
	return escalation.IngestResult{Changed: true}, nil
}

func (a *fakeAlarmer) setFail(v bool) { a.mu.Lock(); a.fail = v; a.mu.Unlock() }

// Calls returns the calls made so far.
func (a *fakeAlarmer) Calls() []alarmCall {
	a.mu.Lock()
	defer a.mu.Unlock()
	return append([]alarmCall(nil), a.calls...)
}

// ops summarises calls as "raise channel:pagerduty", "clear watchdog", ...
func (a *fakeAlarmer) ops() []string {
	var out []string
	for _, c := range a.Calls() {
		out = append(out, c.Op+" "+c.Key)
	}
	return out
}

// mapStore is an in-memory notifiers.StateStore; failPut makes writes fail.
type mapStore struct {
	mu      sync.Mutex
	m       map[string][]byte
	failPut bool
	failGet bool
	puts    map[string]int // writes by key
}

func newMapStore() *mapStore { return &mapStore{m: map[string][]byte{}} }

func (s *mapStore) GetState(ctx context.Context, bucket, key string) ([]byte, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.failGet {
		return nil, errors.New("disk on fire")
	}
	v, ok := s.m[bucket+"/"+key]
	if !ok {
		return nil, nil
	}
	return append([]byte(nil), v...), nil
}

func (s *mapStore) PutState(ctx context.Context, bucket, key string, value []byte) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.failPut {
		return errors.New("disk full")
	}
	s.m[bucket+"/"+key] = append([]byte(nil), value...)
	if s.puts == nil {
		s.puts = map[string]int{}
	}
	s.puts[key]++
	return nil
}

// putCount is how many times key was written.
func (s *mapStore) putCount(key string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.puts[key]
}

func (s *mapStore) get(key string) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return string(s.m[stateBucket+"/"+key])
}

func (s *mapStore) setFailPut(v bool) { s.mu.Lock(); s.failPut = v; s.mu.Unlock() }

// logBuf is a goroutine-safe log sink.
type logBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *logBuf) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *logBuf) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

func (l *logBuf) count(s string) int { return strings.Count(l.String(), s) }

// rig is a Monitor with fakes around it.
type rig struct {
	m      *Monitor
	clock  *escalation.FakeClock
	alarms *fakeAlarmer
	store  *mapStore
	logs   *logBuf
}

// newRig builds a Monitor over fakes; adjust edits the Config first.
func newRig(t *testing.T, testers map[notifiers.Channel]notifiers.SelfTester, adjust func(*Config)) *rig {
	t.Helper()
	r := &rig{clock: escalation.NewFakeClock(t0), alarms: &fakeAlarmer{}, store: newMapStore(), logs: &logBuf{}}
	cfg := Config{
		Testers: testers, State: r.store, Alarms: r.alarms, Clock: r.clock, Location: time.UTC,
		Rand:   rand.New(rand.NewPCG(1, 2)),
		Logger: slog.New(slog.NewTextHandler(r.logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
	}
	if adjust != nil {
		adjust(&cfg)
	}
	m, err := New(cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	r.m = m
	return r
}

// status returns a channel's status.
func (r *rig) status(t *testing.T, ch notifiers.Channel) ChannelStatus {
	t.Helper()
	for _, s := range r.m.Channels() {
		if s.Channel == ch {
			return s
		}
	}
	t.Fatalf("channel %s not listed", ch)
	return ChannelStatus{}
}

func testers(kv ...any) map[notifiers.Channel]notifiers.SelfTester {
	out := map[notifiers.Channel]notifiers.SelfTester{}
	for i := 0; i < len(kv); i += 2 {
		out[kv[i].(notifiers.Channel)] = kv[i+1].(notifiers.SelfTester)
	}
	return out
}

func mustContain(t *testing.T, what, s string, subs ...string) {
	t.Helper()
	for _, sub := range subs {
		if !strings.Contains(s, sub) {
			t.Errorf("%s %q does not contain %q", what, s, sub)
		}
	}
}

func eqOps(t *testing.T, a *fakeAlarmer, want ...string) {
	t.Helper()
	got := a.ops()
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("alarm calls = %q, want %q", got, want)
	}
}

func newTextLogger(w *logBuf) *slog.Logger {
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

// start runs m until the returned stop is called (or the test ends) and
// waits for Run to return.
func start(t *testing.T, m *Monitor) (stop func()) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { _ = m.Run(ctx); close(done) }()
	var once sync.Once
	stop = func() { once.Do(func() { cancel(); <-done }) }
	t.Cleanup(stop)
	return stop
}
