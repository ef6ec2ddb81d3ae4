package boltstore

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/klaxon-oncall/klaxon/escalation"
)

// TestLogReadsUpToTheFirstBadRecord: Open replays the records of the
// store's epoch from the start of the log and stops at the first that is
// torn, corrupt, of another epoch or of another store, whatever follows.
func TestLogReadsUpToTheFirstBadRecord(t *testing.T) {
	salt := []byte("saltsalt")
	recs := [][]byte{[]byte("first"), bytes.Repeat([]byte("second"), 100), []byte("third")}
	write := func(t *testing.T, epoch uint64, recs ...[]byte) (string, []int64) {
		t.Helper()
		path := filepath.Join(t.TempDir(), WALFileName)
		w, _, err := openWAL(path, salt, epoch, true)
		if err != nil {
			t.Fatal(err)
		}
		defer w.close()
		var ends []int64
		for _, r := range recs {
			if err := w.append(r); err != nil {
				t.Fatal(err)
			}
			ends = append(ends, w.off)
		}
		return path, ends
	}
	for _, tc := range []struct {
		name  string
		spoil func(t *testing.T, path string, ends []int64)
		salt  []byte
		epoch uint64
		want  int
	}{
		{"whole", nil, salt, 7, 3},
		{"torn last record", func(t *testing.T, path string, ends []int64) { truncate(t, path, ends[2]-1) }, salt, 7, 2},
		{"torn header", func(t *testing.T, path string, ends []int64) { truncate(t, path, ends[1]+3) }, salt, 7, 2},
		{"a byte changed in the second", func(t *testing.T, path string, ends []int64) { flip(t, path, ends[0]+walHeader+50) }, salt, 7, 1},
		{"a length changed", func(t *testing.T, path string, ends []int64) { flip(t, path, ends[0]+3) }, salt, 7, 1},
		{"a length past the end", func(t *testing.T, path string, ends []int64) { flip(t, path, ends[0]) }, salt, 7, 1},
		{"another store's", nil, []byte("pepper!!"), 7, 0},
		{"an older epoch's", nil, salt, 8, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path, ends := write(t, 7, recs...)
			if tc.spoil != nil {
				tc.spoil(t, path, ends)
			}
			got := readPath(t, path, tc.salt, tc.epoch)
			if len(got) != tc.want {
				t.Fatalf("read %d records, want %d", len(got), tc.want)
			}
			for i := range got {
				if !bytes.Equal(got[i], recs[i]) {
					t.Fatalf("record %d reads %q, want %q", i, got[i], recs[i])
				}
			}
		})
	}
	t.Run("a new generation over an older, longer one", func(t *testing.T) {
		path, _ := write(t, 7, recs...)
		w, _, err := openWAL(path, salt, 7, true)
		if err != nil {
			t.Fatal(err)
		}
		w.restart(8)
		if err := w.append([]byte("first")); err != nil { // as long as the old first: the old second follows it
			t.Fatal(err)
		}
		w.close()
		if got := readPath(t, path, salt, 8); len(got) != 1 {
			t.Fatalf("read %d records of the new generation, want 1: the old one's were read as new", len(got))
		}
	})
}

func readPath(t *testing.T, path string, salt []byte, epoch uint64) [][]byte {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		t.Fatal(err)
	}
	got, err := readWAL(f, fi.Size(), salt, epoch)
	if err != nil {
		t.Fatal(err)
	}
	return got
}

func truncate(t *testing.T, path string, size int64) {
	t.Helper()
	if err := os.Truncate(path, size); err != nil {
		t.Fatal(err)
	}
}

func flip(t *testing.T, path string, at int64) {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	data[at] ^= 0x40
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
}

