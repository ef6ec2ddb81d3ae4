package importer

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/klaxon-oncall/klaxon/escalation/rota"
	"github.com/klaxon-oncall/klaxon/internal/rotatests"
)

func mustLoc(t *testing.T, name string) *time.Location {
	t.Helper()
	loc, err := time.LoadLocation(name)
	if err != nil {
		t.Fatal(err)
	}
	return loc
}

// layered is a schedule in New York with a weekly base layer and a layer
// restricted to weekdays 09:00-17:00 above it; clocks change on 2026-11-01.
func layered(t *testing.T) *Model {
	ny := mustLoc(t, "America/New_York")
	origin := time.Date(2026, 10, 5, 9, 0, 0, 0, ny) // a Monday
	var days []Window
	for d := time.Monday; d <= time.Friday; d++ {
		days = append(days, Window{Weekday: d, Start: 9 * time.Hour, Length: 8 * time.Hour})
	}
	return &Model{
		Source:   "Test",
		Location: ny,
		People: []*Person{
			{Key: "U1", Name: "Ann Able", Email: "ann@example.org", Phone: "+15555550001"},
			{Key: "U2", Name: "Ben Best", Email: "ben@example.org", Phone: "+15555550002"},
			{Key: "U3", Name: "Cat Cole", Email: "cat@example.org", Phone: "+15555550003"},
		},
		Schedules: []*Schedule{{
			Key: "S1", Name: "Ops", Location: ny,
			Layers: []*Layer{
				{Name: "Weekly", Members: []string{"U1", "U2"}, Origin: origin, Turn: 7 * 24 * time.Hour},
				{Name: "Office hours", Members: []string{"U3"}, Origin: origin, Turn: 24 * time.Hour, Restrictions: days},
				{Name: "Overrides", Kind: "override", Fixed: []Span{{Person: "U2", Start: time.Date(2026, 11, 3, 20, 0, 0, 0, ny), End: time.Date(2026, 11, 4, 8, 0, 0, 0, ny)}}},
			},
		}},
		Policies: []*Policy{{Key: "P1", Name: "Ops", Steps: []Step{{Schedules: []string{"S1"}, Wait: 15 * time.Minute}, {People: []string{"U1"}, Wait: 10 * time.Minute}}, Repeat: 2}},
		Routes:   []*Route{{Value: "api", Policy: "P1", Name: `service "API"`}},
	}
}

func TestBuildFollowsLayersAcrossDST(t *testing.T) {
	m := layered(t)
	now := time.Date(2026, 10, 26, 12, 0, 0, 0, time.UTC)
	res, err := Build(m, Options{Now: now, Weeks: 4})
	if err != nil {
		t.Fatal(err)
	}
	bad, samples := res.Expected(now, 28*24)
	if len(bad) > 0 {
		var b strings.Builder
		res.WriteMismatches(&b, bad)
		t.Fatalf("%d hours disagree:\n%s\n%s", len(bad), b.String(), res.YAML)
	}
	if len(samples) == 0 {
		t.Fatal("no samples")
	}
	if !strings.Contains(res.Report.String(), `layer "Office hours"`) {
		t.Errorf("the report does not name the restricted layer:\n%s", res.Report.String())
	}
	// The test file runs green against the rota.
	tf, err := rotatests.Parse("rota_test.yaml", res.TestsYAML(samples, "rota.yaml", "as the importer read the source"))
	if err != nil {
		t.Fatal(err)
	}
	if fails := tf.Run(res.Rota); len(fails) > 0 {
		t.Fatalf("rota_test.yaml fails: %v", fails)
	}
}

func TestBuildRotaParses(t *testing.T) {
	m := layered(t)
	res, err := Build(m, Options{Now: time.Date(2026, 10, 26, 12, 0, 0, 0, time.UTC)})
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := rota.Parse("rota.yaml", res.YAML); err != nil {
		t.Fatal(err)
	}
	t.Logf("%s", res.YAML)
	t.Logf("%s", res.Report.String())
}

// A schedule whose people were not imported is left out and reported, not
// the whole import refused.
func TestScheduleWithoutImportedPeopleIsReported(t *testing.T) {
	m := layered(t)
	ny := m.Location
	m.Schedules = append(m.Schedules, &Schedule{Key: "S2", Name: "Gone", Location: ny,
		Layers: []*Layer{{Name: "L", Members: []string{"U9"}, Origin: time.Date(2026, 10, 5, 9, 0, 0, 0, ny), Turn: 24 * time.Hour}}})
	m.Policies = append(m.Policies, &Policy{Key: "P2", Name: "Gone", Steps: []Step{{Schedules: []string{"S2"}, Wait: time.Minute}, {People: []string{"U1"}, Wait: time.Minute}}})
	res, err := Build(m, Options{Now: time.Date(2026, 10, 26, 12, 0, 0, 0, time.UTC)})
	if err != nil {
		t.Fatal(err)
	}
	rep := res.Report.String()
	if !strings.Contains(rep, `schedule "Gone"`) || !strings.Contains(rep, "has nobody on call who is among the imported users") {
		t.Fatalf("report:\n%s", rep)
	}
	if res.Rota.Rotations["gone"] != nil {
		t.Fatal("a rotation without members was written")
	}
}

// BenchmarkBuild measures writing the layered schedule of TestBuildFollowsLayersAcrossDST
// with 4 and 52 weeks of overrides.
func BenchmarkBuild(b *testing.B) {
	for _, weeks := range []int{4, 52} {
		b.Run(fmt.Sprintf("weeks=%d", weeks), func(b *testing.B) {
			t := &testing.T{}
			m := layered(t)
			now := time.Date(2026, 10, 26, 12, 0, 0, 0, time.UTC)
			for b.Loop() {
				if _, err := Build(m, Options{Now: now, Weeks: weeks}); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
