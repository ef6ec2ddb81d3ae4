package rota

import (
	"fmt"
	"math/rand/v2"
	"testing"
	"time"
)

func mustLoc(t testing.TB, name string) *time.Location {
	t.Helper()
	loc, err := time.LoadLocation(name)
	if err != nil {
		t.Fatal(err)
	}
	return loc
}

// newRot builds a rotation whose first shift starts at the wall-clock time
// start (read in loc; only its fields matter).
func newRot(loc *time.Location, start time.Time, shift time.Duration, members ...string) *Rotation {
	c := civil{time.Date(start.Year(), start.Month(), start.Day(), start.Hour(), start.Minute(), 0, 0, time.UTC)}
	return &Rotation{ID: "r", Members: members, Shift: shift, Location: loc, start: c, Start: c.instant(loc)}
}

func utc(s string) time.Time {
	t, err := time.Parse("2006-01-02 15:04", s)
	if err != nil {
		panic(err)
	}
	return t
}

func TestCivilInstant(t *testing.T) {
	tests := []struct {
		zone, wall string
		want       string // UTC
	}{
		{"Europe/London", "2026-03-29 00:30", "2026-03-29 00:30"},
		{"Europe/London", "2026-03-29 01:00", "2026-03-29 01:00"}, // skipped: the moment of the change
		{"Europe/London", "2026-03-29 01:30", "2026-03-29 01:00"}, // skipped
		{"Europe/London", "2026-03-29 02:00", "2026-03-29 01:00"}, // first reading after the jump
		{"Europe/London", "2026-03-29 02:30", "2026-03-29 01:30"},
		{"Europe/London", "2026-10-25 01:30", "2026-10-25 00:30"}, // repeated: the first time
		{"Europe/London", "2026-10-25 02:00", "2026-10-25 02:00"},
		{"Europe/Berlin", "2026-03-29 02:30", "2026-03-29 01:00"},
		{"Europe/Berlin", "2026-10-25 02:30", "2026-10-25 00:30"},
		{"America/New_York", "2026-03-08 02:30", "2026-03-08 07:00"},
		{"America/New_York", "2026-11-01 01:30", "2026-11-01 05:30"},
		{"America/New_York", "2026-07-01 09:00", "2026-07-01 13:00"},
		{"Australia/Lord_Howe", "2026-10-04 02:15", "2026-10-03 15:30"}, // 30-minute jump at 02:00
		{"UTC", "2026-03-29 01:30", "2026-03-29 01:30"},
		{"Pacific/Apia", "2011-12-30 12:00", "2011-12-30 10:00"}, // a whole day skipped: 30 Dec 2011 never happened
	}
	for _, tt := range tests {
		t.Run(tt.zone+" "+tt.wall, func(t *testing.T) {
			got := civil{utc(tt.wall)}.instant(mustLoc(t, tt.zone)).UTC()
			if want := utc(tt.want); !got.Equal(want) {
				t.Errorf("instant(%s in %s) = %s, want %s", tt.wall, tt.zone, got.Format("2006-01-02 15:04"), tt.want)
			}
		})
	}
}

