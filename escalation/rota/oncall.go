package rota

import (
	"time"
)

// civil is a wall-clock reading (date and time of day without a zone), kept as
// a time.Time in UTC so that adding hours is plain calendar arithmetic.
type civil struct{ t time.Time }

func civilOf(t time.Time, loc *time.Location) civil {
	w := t.In(loc)
	return civil{time.Date(w.Year(), w.Month(), w.Day(), w.Hour(), w.Minute(), w.Second(), w.Nanosecond(), time.UTC)}
}

// instant returns the first instant at which a clock in loc reads c or later.
//
// For a reading that exists once this is simply that instant. For a reading
// that exists twice (clocks go back) it is the earlier one. For a reading
// skipped when clocks go forward it is the moment of the change: a 02:30
// handoff on a night that jumps from 02:00 to 03:00 happens at 03:00.
func (c civil) instant(loc *time.Location) time.Time {
	naive := c.t
	// No zone is more than 14 hours from UTC: the answer lies in this window.
	u := naive.Add(-15 * time.Hour).In(loc)
	hi := naive.Add(15 * time.Hour)
	for range 64 {
		start, end := u.ZoneBounds()
		_, off := u.Zone()
		// In a stretch of constant offset the clock reads u+off, so the first
		// reading >= c is at c-off, or at the stretch's start if that is later.
		cand := naive.Add(-time.Duration(off) * time.Second)
		if !start.IsZero() && cand.Before(start) {
			cand = start
		}
		if end.IsZero() || cand.Before(end) {
			return cand.In(loc)
		}
		if end.After(hi) {
			break
		}
		u = end.In(loc)
	}
	return time.Date(naive.Year(), naive.Month(), naive.Day(), naive.Hour(), naive.Minute(), naive.Second(), naive.Nanosecond(), loc)
}

// handoff returns the instant shift k of rot starts (k may be negative).
func (rot *Rotation) handoff(k int64) time.Time {
	// In seconds rather than a Duration, which overflows after 292 years.
	secs := rot.start.t.Unix() + k*int64(rot.Shift/time.Second)
	return civil{time.Unix(secs, 0).UTC()}.instant(rot.Location)
}

// shiftIndex returns the number of the shift running at t: the largest k with
// handoff(k) <= t. It is negative before the rotation starts.
func (rot *Rotation) shiftIndex(t time.Time) int64 {
	c := civilOf(t, rot.Location)
	secs := c.t.Unix() - rot.start.t.Unix()
	per := int64(rot.Shift / time.Second)
	k := secs / per
	if secs%per != 0 && secs < 0 {
		k--
	}
	// The estimate from the wall clock is off by a little around clock changes
	// (a fold repeats readings, a gap skips them); handoffs are monotonic.
	for range 10000 {
		if rot.handoff(k + 1).After(t) {
			break
		}
		k++
	}
	for range 10000 {
		if !rot.handoff(k).After(t) {
			break
		}
		k--
	}
	return k
}

func (rot *Rotation) member(k int64) string {
	n := int64(len(rot.Members))
	return rot.Members[((k%n)+n)%n]
}

// OnCall returns the id of the person on call for rot at t, overrides applied,
// or "" when nobody is (before the rotation's start, or no members).
func OnCall(rot *Rotation, t time.Time) string {
	if rot == nil || len(rot.Members) == 0 || rot.Shift <= 0 {
		return ""
	}
	k := rot.shiftIndex(t)
	if k < 0 {
		return ""
	}
	id := rot.member(k)
	for i := range rot.Overrides {
		if o := &rot.Overrides[i]; o.applies(id, t) {
			return o.Person
		}
	}
	return id
}

// Shifts returns the shifts of rot that overlap [from, to), overrides applied,
// in time order. Shifts keep their real bounds (the first may start before
// from, the last end after to); adjacent spans of the same person for the same
// reason are merged. Nothing is returned before the rotation starts.
func Shifts(rot *Rotation, from, to time.Time) []Shift {
	if rot == nil || len(rot.Members) == 0 || rot.Shift <= 0 || !from.Before(to) {
		return nil
	}
	k := rot.shiftIndex(from)
	if k < 0 {
		k = 0
	}
	var out []Shift
	add := func(s Shift) {
		if !s.Start.Before(s.End) || !s.End.After(from) || !s.Start.Before(to) {
			return
		}
		if n := len(out); n > 0 {
			p := &out[n-1]
			if p.End.Equal(s.Start) && p.Person == s.Person && p.Override == s.Override &&
				p.Scheduled == s.Scheduled && p.Reason == s.Reason {
				p.End = s.End
				return
			}
		}
		out = append(out, s)
	}
	for start := rot.handoff(k); start.Before(to); k++ {
		end := rot.handoff(k + 1)
		if start.Before(end) {
			rot.split(rot.member(k), start, end, add)
		}
		start = end
	}
	return out
}

// split emits the pieces of the scheduled shift [s, e) of id, overrides applied.
func (rot *Rotation) split(id string, s, e time.Time, emit func(Shift)) {
	cur := s
	for i := range rot.Overrides {
		o := &rot.Overrides[i]
		if !o.End.After(cur) || !o.Start.Before(e) || (o.InsteadOf != "" && o.InsteadOf != id) {
			continue
		}
		if o.Start.After(cur) {
			emit(Shift{Rotation: rot.ID, Person: id, Start: cur, End: o.Start})
			cur = o.Start
		}
		end := minTime(o.End, e)
		emit(Shift{Rotation: rot.ID, Person: o.Person, Start: cur, End: end, Override: true, Scheduled: id, Reason: o.Reason})
		cur = end
	}
	if cur.Before(e) {
		emit(Shift{Rotation: rot.ID, Person: id, Start: cur, End: e})
	}
}

// Current returns the shift running at t, extended over following shifts of
// the same person (a one-member rotation is one long shift), looking at most
// horizon ahead. ok is false when nobody is on call at t.
func Current(rot *Rotation, t time.Time, horizon time.Duration) (s Shift, ok bool) {
	cur := Shifts(rot, t, t.Add(time.Nanosecond))
	if len(cur) == 0 {
		return Shift{}, false
	}
	s = cur[0]
	limit := t.Add(horizon)
	for s.End.Before(limit) {
		next := Shifts(rot, s.End, s.End.Add(time.Nanosecond))
		if len(next) == 0 || next[0].Person != s.Person || next[0].Override != s.Override || next[0].Reason != s.Reason {
			break
		}
		s.End = next[0].End
	}
	return s, true
}

func minTime(a, b time.Time) time.Time {
	if a.Before(b) {
		return a
	}
	return b
}
