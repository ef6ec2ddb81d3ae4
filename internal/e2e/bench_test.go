package e2e

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/klaxon-oncall/klaxon/internal/e2e/harness"
	faketwilio "github.com/klaxon-oncall/klaxon/internal/fakes/twilio"
	"github.com/klaxon-oncall/klaxon/internal/loadgen"
)

// The end-to-end benchmarks run `klaxon serve` as a subprocess (fsync on,
// info logging, as a user runs it) paging one person by SMS through the fake
// Twilio on 127.0.0.1, and time each webhook from the moment it is sent to
// the moment the text's API request reaches the fake:
//
//	go test -run '^$' -bench 'E2E' -benchtime 200x -count 6 ./internal/e2e/
//	go test -run '^$' -bench 'E2EStorm' -benchtime 1x ./internal/e2e/
//
// They only run with -bench (and not with -short).

const benchPhone = "+15555550101"

// benchRota is a rota whose only step texts alice; limited adds the example
// rota's SMS rate limit (3 per 15 minutes).
func benchRota(b *testing.B, limited bool) string {
	b.Helper()
	y := `timezone: UTC
people:
  alice: {name: Alice Archer, phone: "` + benchPhone + `"}
rotations:
  primary: {members: [alice], shift: 7d, handoff: "monday 09:00", start: 2026-01-05}
policies:
  default:
    steps:
      - {notify: primary, via: sms, wait: 1h}
  selftest:
    steps:
      - {notify: primary, via: sms, wait: 1h}
routes:
  - policy: default
owners: [alice]
`
	if limited {
		y += "limits:\n  sms: {count: 3, per: 15m}\n"
	}
	path := filepath.Join(b.TempDir(), "rota.yaml")
	if err := os.WriteFile(path, []byte(y), 0o600); err != nil {
		b.Fatal(err)
	}
	return path
}

// arrivals records when the fake Twilio received each incident's first text.
type arrivals struct {
	mu      sync.Mutex
	at      map[uint64]time.Time
	changed chan struct{}
}

func newArrivals(tw *faketwilio.Server) *arrivals {
	a := &arrivals{at: map[uint64]time.Time{}, changed: make(chan struct{})}
	tw.OnMessage(func(m *faketwilio.SMS) {
		// "Klaxon #42 ...": the incident number.
		rest, ok := strings.CutPrefix(m.Body, "Klaxon #")
		if !ok {
			return
		}
		end := strings.IndexFunc(rest, func(r rune) bool { return r < '0' || r > '9' })
		id, err := strconv.ParseUint(rest[:max(end, 0)], 10, 64)
		if err != nil {
			return
		}
		a.mu.Lock()
		if _, seen := a.at[id]; !seen {
			a.at[id] = m.Received
		}
		close(a.changed)
		a.changed = make(chan struct{})
		a.mu.Unlock()
	})
	return a
}

// wait returns when incident id's text arrived, waiting up to 30s for it.
func (a *arrivals) wait(id uint64) (time.Time, bool) {
	deadline := time.NewTimer(30 * time.Second)
	defer deadline.Stop()
	for {
		a.mu.Lock()
		t, ok := a.at[id]
		changed := a.changed
		a.mu.Unlock()
		if ok {
			return t, true
		}
		select {
		case <-changed:
		case <-deadline.C:
			return time.Time{}, false
		}
	}
}

func (a *arrivals) count() int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return len(a.at)
}

