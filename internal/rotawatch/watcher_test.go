package rotawatch

import (
	"bytes"
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/klaxon-oncall/klaxon/escalation/rota"
)

// base is a small valid rota the tests edit.
const base = `timezone: Europe/London
people:
  alice: {name: Alice, phone: "+15555550101", matrix: "@alice:example.org", pagerduty: PALICE1}
  bob: {name: Bob, phone: "+15555550102", matrix: "@bob:example.org", pagerduty: bob@example.org}
  carol: {name: Carol, phone: "+15555550103", matrix: "@carol:example.org", pagerduty: PCAROL3}
rotations:
  primary:
    members: [alice, bob, carol]
    shift: 7d
    handoff: monday 09:00
    start: 2026-01-05
policies:
  default:
    steps:
      - notify: primary
        via: [matrix, phone]
        wait: 5m
routes:
  - policy: default
`

func utc(s string) time.Time {
	t, err := time.Parse("2006-01-02 15:04", s)
	if err != nil {
		panic(err)
	}
	return t
}

// syncBuffer is a log sink safe for concurrent writes.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t *testing.T, within time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(within)
	tick := time.NewTicker(2 * time.Millisecond)
	defer tick.Stop()
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", within, what)
		}
		<-tick.C
	}
}

func writeFile(t *testing.T, path, data string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(data), 0o644); err != nil {
		t.Fatal(err)
	}
}

// replaceFile writes data to a temporary file and renames it over path, as
// editors and deploy tools do.
func replaceFile(t *testing.T, path, data string) {
	t.Helper()
	tmp := filepath.Join(filepath.Dir(path), ".rota.yaml.tmp")
	writeFile(t, tmp, data)
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

type watchRig struct {
	w       *Watcher
	path    string
	logs    *syncBuffer
	changes chan *rota.Rota
	clock   time.Time
}

func startWatcher(t *testing.T) *watchRig {
	t.Helper()
	dir := t.TempDir()
	rig := &watchRig{path: filepath.Join(dir, "rota.yaml"), logs: &syncBuffer{}, changes: make(chan *rota.Rota, 16)}
	writeFile(t, rig.path, base)
	logger := slog.New(slog.NewTextHandler(rig.logs, nil))
	now := utc("2026-02-01 12:00")
	w, err := NewWatcher(rig.path, logger, WithDebounce(10*time.Millisecond), WithClock(func() time.Time { return now }))
	if err != nil {
		t.Fatal(err)
	}
	rig.w = w
	w.OnChange(func(_, r *rota.Rota) { rig.changes <- r })
	watching := make(chan struct{})
	w.watching = func() { close(watching) }
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- w.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	})
	select {
	case <-watching:
	case err := <-done:
		t.Fatalf("Run ended early: %v", err)
	case <-time.After(5 * time.Second):
		t.Fatal("Run did not start watching")
	}
	return rig
}

func (rig *watchRig) waitChange(t *testing.T, within time.Duration) *rota.Rota {
	t.Helper()
	select {
	case r := <-rig.changes:
		return r
	case <-time.After(within):
		t.Fatalf("no reload within %s", within)
		return nil
	}
}

func gauge(t *testing.T, c prometheus.Collector, name string) float64 {
	t.Helper()
	reg := prometheus.NewPedanticRegistry()
	if err := reg.Register(c); err != nil {
		t.Fatal(err)
	}
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == name {
			return mf.GetMetric()[0].GetGauge().GetValue()
		}
	}
	t.Fatalf("no metric %s", name)
	return 0
}

func TestWatcherValidEditTakesEffectWithinASecond(t *testing.T) {
	rig := startWatcher(t)
	if got := rig.w.Current().People["alice"].Name; got != "Alice" {
		t.Fatalf("initial name %q", got)
	}
	writeFile(t, rig.path, strings.Replace(base, "name: Alice", "name: Alice Archer", 1))
	r := rig.waitChange(t, time.Second)
	if got := r.People["alice"].Name; got != "Alice Archer" {
		t.Errorf("reloaded name %q", got)
	}
	if rig.w.Current() != r || !rig.w.Valid() || rig.w.Errors() != nil {
		t.Error("watcher does not serve the new rota as valid")
	}
	if gauge(t, rig.w, "klaxon_rota_valid") != 1 {
		t.Error("klaxon_rota_valid is not 1")
	}
}

