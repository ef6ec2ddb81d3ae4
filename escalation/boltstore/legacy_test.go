package boltstore_test

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/klaxon-oncall/klaxon/escalation"
	"github.com/klaxon-oncall/klaxon/escalation/boltstore"
)

// dump is an Exporter that keeps everything, in the shape of
// testdata/legacy/*.json (see testdata/legacy/README.md).
type dump struct {
	Seq       uint64                      `json:"seq"`
	Incidents []dumpIncident              `json:"incidents"`
	Groups    map[string]escalation.Group `json:"groups"`
	States    map[string][]byte           `json:"state"`
}

type dumpIncident struct {
	Incident escalation.Incident     `json:"incident"`
	Timeline []escalation.Event      `json:"timeline"`
	Pages    []escalation.PageRecord `json:"pages"`
}

func (d *dump) Sequence(n uint64) error { d.Seq = n; return nil }
func (d *dump) Incident(inc escalation.Incident, tl []escalation.Event, p []escalation.PageRecord) error {
	d.Incidents = append(d.Incidents, dumpIncident{inc, tl, p})
	return nil
}
func (d *dump) Group(k string, g escalation.Group) error { d.Groups[k] = g; return nil }
func (d *dump) State(b, k string, v []byte) error        { d.States[b+"/"+k] = v; return nil }

// exported reads everything s holds, through JSON as the fixture was.
func exported(t *testing.T, s *boltstore.Store) *dump {
	t.Helper()
	d := &dump{Groups: map[string]escalation.Group{}, States: map[string][]byte{}}
	if err := s.Export(context.Background(), d); err != nil {
		t.Fatal(err)
	}
	b, _ := json.Marshal(d)
	out := &dump{}
	if err := json.Unmarshal(b, out); err != nil {
		t.Fatal(err)
	}
	return out
}

// fixture copies testdata/legacy/name into a new directory.
func fixture(t *testing.T, name string) string {
	t.Helper()
	dir := t.TempDir()
	entries, err := os.ReadDir(filepath.Join("testdata", "legacy", name))
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		b, err := os.ReadFile(filepath.Join("testdata", "legacy", name, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, e.Name()), b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// TestOpensWhatC735968Left: a data directory left by the build with the
// write-ahead log opens with everything that build acknowledged, whether it
// crashed with writes only in klaxon.wal and groups only in its newGroups
// bucket, or closed cleanly with no log; the log is applied once and
// removed, and the store takes writes as any other.
func TestOpensWhatC735968Left(t *testing.T) {
	for _, name := range []string{"crashed", "closed"} {
		t.Run(name, func(t *testing.T) {
			raw, err := os.ReadFile(filepath.Join("testdata", "legacy", name+".json"))
			if err != nil {
				t.Fatal(err)
			}
			want := &dump{}
			if err := json.Unmarshal(raw, want); err != nil {
				t.Fatal(err)
			}
			dir := fixture(t, name)
			if name == "crashed" {
				// The log is needed: klaxon.db alone lacks acknowledged writes,
				// and a read-only open says so rather than miss them.
				if _, err := boltstore.Open(dir, boltstore.Options{ReadOnly: true}); err == nil || !strings.Contains(err.Error(), "klaxon.wal holds") {
					t.Fatalf("read-only open of a crashed directory: %v, want the log's pending writes named", err)
				}
			}
			for open := range 2 { // the second open finds no log and the same store
				s, err := boltstore.Open(dir, boltstore.Options{NoSync: true})
				if err != nil {
					t.Fatal(err)
				}
				got := exported(t, s)
				s.Close()
				if !reflect.DeepEqual(got, want) {
					g, _ := json.MarshalIndent(got, "", "  ")
					t.Fatalf("open %d: the store reads\n%s\nwant what c735968 read (%s.json)", open+1, g, name)
				}
				if _, err := os.Stat(filepath.Join(dir, "klaxon.wal")); !os.IsNotExist(err) {
					t.Fatalf("open %d: klaxon.wal is still there (%v)", open+1, err)
				}
			}
			s, err := boltstore.Open(dir, boltstore.Options{NoSync: true})
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			// A group the log opened (only in newGroups) merges into its
			// incident; a new one opens the next id.
			group := want.Incidents[len(want.Incidents)-1].Incident.GroupKey
			n := note(group, "firing")
			n.Alerts[0].Fingerprint = group
			res, err := escalation.Ingest(context.Background(), s, n, now, noDecide)
			if err != nil || res.Opened || res.Incident != want.Seq {
				t.Fatalf("repeat of group %s = %+v %v, want incident %d, not a new one", group, res, err, want.Seq)
			}
			res, err = escalation.Ingest(context.Background(), s, note("new", "firing"), now, noDecide)
			if err != nil || !res.Opened || res.Incident != want.Seq+1 {
				t.Fatalf("a new group = %+v %v, want incident %d opened", res, err, want.Seq+1)
			}
		})
	}
}