// benchWorld starts the fake Twilio and klaxon serve texting through it:
// the klaxon built from this tree, or the binary KLAXON_BENCH_BIN names (to
// compare two builds side by side on the same machine).
func benchWorld(b *testing.B, limited bool) (*faketwilio.Server, *arrivals, *harness.Klaxon) {
	b.Helper()
	if testing.Short() {
		b.Skip("runs klaxon serve as a subprocess")
	}
	tw := faketwilio.New(b, twilioToken)
	arr := newArrivals(tw)
	addr := harness.FreeAddr(b)
	k := harness.StartKlaxon(b, harness.KlaxonConfig{
		Listen:  addr,
		DataDir: os.Getenv("KLAXON_BENCH_DATA"), // kept for inspection when set (must be empty)
		Rota:    benchRota(b, limited),
		Args:    []string{"--log-level", "info"},
		Binary:  os.Getenv("KLAXON_BENCH_BIN"),
		Env: []string{
			"KLAXON_TWILIO_ACCOUNT_SID=" + tw.AccountSID(),
			"KLAXON_TWILIO_AUTH_TOKEN=" + twilioToken,
			"KLAXON_TWILIO_FROM=" + faketwilio.DefaultFrom,
			"KLAXON_TWILIO_API_URL=" + tw.URL(),
			"KLAXON_PUBLIC_URL=http://" + addr,
		},
	})
	return tw, arr, k
}

// sender posts webhooks over keep-alive connections, one per concurrent
// sender (loadgen: a sender's cost stays off Klaxon's two cores).
type sender struct {
	addr  string
	token string
	conns chan *loadgen.Conn
	next  atomic.Int64
}

func newSender(b *testing.B, k *harness.Klaxon, conns int) *sender {
	s := &sender{addr: strings.TrimPrefix(k.URL(), "http://"), token: k.WebhookToken(), conns: make(chan *loadgen.Conn, conns)}
	for range conns {
		c, err := loadgen.Dial(s.addr)
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { c.Close() })
		s.conns <- c
	}
	return s
}

// fire posts one webhook opening a new incident and returns when it was
// sent, how long its 200 took and the incident's number.
func (s *sender) fire() (time.Time, time.Duration, uint64, error) {
	group := fmt.Sprintf("bench-%d", s.next.Add(1))
	body := fmt.Appendf(nil, `{"version":"4","groupKey":%q,"status":"firing","receiver":"klaxon","groupLabels":{"g":%q},
"commonLabels":{"alertname":"Storm","severity":"critical","g":%q},"commonAnnotations":{"summary":"Disk full on db-1"},
"alerts":[{"status":"firing","labels":{"alertname":"Storm","severity":"critical","g":%q},"annotations":{"summary":"Disk full on db-1"},
"startsAt":"2026-11-26T23:33:00Z","fingerprint":%q}]}`, group, group, group, group, "fp-"+group)
	c := <-s.conns
	defer func() { s.conns <- c }()
	t0 := time.Now()
	code, raw, err := c.Post("/webhook/alertmanager", s.token, body)
	took := time.Since(t0)
	if err != nil {
		return t0, took, 0, err
	}
	if code != 200 {
		return t0, took, 0, fmt.Errorf("webhook: %d %s", code, raw)
	}
	var out struct{ Incident uint64 }
	if err := json.Unmarshal(raw, &out); err != nil || out.Incident == 0 {
		return t0, took, 0, fmt.Errorf("webhook answer %s: %v", raw, err)
	}
	return t0, took, out.Incident, nil
}

// metricMean reads a histogram's mean from klaxon serve's /metrics, in ms.
func metricMean(b *testing.B, k *harness.Klaxon, name, labels string) float64 {
	resp, err := http.Get(k.URL() + "/metrics")
	if err != nil {
		b.Fatal(err)
	}
	defer resp.Body.Close()
	var sum, count float64
	found := false
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		key, val, _ := strings.Cut(sc.Text(), " ")
		v, _ := strconv.ParseFloat(val, 64)
		switch key {
		case name + "_sum" + labels:
			sum = v
		case name + "_count" + labels:
			count, found = v, true
		}
	}
	if !found {
		b.Fatalf("%s%s is not in /metrics: the benchmark's breakdown would read 0", name, labels)
	}
	if count == 0 {
		return 0
	}
	return sum / count * 1000
}

// percentile of sorted durations, in milliseconds.
func pct(sorted []time.Duration, p float64) float64 {
	if len(sorted) == 0 {
		return 0
	}
	i := min(len(sorted)-1, int(float64(len(sorted))*p))
	return float64(sorted[i].Microseconds()) / 1000
}