func TestWatcherBrokenEditKeepsOldRota(t *testing.T) {
	rig := startWatcher(t)
	old := rig.w.Current()
	broken := strings.Replace(base, "notify: primary", "notify: primry", 1)
	broken = strings.Replace(broken, `"+15555550102"`, `"555-0102"`, 1)
	writeFile(t, rig.path, broken)
	// A reload may catch the file half-written (empty); wait for the final state.
	waitFor(t, 5*time.Second, "the broken edit to be noticed", func() bool { return len(rig.w.Errors()) == 2 })
	if rig.w.Current() != old {
		t.Error("a broken edit replaced the rota")
	}
	errs := rig.w.Errors()
	want := []string{
		`rota.yaml:4:27: people.bob.phone: phone "555-0102" is not E.164`,
		`rota.yaml:15:17: policies.default.steps[0].notify: unknown rotation "primry"`,
	}
	if len(errs) != len(want) {
		t.Fatalf("errors %q, want %d", errs, len(want))
	}
	for i, w := range want {
		if !strings.Contains(errs[i], w) {
			t.Errorf("error %d = %q, want %q", i, errs[i], w)
		}
		if pos, _, _ := strings.Cut(w, ": "); !strings.Contains(rig.logs.String(), pos) {
			t.Errorf("error %q not logged", w)
		}
	}
	if gauge(t, rig.w, "klaxon_rota_valid") != 0 {
		t.Error("klaxon_rota_valid is not 0")
	}
	if len(rig.changes) != 0 {
		t.Error("OnChange called for a broken edit")
	}
	// Fixing the file restores validity and takes effect.
	writeFile(t, rig.path, strings.Replace(base, "wait: 5m", "wait: 7m", 1))
	r := rig.waitChange(t, 5*time.Second)
	if r.Policies["default"].Steps[0].Wait != 7*time.Minute || !rig.w.Valid() || rig.w.Errors() != nil {
		t.Error("the fixed file did not take effect")
	}
}

func TestWatcherRenameReplace(t *testing.T) {
	rig := startWatcher(t)
	for i, name := range []string{"Alice A", "Alice B"} {
		replaceFile(t, rig.path, strings.Replace(base, "name: Alice", "name: "+name, 1))
		r := rig.waitChange(t, 5*time.Second)
		if got := r.People["alice"].Name; got != name {
			t.Errorf("replace %d: name %q, want %q", i, got, name)
		}
	}
}

func TestWatcherRemovedFileKeepsOldRota(t *testing.T) {
	rig := startWatcher(t)
	old := rig.w.Current()
	if err := os.Remove(rig.path); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 5*time.Second, "the removal to be noticed", func() bool { return !rig.w.Valid() })
	if rig.w.Current() != old || len(rig.w.Errors()) != 1 {
		t.Errorf("after removal: errors %q", rig.w.Errors())
	}
}

func TestWatcherReloadOnDemand(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "rota.yaml")
	writeFile(t, path, base)
	now := utc("2026-02-01 12:00")
	w, err := NewWatcher(path, nil, WithClock(func() time.Time { return now }))
	if err != nil {
		t.Fatal(err)
	}
	first := w.Current()
	var got, olds []*rota.Rota
	w.OnChange(func(old, r *rota.Rota) { olds, got = append(olds, old), append(got, r) })
	if err := w.Reload(); err != nil || len(got) != 0 {
		t.Fatalf("reload of an unchanged file: %v, %d changes", err, len(got))
	}
	now = now.Add(time.Minute)
	writeFile(t, path, strings.Replace(base, "wait: 5m", "wait: 6m", 1))
	if err := w.Reload(); err != nil || len(got) != 1 || w.Current() != got[0] {
		t.Fatalf("reload: %v, %d changes", err, len(got))
	}
	if olds[0] != first {
		t.Error("OnChange was not given the rota the reload replaced")
	}
	if !w.LoadedAt().Equal(now) || !w.AttemptedAt().Equal(now) {
		t.Errorf("LoadedAt %s AttemptedAt %s, want %s", w.LoadedAt(), w.AttemptedAt(), now)
	}
	loaded := now
	now = now.Add(time.Minute)
	writeFile(t, path, "timezone: Nowhere/Special\n")
	if err := w.Reload(); err == nil {
		t.Fatal("broken reload succeeded")
	}
	if !w.LoadedAt().Equal(loaded) || !w.AttemptedAt().Equal(now) {
		t.Errorf("after a failed reload LoadedAt %s AttemptedAt %s", w.LoadedAt(), w.AttemptedAt())
	}
	if v := gauge(t, w, "klaxon_rota_last_load_timestamp_seconds"); v != float64(loaded.Unix()) {
		t.Errorf("last load metric %v", v)
	}
}

func TestNewWatcherRejectsInvalidFirstLoad(t *testing.T) {
	dir := t.TempDir()
	tests := []struct {
		name, data string
		want       []string
	}{
		{"invalid", strings.Replace(strings.Replace(base, "wait: 5m", "wait: -1m", 1), "Europe/London", "Europe/Lundon", 1),
			[]string{"rota.yaml:1:11: timezone: unknown time zone", "rota.yaml:17:15: policies.default.steps[0].wait"}},
		{"missing", "", []string{"no such file"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(dir, tt.name, "rota.yaml")
			if tt.data != "" {
				os.MkdirAll(filepath.Dir(path), 0o755)
				writeFile(t, path, tt.data)
			}
			w, err := NewWatcher(path, nil)
			if err == nil || w != nil {
				t.Fatal("NewWatcher accepted it")
			}
			for _, s := range tt.want {
				if !strings.Contains(err.Error(), s) {
					t.Errorf("error %q lacks %q", err, s)
				}
			}
		})
	}
}