// TestShiftsAcrossDST checks handoffs stay at local wall-clock time and shift
// lengths stretch or shrink with the 23- and 25-hour days.
func TestShiftsAcrossDST(t *testing.T) {
	week := 7 * 24 * time.Hour
	tests := []struct {
		name           string
		zone           string
		start          string // local wall clock of the first handoff
		shift          time.Duration
		from, to       string // UTC window
		wantStartsUTC  []string
		wantHoursShift []float64
	}{
		{"London spring 7d", "Europe/London", "2026-03-23 09:00", week, "2026-03-23 09:00", "2026-04-06 08:00",
			[]string{"2026-03-23 09:00", "2026-03-30 08:00"}, []float64{167, 168}},
		{"London autumn 7d", "Europe/London", "2026-10-19 09:00", week, "2026-10-19 08:00", "2026-11-02 09:00",
			[]string{"2026-10-19 08:00", "2026-10-26 09:00"}, []float64{169, 168}},
		{"Berlin spring 7d", "Europe/Berlin", "2026-03-23 09:00", week, "2026-03-23 08:00", "2026-04-06 07:00",
			[]string{"2026-03-23 08:00", "2026-03-30 07:00"}, []float64{167, 168}},
		{"Berlin autumn 7d", "Europe/Berlin", "2026-10-19 09:00", week, "2026-10-19 07:00", "2026-11-02 08:00",
			[]string{"2026-10-19 07:00", "2026-10-26 08:00"}, []float64{169, 168}},
		{"New York spring 7d", "America/New_York", "2026-03-02 09:00", week, "2026-03-02 14:00", "2026-03-16 13:00",
			[]string{"2026-03-02 14:00", "2026-03-09 13:00"}, []float64{167, 168}},
		{"New York autumn 7d", "America/New_York", "2026-10-26 09:00", week, "2026-10-26 13:00", "2026-11-09 14:00",
			[]string{"2026-10-26 13:00", "2026-11-02 14:00"}, []float64{169, 168}},
		{"London spring 12h", "Europe/London", "2026-03-28 09:00", 12 * time.Hour, "2026-03-28 09:00", "2026-03-29 20:00",
			[]string{"2026-03-28 09:00", "2026-03-28 21:00", "2026-03-29 08:00"}, []float64{12, 11, 12}},
		{"London autumn 12h", "Europe/London", "2026-10-24 09:00", 12 * time.Hour, "2026-10-24 08:00", "2026-10-25 21:00",
			[]string{"2026-10-24 08:00", "2026-10-24 20:00", "2026-10-25 09:00"}, []float64{12, 13, 12}},
		{"New York spring 12h", "America/New_York", "2026-03-07 09:00", 12 * time.Hour, "2026-03-07 14:00", "2026-03-09 01:00",
			[]string{"2026-03-07 14:00", "2026-03-08 02:00", "2026-03-08 13:00"}, []float64{12, 11, 12}},
		{"New York autumn 12h", "America/New_York", "2026-10-31 09:00", 12 * time.Hour, "2026-10-31 13:00", "2026-11-02 02:00",
			[]string{"2026-10-31 13:00", "2026-11-01 01:00", "2026-11-01 14:00"}, []float64{12, 13, 12}},
		{"New York daily 02:30 handoff in the gap", "America/New_York", "2026-03-06 02:30", 24 * time.Hour, "2026-03-07 07:30", "2026-03-09 06:30",
			[]string{"2026-03-07 07:30", "2026-03-08 07:00"}, []float64{23.5, 23.5}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			loc := mustLoc(t, tt.zone)
			rot := newRot(loc, utc(tt.start), tt.shift, "a", "b", "c")
			got := Shifts(rot, utc(tt.from), utc(tt.to))
			if len(got) != len(tt.wantStartsUTC) {
				t.Fatalf("got %d shifts %v, want %d", len(got), got, len(tt.wantStartsUTC))
			}
			for i, s := range got {
				if want := utc(tt.wantStartsUTC[i]); !s.Start.Equal(want) {
					t.Errorf("shift %d starts %s UTC, want %s", i, s.Start.UTC().Format("2006-01-02 15:04"), tt.wantStartsUTC[i])
				}
				if h := s.End.Sub(s.Start).Hours(); h != tt.wantHoursShift[i] {
					t.Errorf("shift %d lasts %vh, want %vh", i, h, tt.wantHoursShift[i])
				}
				if i > 0 && !got[i-1].End.Equal(s.Start) {
					t.Errorf("shift %d does not start when shift %d ends", i, i-1)
				}
				wall := s.Start.In(loc).Format("15:04")
				if want := utc(tt.start).Format("15:04"); tt.shift%(24*time.Hour) == 0 && tt.name[len(tt.name)-3:] != "gap" && wall != want {
					t.Errorf("shift %d hands over at %s local, want %s", i, wall, want)
				}
				// OnCall agrees at the edges.
				if p := OnCall(rot, s.Start); p != s.Person {
					t.Errorf("OnCall at start of shift %d = %q, want %q", i, p, s.Person)
				}
				if p := OnCall(rot, s.End.Add(-time.Nanosecond)); p != s.Person {
					t.Errorf("OnCall just before end of shift %d = %q, want %q", i, p, s.Person)
				}
			}
		})
	}
}