// firstText fires n webhooks at once and returns, for each, the time from
// sending it to its text reaching Twilio.
func firstText(b *testing.B, s *sender, arr *arrivals, n int) []time.Duration {
	out := make([]time.Duration, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			t0, _, id, err := s.fire()
			if err != nil {
				b.Error(err)
				return
			}
			at, ok := arr.wait(id)
			if !ok {
				b.Errorf("incident %d: no text within 30s", id)
				return
			}
			out[i] = at.Sub(t0)
		})
	}
	wg.Wait()
	return out
}

// BenchmarkE2EFirstText: webhook sent → the SMS request reaches Twilio, one
// alert at a time and in bursts of 20 and 200 new incidents at once (an
// iteration is one burst). Reports p50/p95/p99 in ms.
func BenchmarkE2EFirstText(b *testing.B) {
	for _, burst := range []int{1, 20, 200} {
		name := "one-at-a-time"
		if burst > 1 {
			name = fmt.Sprintf("burst-%d", burst)
		}
		b.Run(name, func(b *testing.B) {
			_, arr, k := benchWorld(b, false)
			s := newSender(b, k, burst)
			firstText(b, s, arr, 1) // warm up: connections, the first commit
			var lat []time.Duration
			b.ResetTimer()
			for range b.N {
				lat = append(lat, firstText(b, s, arr, burst)...)
			}
			b.StopTimer()
			// Where the time goes, by klaxon serve's own metrics: the mean
			// store commit (fsync included) and the mean Twilio API call.
			b.ReportMetric(metricMean(b, k, "klaxon_store_commit_seconds", `{backend="bolt"}`), "commit-ms")
			b.ReportMetric(metricMean(b, k, "klaxon_page_seconds", `{channel="sms"}`), "twilio-call-ms")
			slices.Sort(lat)
			b.ReportMetric(pct(lat, 0.50), "p50-ms")
			b.ReportMetric(pct(lat, 0.95), "p95-ms")
			b.ReportMetric(pct(lat, 0.99), "p99-ms")
		})
	}
}

// BenchmarkE2ESustained: 64 senders post webhooks as fast as Klaxon answers,
// each opening an incident that texts the one person on call (no rate
// limit). Reports webhooks/s, the p50/p99 to the 200 and to the text.
func BenchmarkE2ESustained(b *testing.B) {
	const senders = 64
	_, arr, k := benchWorld(b, false)
	s := newSender(b, k, senders)
	firstText(b, s, arr, 1)
	acks := make([][]time.Duration, senders)
	texts := make([][]time.Duration, senders)
	var left atomic.Int64
	left.Store(int64(b.N))
	var wg sync.WaitGroup
	cpu0, err := procCPU(k.PID())
	if err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	start := time.Now()
	sentAt := make([]map[uint64]time.Time, senders)
	for w := range senders {
		sentAt[w] = map[uint64]time.Time{}
		wg.Go(func() {
			for left.Add(-1) >= 0 {
				t0, took, id, err := s.fire()
				if err != nil {
					b.Error(err)
					return
				}
				acks[w] = append(acks[w], took)
				sentAt[w][id] = t0
			}
		})
	}
	wg.Wait()
	elapsed := time.Since(start)
	for w := range senders {
		for id, t0 := range sentAt[w] {
			at, ok := arr.wait(id)
			if !ok {
				b.Fatalf("incident %d: no text within 30s", id)
			}
			texts[w] = append(texts[w], at.Sub(t0))
		}
	}
	b.StopTimer()
	cpu1, err := procCPU(k.PID())
	if err != nil {
		b.Fatal(err)
	}
	// klaxon serve's own CPU (user and system) for each webhook and its
	// text: the load generator and the fake Twilio run in this process.
	b.ReportMetric(float64((cpu1-cpu0).Microseconds())/float64(b.N), "klaxon-cpu-us/webhook")
	all, txt := slices.Concat(acks...), slices.Concat(texts...)
	slices.Sort(all)
	slices.Sort(txt)
	b.ReportMetric(float64(len(all))/elapsed.Seconds(), "webhooks/s")
	b.ReportMetric(pct(all, 0.50), "p50-200-ms")
	b.ReportMetric(pct(all, 0.99), "p99-200-ms")
	b.ReportMetric(pct(txt, 0.50), "p50-text-ms")
	b.ReportMetric(pct(txt, 0.99), "p99-text-ms")
}

