package etcdstore_test

import (
	"context"
	"slices"
	"testing"
)

// testSweepStateOneBucket: a sweep walks one bucket only (not one whose name
// extends it), in key order, and deletes what keep turns down.
func testSweepStateOneBucket(t *testing.T) {
	ctx := context.Background()
	s := newStore(t, "w")
	for _, kv := range [][3]string{{"b", "k1", "v1"}, {"b", "k2", "v2"}, {"b", "k3", "v3"}, {"bb", "k1", "other"}} {
		if err := s.PutState(ctx, kv[0], kv[1], []byte(kv[2])); err != nil {
			t.Fatal(err)
		}
	}
	var seen []string
	if err := s.SweepState(ctx, "b", func(k string, v []byte) bool {
		seen = append(seen, k+"="+string(v))
		return k != "k2"
	}); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(seen, []string{"k1=v1", "k2=v2", "k3=v3"}) {
		t.Fatalf("swept %v", seen)
	}
	if v, _ := s.GetState(ctx, "b", "k2"); v != nil {
		t.Fatal("k2 was not deleted")
	}
	for _, kv := range [][2]string{{"b", "k1"}, {"b", "k3"}, {"bb", "k1"}} {
		if v, _ := s.GetState(ctx, kv[0], kv[1]); v == nil {
			t.Fatalf("%s/%s was deleted", kv[0], kv[1])
		}
	}
	if err := s.SweepState(ctx, "none", func(string, []byte) bool { t.Fatal("called for an empty bucket"); return true }); err != nil {
		t.Fatal(err)
	}
}
