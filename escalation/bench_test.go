package escalation_test

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/klaxon-oncall/klaxon/escalation"
	"github.com/klaxon-oncall/klaxon/escalation/boltstore"
	"github.com/klaxon-oncall/klaxon/notifiers"
)

// stampNotifier records, per incident, when its first page reached the channel.
type stampNotifier struct {
	mu    sync.Mutex
	first map[uint64]time.Time
}

func (s *stampNotifier) Channel() notifiers.Channel { return notifiers.Matrix }
func (s *stampNotifier) Notify(_ context.Context, p notifiers.Page) (notifiers.Receipt, error) {
	now := time.Now()
	s.mu.Lock()
	if _, ok := s.first[p.Incident]; !ok {
		s.first[p.Incident] = now
	}
	s.mu.Unlock()
	return notifiers.Receipt{}, nil
}

var (
	prefillMu    sync.Mutex
	prefillFiles = map[string]string{}
)

// prefilled returns a data directory holding n open, escalating incidents
// (made once per size and copied for each benchmark).
func prefilled(b *testing.B, n int) string {
	return prefilledWith(b, n, false, false)
}

// crashedFile is the prefilled file's copy taken before its Close.
const crashedFile = "crashed.db"

// heldLimit is the rate limit the held benchmarks give Matrix: 3 pages per
// 15 minutes per person, so all but the first 3 of a storm's pages are held.
var heldLimit = [2]int64{3, int64(15 * time.Minute)}

// prefilledWith is prefilled; with limited, Matrix is rate limited
// (heldLimit) so every page past the first three is held for one person.
// With crashed, the file is as a crash would have left it: as its last
// commit wrote it, not its clean Close (which writes bbolt's free list).
func prefilledWith(b *testing.B, n int, limited, crashed bool) string {
	b.Helper()
	prefillMu.Lock()
	defer prefillMu.Unlock()
	name := fmt.Sprint(n, limited)
	src, ok := prefillFiles[name]
	if !ok {
		dir, err := os.MkdirTemp("", "klaxon-bench-")
		if err != nil {
			b.Fatal(err)
		}
		s, err := boltstore.Open(dir, boltstore.Options{NoSync: true})
		if err != nil {
			b.Fatal(err)
		}
		rota := newRota(defaultPolicy())
		if limited {
			rota.limits = map[notifiers.Channel][2]int64{notifiers.Matrix: heldLimit}
		}
		eng := escalation.New(escalation.Config{Store: s, Rota: func() escalation.Rota { return rota },
			Notifiers: []notifiers.Notifier{&stampNotifier{first: map[uint64]time.Time{}}}, MaxInFlight: 64})
		var wg sync.WaitGroup
		sem := make(chan struct{}, 256)
		for i := range n {
			sem <- struct{}{}
			wg.Go(func() {
				defer func() { <-sem }()
				if _, err := eng.Ingest(context.Background(), firing(fmt.Sprint("pre-", i), "a")); err != nil {
					b.Error(err)
				}
			})
		}
		wg.Wait()
		eng.Wait()
		if limited {
			h, err := s.Held(context.Background(), "alice", notifiers.Matrix, 1)
			if err != nil || h.Count < n-int(heldLimit[0]) {
				b.Fatalf("%d of %d pages held for alice (%v): the storm is not what it claims", h.Count, n, err)
			}
		}
		if err := s.DB().View(func(tx *bolt.Tx) error { return tx.CopyFile(filepath.Join(dir, crashedFile), 0o600) }); err != nil {
			b.Fatal(err)
		}
		s.Close()
		src = dir
		prefillFiles[name] = dir
	}
	from := filepath.Join(src, boltstore.FileName)
	if crashed {
		from = filepath.Join(src, crashedFile)
	}
	dst := b.TempDir()
	copyFile(b, from, filepath.Join(dst, boltstore.FileName))
	return dst
}

func copyFile(b *testing.B, from, to string) {
	in, err := os.Open(from)
	if err != nil {
		b.Fatal(err)
	}
	defer in.Close()
	out, err := os.Create(to)
	if err != nil {
		b.Fatal(err)
	}
	if _, err := io.Copy(out, in); err != nil {
		b.Fatal(err)
	}
	if err := out.Close(); err != nil {
		b.Fatal(err)
	}
}

