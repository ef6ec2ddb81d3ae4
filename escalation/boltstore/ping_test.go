package boltstore_test

import (
	"context"
	"strings"
	"testing"

	bolt "go.etcd.io/bbolt"

	"github.com/klaxon-oncall/klaxon/escalation"
	"github.com/klaxon-oncall/klaxon/escalation/boltstore"
)

func txID(t *testing.T, s *boltstore.Store) int {
	t.Helper()
	var id int
	if err := s.DB().View(func(tx *bolt.Tx) error { id = tx.ID(); return nil }); err != nil {
		t.Fatal(err)
	}
	return id
}

// TestPingOnlyReads: a readiness probe must not queue behind ingest for the
// write lock, so Ping commits nothing.
func TestPingOnlyReads(t *testing.T) {
	s, err := boltstore.Open(t.TempDir(), boltstore.Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	before := txID(t, s)
	for range 50 {
		if err := s.Ping(context.Background()); err != nil {
			t.Fatal(err)
		}
	}
	if after := txID(t, s); after != before {
		t.Fatalf("Ping committed %d write transactions", after-before)
	}
}

// TestCommitFailureShowsInPingAndResult: a write the disk refuses is reported
// through OnCommitResult and makes Ping fail; a domain refusal is neither.
func TestCommitFailureShowsInPingAndResult(t *testing.T) {
	dir := t.TempDir()
	var results []error
	record := func(err error) { results = append(results, err) }
	w, err := boltstore.Open(dir, boltstore.Options{NoSync: true, OnCommitResult: record})
	if err != nil {
		t.Fatal(err)
	}
	// Refused by the domain (no such incident): not a commit failure.
	if _, _, err := escalation.Update(context.Background(), w, 42, func(*escalation.Incident, []escalation.PageRecord) (escalation.Change, error) {
		return escalation.Change{}, nil
	}); err == nil {
		t.Fatal("update of a missing incident succeeded")
	}
	if err := w.PutState(context.Background(), "b", "k", []byte("v")); err != nil {
		t.Fatal(err)
	}
	for _, r := range results {
		if r != nil {
			t.Fatalf("a domain refusal was reported as a commit failure: %v", r)
		}
	}
	if err := w.Ping(context.Background()); err != nil {
		t.Fatal(err)
	}
	ro := func() *boltstore.Store {
		w.Close()
		s, err := boltstore.Open(dir, boltstore.Options{ReadOnly: true, OnCommitResult: record})
		if err != nil {
			t.Fatal(err)
		}
		return s
	}()
	defer ro.Close()
	if err := ro.Ping(context.Background()); err != nil {
		t.Fatalf("Ping before any write: %v", err)
	}
	if err := ro.PutState(context.Background(), "b", "k", []byte("v")); err == nil {
		t.Fatal("write to a read-only store succeeded")
	}
	if len(results) == 0 || results[len(results)-1] == nil {
		t.Fatalf("commit results %v: the refused write was not reported", results)
	}
	if err := ro.Ping(context.Background()); err == nil {
		t.Fatal("Ping is fine after a write could not commit")
	}
}

func TestSweepState(t *testing.T) {
	s, err := boltstore.Open(t.TempDir(), boltstore.Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	ctx := context.Background()
	if err := s.SweepState(ctx, "none", func(string, []byte) bool { t.Fatal("called for a missing bucket"); return true }); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"a", "b", "c"} {
		s.PutState(ctx, "b1", k, []byte("v"+k))
	}
	s.PutState(ctx, "b2", "b", []byte("other bucket"))
	var seen []string
	if err := s.SweepState(ctx, "b1", func(k string, v []byte) bool {
		seen = append(seen, k+"="+string(v))
		return k != "b"
	}); err != nil {
		t.Fatal(err)
	}
	if strings.Join(seen, ",") != "a=va,b=vb,c=vc" {
		t.Fatalf("walked %v", seen)
	}
	for k, want := range map[string]string{"a": "va", "b": "", "c": "vc"} {
		if v, _ := s.GetState(ctx, "b1", k); string(v) != want {
			t.Errorf("b1/%s = %q, want %q", k, v, want)
		}
	}
	if v, _ := s.GetState(ctx, "b2", "b"); string(v) != "other bucket" {
		t.Error("sweeping one bucket touched another")
	}
}