// TestWriteIsAcknowledgedOnlyOnceTheLogIsSynced: a write returns only after
// the fdatasync of the log record that holds it has returned, and a lone
// write costs one. In a synctest bubble, Wait shows whether the write's
// caller is still blocked while the sync is held.
func TestWriteIsAcknowledgedOnlyOnceTheLogIsSynced(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s, err := Open(t.TempDir(), Options{CheckpointEvery: time.Hour, ReleaseMapEvery: -1})
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		entered, release := make(chan struct{}, 10), make(chan struct{})
		syncs := 0
		s.group.do(func(*wtx) error { // in the writer: the only goroutine that syncs the log
			s.log.sync = func(f *os.File) error {
				syncs++
				entered <- struct{}{}
				<-release
				return datasync(f)
			}
			return nil
		}, false)
		done := make(chan error, 1)
		go func() {
			_, err := ingestOne(s)
			done <- err
		}()
		<-entered
		synctest.Wait() // every goroutine of the bubble is blocked: the writer in the sync
		select {
		case err := <-done:
			t.Fatalf("the write returned (%v) while its log record's sync was still running", err)
		default:
		}
		close(release)
		if err := <-done; err != nil {
			t.Fatal(err)
		}
		var n int
		s.group.do(func(*wtx) error { n = syncs; return nil }, false)
		if n != 1 {
			t.Fatalf("a lone write synced the log %d times, want 1", n)
		}
	})
}