// procCPU reads the CPU time (user and system) a process has used, from
// /proc/PID/stat in clock ticks of 1/100 s (USER_HZ on Linux).
func procCPU(pid int) (time.Duration, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	// The command name (field 2) may hold spaces: count fields after its ')'.
	_, rest, ok := strings.Cut(string(b), ") ")
	f := strings.Fields(rest)
	if !ok || len(f) < 13 {
		return 0, fmt.Errorf("/proc/%d/stat: %q", pid, b)
	}
	var ticks int64
	for _, v := range f[11:13] { // utime, stime: fields 14 and 15
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil {
			return 0, fmt.Errorf("/proc/%d/stat: %w", pid, err)
		}
		ticks += n
	}
	return time.Duration(ticks) * (time.Second / 100), nil
}

// procMemory reads a process's resident memory and its anonymous part (the
// heap and stacks, as opposed to mapped pages of klaxon.db), in MiB.
func procMemory(pid int) (rss, anon float64, err error) {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, 0, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		name, val, ok := strings.Cut(sc.Text(), ":")
		if !ok {
			continue
		}
		kb, _ := strconv.ParseFloat(strings.TrimSuffix(strings.TrimSpace(val), " kB"), 64)
		switch name {
		case "VmRSS":
			rss = kb / 1024
		case "RssAnon":
			anon = kb / 1024
		}
	}
	return rss, anon, sc.Err()
}

