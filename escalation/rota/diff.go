package rota

import (
	"slices"
	"time"
)

// Change is a span of time in which a rotation's on-call person differs
// between two versions of the rota. Old or New is "" when nobody is on call in
// that version (or the rotation does not exist in it).
type Change struct {
	Rotation   string
	Start, End time.Time
	Old, New   string
	// OldReason and NewReason carry the override reasons, if any.
	OldReason, NewReason string
}

// Diff returns the spans within [from, to) where a rotation's on-call person
// differs between old and new, by rotation id and then time. Spans are
// clipped to [from, to).
func Diff(old, new *Rota, from, to time.Time) []Change {
	ids := map[string]bool{}
	for id := range old.Rotations {
		ids[id] = true
	}
	for id := range new.Rotations {
		ids[id] = true
	}
	var out []Change
	for _, id := range sortedKeys(ids) {
		a := Shifts(old.Rotations[id], from, to)
		b := Shifts(new.Rotations[id], from, to)
		cuts := []time.Time{from, to}
		for _, list := range [][]Shift{a, b} {
			for _, s := range list {
				for _, t := range []time.Time{s.Start, s.End} {
					if t.After(from) && t.Before(to) {
						cuts = append(cuts, t)
					}
				}
			}
		}
		slices.SortFunc(cuts, time.Time.Compare)
		cuts = slices.CompactFunc(cuts, time.Time.Equal)
		for i := 0; i+1 < len(cuts); i++ {
			sa, sb := shiftAt(a, cuts[i]), shiftAt(b, cuts[i])
			if sa.Person == sb.Person {
				continue
			}
			c := Change{Rotation: id, Start: cuts[i], End: cuts[i+1], Old: sa.Person, New: sb.Person, OldReason: sa.Reason, NewReason: sb.Reason}
			if n := len(out); n > 0 {
				p := &out[n-1]
				if p.Rotation == c.Rotation && p.End.Equal(c.Start) && p.Old == c.Old && p.New == c.New &&
					p.OldReason == c.OldReason && p.NewReason == c.NewReason {
					p.End = c.End
					continue
				}
			}
			out = append(out, c)
		}
	}
	return out
}

// shiftAt returns the shift in list (sorted, disjoint) running at t, or a zero Shift.
func shiftAt(list []Shift, t time.Time) Shift {
	i, _ := slices.BinarySearchFunc(list, t, func(s Shift, t time.Time) int {
		if !s.End.After(t) {
			return -1
		}
		if s.Start.After(t) {
			return 1
		}
		return 0
	})
	if i < len(list) && !list[i].Start.After(t) && list[i].End.After(t) {
		return list[i]
	}
	return Shift{}
}
