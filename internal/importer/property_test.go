package importer

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"
	"time"

	"github.com/klaxon-oncall/klaxon/escalation/rota"
)

var propertyZones = []string{"Europe/London", "America/New_York", "Australia/Sydney", "Asia/Kolkata", "UTC"}

// randomModel builds a model of random schedules: layers with random turns,
// origins, restrictions, ends and overrides, in zones with clock changes and
// half-hour offsets.
func randomModel(r *rand.Rand, now time.Time) *Model {
	zone := func() *time.Location {
		loc, _ := time.LoadLocation(propertyZones[r.IntN(len(propertyZones))])
		return loc
	}
	m := &Model{Source: "Random", Location: zone()}
	people := []string{"p1", "p2", "p3", "p4", "p5"}
	for _, p := range people {
		m.People = append(m.People, &Person{Key: p, Name: p, Phone: "+1555555000" + p[1:]})
	}
	pick := func() []string {
		n := 1 + r.IntN(3)
		out := slices.Clone(people)
		r.Shuffle(len(out), func(i, j int) { out[i], out[j] = out[j], out[i] })
		return out[:n]
	}
	minute := func() time.Duration { return time.Duration(r.IntN(24*4)) * 15 * time.Minute }
	for s := range 1 + r.IntN(3) {
		sc := &Schedule{Key: fmt.Sprint("S", s), Name: fmt.Sprint("Schedule ", s), Location: zone(), Union: r.IntN(3) == 0}
		for l := range 1 + r.IntN(3) {
			turns := []time.Duration{time.Hour, 8 * time.Hour, 12 * time.Hour, 24 * time.Hour, 3 * 24 * time.Hour, 7 * 24 * time.Hour, 14 * 24 * time.Hour}
			layer := &Layer{Name: fmt.Sprint("L", l), Group: fmt.Sprint("G", l), Members: pick(), Turn: turns[r.IntN(len(turns))],
				Origin: now.Add(-time.Duration(r.IntN(60*24)) * time.Hour).Truncate(15 * time.Minute)}
			if l > 0 || r.IntN(3) == 0 {
				for range 1 + r.IntN(5) {
					w := Window{Daily: r.IntN(2) == 0, Weekday: time.Weekday(r.IntN(7)), Start: minute(), Length: time.Duration(1+r.IntN(16)) * time.Hour}
					layer.Restrictions = append(layer.Restrictions, w)
				}
			}
			if r.IntN(5) == 0 {
				layer.Until = now.Add(time.Duration(r.IntN(21*24)) * time.Hour)
			}
			sc.Layers = append(sc.Layers, layer)
		}
		if !sc.Union && r.IntN(2) == 0 {
			var fixed []Span
			t := now
			for range r.IntN(4) {
				t = t.Add(time.Duration(r.IntN(5*24)) * time.Hour)
				end := t.Add(time.Duration(1+r.IntN(30)) * time.Hour)
				fixed = append(fixed, Span{Person: people[r.IntN(len(people))], Start: t, End: end})
				t = end
			}
			sc.Layers = append(sc.Layers, &Layer{Kind: "override", Fixed: fixed})
		}
		m.Schedules = append(m.Schedules, sc)
		m.Policies = append(m.Policies, &Policy{Key: sc.Key, Name: sc.Name, Steps: []Step{{Schedules: []string{sc.Key}, Wait: 5 * time.Minute}}})
	}
	return m
}

// Within the written weeks, the rota has exactly the people the model has
// on call at every quarter hour (every time in the random models falls on
// one, so this sees every change), except where the model has nobody (a rotation
// cannot say so) or more people than the schedule has rotations — the two
// gaps the report lists. Random models, fixed seeds.
func TestRotaFollowsTheModel(t *testing.T) {
	now := time.Date(2026, 10, 20, 12, 0, 0, 0, time.UTC)
	for seed := range uint64(40) {
		r := rand.New(rand.NewPCG(seed, 7))
		m := randomModel(r, now)
		res, err := Build(m, Options{Now: now, Weeks: 2})
		if err != nil {
			t.Fatalf("seed %d: %v", seed, err)
		}
		for _, s := range m.Schedules {
			tracks := res.Tracks[s.Key]
			for at := now.Truncate(time.Minute); at.Before(now.AddDate(0, 0, 14)); at = at.Add(15 * time.Minute) {
				want := res.ids(s.OnCall(at))
				if len(want) == 0 || len(want) > len(tracks) {
					continue
				}
				var got []string
				for _, id := range tracks {
					if p := rota.OnCall(res.Rota.Rotations[id], at); p != "" {
						got = append(got, p)
					}
				}
				slices.Sort(got)
				got = slices.Compact(got)
				if !slices.Equal(want, got) {
					t.Fatalf("seed %d: schedule %s at %s (%s): model has %v, rota has %v\n%s", seed, s.Name, at.In(m.Location), at.In(s.Location), want, got, res.YAML)
				}
			}
		}
	}
}