// mappedRSS is the resident size, in MiB, of the process's mappings of files
// whose path ends in name (bbolt's memory map of klaxon.db).
func mappedRSS(pid int, name string) (float64, error) {
	f, err := os.Open(fmt.Sprintf("/proc/%d/smaps", pid))
	if err != nil {
		return 0, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	in, total := false, 0.0
	for sc.Scan() {
		line := sc.Text()
		if fields := strings.Fields(line); len(fields) > 0 && strings.Contains(fields[0], "-") && !strings.HasSuffix(fields[0], ":") {
			in = strings.HasSuffix(line, "/"+name)
			continue
		}
		if v, ok := strings.CutPrefix(line, "Rss:"); ok && in {
			kb, _ := strconv.ParseFloat(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 64)
			total += kb / 1024
		}
	}
	return total, sc.Err()
}

// BenchmarkE2EStorm: 100,000 new incidents (KLAXON_BENCH_STORM to change)
// all routed to the one person on call, whose texts are rate limited (3 per
// 15 minutes), from 64 senders. It logs klaxon serve's RSS and anonymous
// memory every 10% of the storm and reports the peaks, the figures once the
// storm is over, and the webhooks/s. One run is one storm, whatever
// -benchtime says (use 1x).
func BenchmarkE2EStorm(b *testing.B) {
	n := 100_000
	if v, err := strconv.Atoi(os.Getenv("KLAXON_BENCH_STORM")); err == nil && v > 0 {
		n = v
	}
	const senders = 64
	var peakRSS, peakAnon, rss, anon float64
	var rate float64
	for range 1 { // one storm whatever b.N is: it is its own unit
		b.StopTimer()
		_, arr, k := benchWorld(b, true)
		s := newSender(b, k, senders)
		var peakMu sync.Mutex
		var sent atomic.Int64
		var peakAnonAt int64 // webhooks sent when the anonymous peak was seen
		peak := func() (r, a float64) {
			r, a, err := procMemory(k.PID())
			if err != nil {
				b.Error(err)
				return 0, 0
			}
			peakMu.Lock()
			if a > peakAnon {
				peakAnonAt = sent.Load()
			}
			peakRSS, peakAnon = max(peakRSS, r), max(peakAnon, a)
			peakMu.Unlock()
			return r, a
		}
		sample := func(done int) {
			r, a := peak()
			rss, anon = r, a
			dbRSS, _ := mappedRSS(k.PID(), "klaxon.db")
			var dbSize float64
			if fi, err := os.Stat(filepath.Join(k.DataDir(), "klaxon.db")); err == nil {
				dbSize = float64(fi.Size()) / (1 << 20)
			}
			b.Logf("%6d incidents: RSS %.0f MiB, anonymous %.0f MiB, klaxon.db resident %.0f MiB of %.0f MiB", done, r, a, dbRSS, dbSize)
		}
		sample(0)
		b.StartTimer()
		var sampleMu sync.Mutex
		step := max(n/10, 1)
		var wg sync.WaitGroup
		// Peaks between the logged samples: every 100ms while the storm lasts.
		stopPeaks := make(chan struct{})
		var peaks sync.WaitGroup
		peaks.Go(func() {
			t := time.NewTicker(100 * time.Millisecond)
			defer t.Stop()
			for {
				select {
				case <-stopPeaks:
					return
				case <-t.C:
					peak()
				}
			}
		})
		// Half way through, someone acknowledges one incident and resolves
		// another from the API: the storm must not lock them out.
		var actMs []float64
		act := func() {
			for _, a := range []struct {
				id     int
				action string
			}{{1, "ack"}, {2, "resolve"}} {
				ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
				t0 := time.Now()
				code, err := k.Do(ctx, "POST", fmt.Sprintf("/api/v1/incidents/%d/%s", a.id, a.action), nil, nil)
				cancel()
				if err != nil || code != 200 {
					b.Errorf("%s of incident %d during the storm: %d %v", a.action, a.id, code, err)
					continue
				}
				actMs = append(actMs, float64(time.Since(t0).Microseconds())/1000)
			}
		}
		start := time.Now()
		for range senders {
			wg.Go(func() {
				for {
					i := sent.Add(1)
					if i > int64(n) {
						return
					}
					if i == int64(n/2) {
						wg.Go(act)
					}
					if _, _, _, err := s.fire(); err != nil {
						b.Error(err)
						return
					}
					if i%int64(step) == 0 {
						sampleMu.Lock()
						sample(int(i))
						sampleMu.Unlock()
					}
				}
			})
		}
		wg.Wait()
		rate = float64(n) / time.Since(start).Seconds()
		b.StopTimer()
		close(stopPeaks)
		peaks.Wait()
		b.Logf("during the storm: ack and resolve answered in %v ms; anonymous memory peaked at %.0f MiB after %d webhooks", actMs, peakAnon, peakAnonAt)
		if len(actMs) > 0 {
			b.ReportMetric(slices.Max(actMs), "act-max-ms")
		}
		if arr.count() == 0 {
			b.Fatal("the person on call got no text at all during the storm")
		}
		// After the storm: what stays resident while the incidents are open.
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		if code, err := k.Do(ctx, "GET", "/healthz", nil, nil); err != nil || code != 200 {
			b.Fatalf("healthz after the storm: %d %v", code, err)
		}
		cancel()
		sample(n)
		b.Logf("texts sent during the storm: %d", arr.count())
		if os.Getenv("KLAXON_BENCH_GCTRACE") != "" {
			var gc []string
			for _, l := range strings.Split(k.Logs(), "\n") {
				if strings.HasPrefix(l, "gc ") {
					gc = append(gc, l)
				}
			}
			b.Logf("last GC lines:\n%s", strings.Join(gc[max(len(gc)-5, 0):], "\n"))
		}
		// Killed when the benchmark ends: after a storm a graceful stop
		// takes longer than the harness waits for it.
	}
	b.ReportMetric(rate, "webhooks/s")
	b.ReportMetric(peakRSS, "peak-rss-MiB")
	b.ReportMetric(peakAnon, "peak-anon-MiB")
	b.ReportMetric(rss, "after-rss-MiB")
	b.ReportMetric(anon, "after-anon-MiB")
}