// TestOpenReplaysTheLogAfterACrash: writes acknowledged but not yet
// committed to klaxon.db are there after a crash, and a store opened
// read-only refuses to show the file without them.
func TestOpenReplaysTheLogAfterACrash(t *testing.T) {
	dir := t.TempDir()
	ctx := context.Background()
	s, err := Open(dir, Options{CheckpointEvery: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	for i := range 20 {
		if err := s.PutState(ctx, "b", fmt.Sprint("k", i), []byte(fmt.Sprint("v", i))); err != nil {
			t.Fatal(err)
		}
	}
	Crash(s)
	if ro, err := Open(dir, Options{ReadOnly: true}); err == nil {
		ro.Close()
		t.Fatal("a read-only open showed klaxon.db without the writes only in the log")
	} else if want := "start klaxon serve"; !bytes.Contains([]byte(err.Error()), []byte(want)) {
		t.Fatalf("read-only open: %v, want it to say %q", err, want)
	}
	s, err = Open(dir, Options{CheckpointEvery: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	Crash(s) // the replay was committed at Open: nothing is left in the log
	ro, err := Open(dir, Options{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	defer ro.Close()
	for i := range 20 {
		v, err := ro.GetState(ctx, "b", fmt.Sprint("k", i))
		if err != nil || string(v) != fmt.Sprint("v", i) {
			t.Fatalf("k%d = %q, %v after the crash, want v%d", i, v, err, i)
		}
	}
}

// TestReadsSeeAcknowledgedWrites: a read sees every write acknowledged
// before it, though the writer commits to klaxon.db only every
// CheckpointEvery. Reads of a key or an incident do so in the writer's
// transaction, without a checkpoint; a scan commits first.
func TestReadsSeeAcknowledgedWrites(t *testing.T) {
	s, err := Open(t.TempDir(), Options{NoSync: true, CheckpointEvery: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	ctx := context.Background()
	committed := func(key string) bool {
		t.Helper()
		c, err := Committed(s)
		if err != nil {
			t.Fatal(err)
		}
		_, ok := c[key]
		return ok
	}
	for i := range 10 {
		k, v := fmt.Sprint("k", i), []byte(fmt.Sprint("v", i))
		if err := s.PutState(ctx, "b", k, v); err != nil {
			t.Fatal(err)
		}
		got, err := s.GetState(ctx, "b", k)
		if err != nil || !bytes.Equal(got, v) {
			t.Fatalf("read %q, %v right after writing %q", got, err, v)
		}
		if committed("state/b/" + k) {
			t.Fatal("reading a key committed the log to klaxon.db")
		}
	}
	res, err := ingestOne(s)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Incident(ctx, res.Incident); err != nil {
		t.Fatalf("incident %d right after its webhook: %v", res.Incident, err)
	}
	if tl, err := s.Timeline(ctx, res.Incident); err != nil || len(tl) == 0 {
		t.Fatalf("timeline of incident %d right after its webhook: %v, %v", res.Incident, tl, err)
	}
	list, err := s.Incidents(ctx, escalation.Filter{Limit: 10})
	if err != nil || len(list) != 1 {
		t.Fatalf("incidents right after a webhook: %v, %v", list, err)
	}
	if !committed("state/b/k9") {
		t.Fatal("a scan read klaxon.db without committing the log first")
	}
}

// TestFailedCheckpointKeepsWritesAndTellsPing: when klaxon.db cannot take a
// checkpoint (a full disk), writes are still acknowledged from the log,
// reads of a key still see them, scans fail rather than show a store
// without them, Ping and OnCommitResult
// say so, and the next checkpoint that succeeds brings it all back, as does
// a restart.
func TestFailedCheckpointKeepsWritesAndTellsPing(t *testing.T) {
	dir := t.TempDir()
	ctx := context.Background()
	var mu sync.Mutex
	var results []error
	s, err := Open(dir, Options{NoSync: true, CheckpointEvery: time.Hour, OnCommitResult: func(err error) {
		mu.Lock()
		results = append(results, err)
		mu.Unlock()
	}})
	if err != nil {
		t.Fatal(err)
	}
	full := errors.New("no space left on device")
	s.group.do(func(*wtx) error {
		s.group.commitTx = func(*bolt.Tx) error { return full }
		return nil
	}, false)
	if err := s.PutState(ctx, "b", "k", []byte("v")); err != nil {
		t.Fatalf("a write with the log working but klaxon.db full: %v", err)
	}
	if v, err := s.GetState(ctx, "b", "k"); err != nil || string(v) != "v" {
		t.Fatalf("read %q, %v while checkpoints fail, want the value from the writer's transaction", v, err)
	}
	if c, err := s.Counts(ctx); !errors.Is(err, full) {
		t.Fatalf("a scan read %v, %v while checkpoints fail, want the checkpoint's error", c, err)
	}
	if err := s.Ping(ctx); err == nil || !strings.Contains(err.Error(), "write-ahead log") {
		t.Fatalf("Ping while checkpoints fail: %v", err)
	}
	if err := s.PutState(ctx, "b", "k2", []byte("v2")); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	last := results[len(results)-1]
	mu.Unlock()
	if !errors.Is(last, full) {
		t.Fatalf("OnCommitResult heard %v after a write while checkpoints fail, want the checkpoint's error", last)
	}
	s.group.do(func(*wtx) error { s.group.commitTx = nil; return nil }, false)
	if _, err := s.Counts(ctx); err != nil { // a scan: checkpoints
		t.Fatalf("a scan once checkpoints work again: %v", err)
	}
	for k, want := range map[string]string{"k": "v", "k2": "v2"} {
		if v, err := s.GetState(ctx, "b", k); err != nil || string(v) != want {
			t.Fatalf("%s = %q, %v once checkpoints work again, want %q", k, v, err, want)
		}
	}
	if err := s.Ping(ctx); err != nil {
		t.Fatalf("Ping once checkpoints work again: %v", err)
	}
	if err := s.PutState(ctx, "b", "k3", []byte("v3")); err != nil {
		t.Fatal(err)
	}
	s.group.do(func(*wtx) error {
		s.group.commitTx = func(*bolt.Tx) error { return full }
		return nil
	}, false)
	if err := s.PutState(ctx, "b", "k4", []byte("v4")); err != nil {
		t.Fatal(err)
	}
	Crash(s)
	s, err = Open(dir, Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	for k, want := range map[string]string{"k": "v", "k2": "v2", "k3": "v3", "k4": "v4"} {
		if v, err := s.GetState(ctx, "b", k); err != nil || string(v) != want {
			t.Fatalf("%s = %q, %v after a restart, want %q", k, v, err, want)
		}
	}
}

// ingestOne posts one firing alert of group "g", planning nothing.
func ingestOne(s *Store) (escalation.IngestResult, error) {
	n := escalation.Notification{GroupKey: "g", Status: "firing",
		Alerts: []escalation.Alert{{Fingerprint: "f", Status: "firing", Labels: map[string]string{"alertname": "A"}, StartsAt: time.Now()}}}
	return escalation.Ingest(context.Background(), s, n, time.Now(), func(*escalation.Incident, []escalation.PageRecord, []escalation.Event) (escalation.Change, error) {
		return escalation.Change{}, escalation.ErrNoChange
	})
}