func TestOnCallBeforeStartAndEmpty(t *testing.T) {
	loc := mustLoc(t, "Europe/London")
	rot := newRot(loc, utc("2026-03-23 09:00"), 7*24*time.Hour, "a", "b")
	tests := []struct {
		at   string
		want string
	}{
		{"2026-03-23 08:59", ""},
		{"2026-03-23 09:00", "a"},
		{"2026-03-30 07:59", "a"},
		{"2026-03-30 08:00", "b"},
		{"2026-04-06 08:00", "a"},
		{"2126-04-06 08:00", "b"}, // a century on: 5479 weeks after the start, odd
	}
	for _, tt := range tests {
		if got := OnCall(rot, utc(tt.at)); got != tt.want {
			t.Errorf("OnCall(%s) = %q, want %q", tt.at, got, tt.want)
		}
	}
	if got := OnCall(&Rotation{Shift: time.Hour, Location: loc}, utc("2026-01-01 00:00")); got != "" {
		t.Errorf("OnCall with no members = %q", got)
	}
	if got := OnCall(nil, utc("2026-01-01 00:00")); got != "" {
		t.Errorf("OnCall(nil) = %q", got)
	}
	if got := Shifts(rot, utc("2026-03-01 00:00"), utc("2026-03-23 09:00")); len(got) != 0 {
		t.Errorf("Shifts before start = %v", got)
	}
	if got := Shifts(rot, utc("2026-04-01 00:00"), utc("2026-03-01 00:00")); len(got) != 0 {
		t.Errorf("Shifts with to before from = %v", got)
	}
}

func TestOverridesSplitShifts(t *testing.T) {
	loc := mustLoc(t, "Europe/London")
	rot := newRot(loc, utc("2026-06-01 09:00"), 7*24*time.Hour, "a", "b")
	rot.Overrides = []Override{
		{Person: "z", InsteadOf: "a", Start: utc("2026-06-03 08:00"), End: utc("2026-06-10 08:00"), Reason: "holiday"}, // runs into b's week: no effect there
		{Person: "b", Start: utc("2026-06-12 08:00"), End: utc("2026-06-12 20:00")},                                    // b covers their own shift
		{Person: "a", InsteadOf: "b", Start: utc("2026-06-13 08:00"), End: utc("2026-06-14 08:00"), Reason: "swap"},
	}
	got := Shifts(rot, utc("2026-06-01 08:00"), utc("2026-06-15 08:00"))
	type row struct{ p, s, e, sched string }
	want := []row{
		{"a", "2026-06-01 08:00", "2026-06-03 08:00", ""},
		{"z", "2026-06-03 08:00", "2026-06-08 08:00", "a"},
		{"b", "2026-06-08 08:00", "2026-06-12 08:00", ""},
		{"b", "2026-06-12 08:00", "2026-06-12 20:00", "b"},
		{"b", "2026-06-12 20:00", "2026-06-13 08:00", ""},
		{"a", "2026-06-13 08:00", "2026-06-14 08:00", "b"},
		{"b", "2026-06-14 08:00", "2026-06-15 08:00", ""},
	}
	if len(got) != len(want) {
		t.Fatalf("got %d shifts, want %d: %+v", len(got), len(want), got)
	}
	for i, w := range want {
		s := got[i]
		if s.Person != w.p || !s.Start.Equal(utc(w.s)) || !s.End.Equal(utc(w.e)) || s.Scheduled != w.sched || s.Override != (w.sched != "") {
			t.Errorf("shift %d = %s %s–%s override=%v for %q, want %+v", i, s.Person, s.Start.UTC(), s.End.UTC(), s.Override, s.Scheduled, w)
		}
	}
	if got[1].Reason != "holiday" || got[5].Reason != "swap" {
		t.Errorf("reasons lost: %q %q", got[1].Reason, got[5].Reason)
	}
}

// referenceOnCall is a brute-force model: walk the clock minute by minute; the
// k-th handoff happens once the wall clock has read start+k*shift or later.
func referenceOnCall(rot *Rotation, from time.Time, minutes int) []string {
	out := make([]string, minutes)
	maxWall := civilOf(from.Add(-26*time.Hour), rot.Location).t
	for u := from.Add(-26 * time.Hour); u.Before(from); u = u.Add(time.Minute) {
		if w := civilOf(u, rot.Location).t; w.After(maxWall) {
			maxWall = w
		}
	}
	for i := range minutes {
		u := from.Add(time.Duration(i) * time.Minute)
		if w := civilOf(u, rot.Location).t; w.After(maxWall) {
			maxWall = w
		}
		if maxWall.Before(rot.start.t) {
			continue
		}
		k := int64(maxWall.Sub(rot.start.t) / rot.Shift)
		id := rot.Members[k%int64(len(rot.Members))]
		for _, o := range rot.Overrides {
			if !u.Before(o.Start) && u.Before(o.End) && (o.InsteadOf == "" || o.InsteadOf == id) {
				id = o.Person
				break
			}
		}
		out[i] = id
	}
	return out
}