// BenchmarkFirstPage measures from Ingest of a new alert group (with fsync)
// to its first page being handed to a channel, with many incidents already
// open and escalating. Sequential arrivals, as latency is the question.
//
//	go test -run '^$' -bench FirstPage -benchtime 2000x -count 6 ./escalation/
func BenchmarkFirstPage(b *testing.B) {
	for _, open := range []int{1000, 100000} {
		b.Run(fmt.Sprintf("open=%d", open), func(b *testing.B) {
			dir := prefilled(b, open)
			s, err := boltstore.Open(dir, boltstore.Options{})
			if err != nil {
				b.Fatal(err)
			}
			defer s.Close()
			rec := &stampNotifier{first: map[uint64]time.Time{}}
			rota := newRota(defaultPolicy())
			eng := escalation.New(escalation.Config{Store: s, Rota: func() escalation.Rota { return rota }, Notifiers: []notifiers.Notifier{rec}})
			if _, _, err := eng.Recover(context.Background()); err != nil {
				b.Fatal(err)
			}
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			go eng.Run(ctx)
			lat := make([]time.Duration, 0, b.N)
			b.ResetTimer()
			for i := range b.N {
				t0 := time.Now()
				res, err := eng.Ingest(ctx, firing(fmt.Sprint("new-", i), "a"))
				if err != nil || !res.Opened {
					b.Fatal(res, err)
				}
				// The page goes out in the background: wait for it.
				for {
					rec.mu.Lock()
					at, ok := rec.first[res.Incident]
					rec.mu.Unlock()
					if ok {
						lat = append(lat, at.Sub(t0))
						break
					}
					runtime.Gosched()
				}
			}
			b.StopTimer()
			slices.Sort(lat)
			b.ReportMetric(float64(lat[len(lat)/2].Microseconds())/1000, "p50-ms")
			b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds())/1000, "p99-ms")
		})
	}
}

// BenchmarkRecover100k measures a restart with 100,000 open escalating
// incidents: from opening the store to escalation resuming (Recover done),
// and the resident memory the engine holds for them.
//
//	go test -run '^$' -bench Recover100k -benchtime 3x -count 6 ./escalation/
//
// held=100k has all 100,000 incidents' first pages held by a rate limit for
// one person (the performance budget, README.md: a restart with 100,000 open
// incidents in under 3 s).
func BenchmarkRecover100k(b *testing.B) {
	b.Run("held=0", func(b *testing.B) { benchRecover(b, false, false) })
	b.Run("held=100k", func(b *testing.B) { benchRecover(b, true, false) })
	b.Run("held=100k/crashed", func(b *testing.B) { benchRecover(b, true, true) })
}

// benchRecover is BenchmarkRecover100k; with held, Matrix is rate limited
// and the 100,000 incidents' pages are held for one person (an alert storm
// at the moment of the restart); with crashed, the previous Klaxon did not
// close the store (bbolt's free list is then rebuilt by walking the file).
func benchRecover(b *testing.B, held, crashed bool) {
	const open = 100000
	for range b.N {
		b.StopTimer()
		dir := prefilledWith(b, open, held, crashed)
		runtime.GC()
		b.StartTimer()
		t0 := time.Now()
		s, err := boltstore.Open(dir, boltstore.Options{})
		if err != nil {
			b.Fatal(err)
		}
		rota := newRota(defaultPolicy())
		if held {
			rota.limits = map[notifiers.Channel][2]int64{notifiers.Matrix: heldLimit}
		}
		eng := escalation.New(escalation.Config{Store: s, Rota: func() escalation.Rota { return rota },
			Notifiers: []notifiers.Notifier{&stampNotifier{first: map[uint64]time.Time{}}}})
		n, _, err := eng.Recover(context.Background())
		if err != nil || n != open {
			b.Fatal(n, err)
		}
		took := time.Since(t0)
		b.StopTimer()
		runtime.GC()
		b.ReportMetric(took.Seconds(), "recover-s")
		anon, file := rss()
		b.ReportMetric(float64(anon)/(1<<20), "rss-anon-MiB")
		b.ReportMetric(float64(file)/(1<<20), "rss-file-MiB")
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		b.ReportMetric(float64(ms.HeapInuse)/(1<<20), "heap-MiB")
		runtime.KeepAlive(eng)
		s.Close()
		b.StartTimer()
	}
}

// rss reads the process's resident memory (Linux): anonymous (heap, stacks)
// and file-backed (bbolt's memory map: page cache the kernel can reclaim).
func rss() (anon, file int64) {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0, 0
	}
	kb := func(rest string) int64 {
		n, _ := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(rest), "kB")), 10, 64)
		return n << 10
	}
	for _, line := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, "RssAnon:"); ok {
			anon = kb(rest)
		}
		if rest, ok := strings.CutPrefix(line, "RssFile:"); ok {
			file = kb(rest)
		}
	}
	return anon, file
}