func TestOnCallMatchesMinuteReference(t *testing.T) {
	zones := []string{"Europe/London", "Europe/Berlin", "America/New_York", "Australia/Lord_Howe", "Pacific/Chatham", "Asia/Kolkata", "UTC"}
	// Instants near daylight-saving changes in 2026 (UTC).
	transitions := []string{"2026-03-29 01:00", "2026-10-25 01:00", "2026-03-08 07:00", "2026-11-01 06:00", "2026-04-04 15:00", "2026-10-03 15:30", "2026-04-05 13:45", "2026-09-26 14:00"}
	shifts := []time.Duration{time.Hour, 2 * time.Hour, 5 * time.Hour, 12 * time.Hour, 24 * time.Hour, 72 * time.Hour, 168 * time.Hour}
	members := []string{"a", "b", "c", "d", "e"}
	cases := 40
	if testing.Short() {
		cases = 8
	}
	for seed := range uint64(cases) {
		rng := rand.New(rand.NewPCG(seed, 42))
		loc := mustLoc(t, zones[rng.IntN(len(zones))])
		center := utc(transitions[rng.IntN(len(transitions))])
		from := center.Add(-time.Duration(rng.IntN(3*24*60)) * time.Minute)
		const minutes = 4 * 24 * 60
		startWall := civilOf(from.Add(time.Duration(rng.IntN(30*24)-27*24)*time.Hour), loc).t
		startWall = time.Date(startWall.Year(), startWall.Month(), startWall.Day(), rng.IntN(24), rng.IntN(4)*15, 0, 0, time.UTC)
		rot := newRot(loc, startWall, shifts[rng.IntN(len(shifts))], members[:1+rng.IntN(len(members))]...)
		// Up to three non-overlapping overrides inside the window.
		cur := from
		for range rng.IntN(4) {
			s := cur.Add(time.Duration(rng.IntN(24*60)) * time.Minute)
			e := s.Add(time.Duration(1+rng.IntN(36*60)) * time.Minute)
			o := Override{Person: "zed", Start: s, End: e}
			if rng.IntN(2) == 0 {
				o.InsteadOf = rot.Members[rng.IntN(len(rot.Members))]
			}
			rot.Overrides = append(rot.Overrides, o)
			cur = e
		}
		t.Run(fmt.Sprintf("seed%d_%s_%s", seed, loc, rot.Shift), func(t *testing.T) {
			ref := referenceOnCall(rot, from, minutes)
			shifts := Shifts(rot, from, from.Add(minutes*time.Minute))
			j := 0
			for i, want := range ref {
				u := from.Add(time.Duration(i) * time.Minute)
				if got := OnCall(rot, u); got != want {
					t.Fatalf("OnCall(%s = %s local) = %q, reference %q (start %s, shift %s)",
						u.UTC().Format(time.RFC3339), u.In(loc).Format("2006-01-02 15:04 MST"), got, want, rot.Start.UTC(), rot.Shift)
				}
				for j < len(shifts) && !shifts[j].End.After(u) {
					j++
				}
				inShift := j < len(shifts) && !shifts[j].Start.After(u)
				switch {
				case want == "" && inShift:
					t.Fatalf("Shifts has %q on call at %s, reference nobody", shifts[j].Person, u.UTC())
				case want != "" && (!inShift || shifts[j].Person != want):
					t.Fatalf("Shifts disagrees with reference %q at %s: %+v", want, u.UTC(), shifts)
				}
			}
		})
	}
}

func TestCurrentExtendsOverSamePerson(t *testing.T) {
	loc := mustLoc(t, "UTC")
	rot := newRot(loc, utc("2026-01-05 09:00"), 7*24*time.Hour, "solo")
	s, ok := Current(rot, utc("2026-02-01 00:00"), 60*24*time.Hour)
	if !ok || s.Person != "solo" || s.End.Sub(utc("2026-02-01 00:00")) < 60*24*time.Hour {
		t.Errorf("Current = %+v, %v; want solo for at least 60 days", s, ok)
	}
	if _, ok := Current(rot, utc("2026-01-01 00:00"), time.Hour); ok {
		t.Error("Current before the start reported someone")
	}
}
