package notices

import (
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/klaxon-oncall/klaxon/escalation/rota"
)

// ChangeNotices returns one message per person whose shifts between from and
// to differ between old and new, computed with rota.Diff (what `klaxon rota
// diff` shows), each in that person's words and time zone:
//
//	Rota change: From Mon 2 Mar 09:00 to Mon 9 Mar 09:00 you are on call for primary, instead of Bob Baker (swap with Bob).
//
// and to Bob "... you are no longer on call for primary: Carol Chen is (swap
// with Bob)". People are in id order; ids and times are left to the caller.
func ChangeNotices(old, new *rota.Rota, from, to time.Time) []Message {
	lines := map[string][]string{}
	for _, c := range rota.Diff(old, new, from, to) {
		reason := ""
		switch {
		case c.NewReason != "":
			reason = " (" + c.NewReason + ")"
		case c.OldReason != "":
			reason = " (was: " + c.OldReason + ")"
		}
		if p := person(new, old, c.New); p != nil {
			lines[c.New] = append(lines[c.New], fmt.Sprintf("From %s to %s you are on call for %s, instead of %s%s",
				when(new, p, c.Start), when(new, p, c.End), c.Rotation, display(old, new, c.Old), reason))
		}
		if p := person(new, old, c.Old); p != nil {
			lines[c.Old] = append(lines[c.Old], fmt.Sprintf("From %s to %s you are no longer on call for %s: %s is%s",
				when(new, p, c.Start), when(new, p, c.End), c.Rotation, display(new, old, c.New), reason))
		}
	}
	var out []Message
	for _, id := range slices.Sorted(maps.Keys(lines)) {
		p := person(new, old, id)
		out = append(out, Message{Kind: KindChange, Recipient: p.Recipient(), Text: "Rota change: " + strings.Join(lines[id], "; ") + "."})
	}
	return out
}

// person finds id in the new rota, else the old (someone removed from the
// rota still hears that their shifts went away).
func person(new, old *rota.Rota, id string) *rota.Person {
	if id == "" {
		return nil
	}
	if p := new.People[id]; p != nil {
		return p
	}
	return old.People[id]
}

// display names person id as the rota does, or "nobody".
func display(a, b *rota.Rota, id string) string {
	if id == "" {
		return "nobody"
	}
	if p := person(a, b, id); p != nil {
		return p.Name
	}
	return id
}

// zone is where p reads times: their own zone, else the rota's.
func zone(r *rota.Rota, p *rota.Person) *time.Location {
	if p.Location != nil {
		return p.Location
	}
	return r.Location
}

// when renders t for p: "Mon 2 Mar 09:00", with the zone's abbreviation
// when p lives in another zone than the rota.
func when(r *rota.Rota, p *rota.Person, t time.Time) string {
	loc := zone(r, p)
	if loc.String() != r.Location.String() {
		return t.In(loc).Format("Mon 2 Jan 15:04 MST")
	}
	return t.In(loc).Format("Mon 2 Jan 15:04")
}

// ReminderText: "You are on call for primary from 09:00 until Mon 9 Mar
// 09:00; open incidents: 2." The start is a time of day when it is the same
// day as now for the person.
func ReminderText(r *rota.Rota, p *rota.Person, s rota.Shift, now time.Time, open int) string {
	loc := zone(r, p)
	start := when(r, p, s.Start)
	if sameDay(s.Start.In(loc), now.In(loc)) {
		start = s.Start.In(loc).Format("15:04")
		if loc.String() != r.Location.String() {
			start = s.Start.In(loc).Format("15:04 MST")
		}
	}
	text := fmt.Sprintf("You are on call for %s from %s until %s", s.Rotation, start, when(r, p, s.End))
	if s.Override && s.Reason != "" {
		text += " (" + s.Reason + ")"
	}
	return text + openIncidents(open) + "."
}

// HandoffText is the outgoing person's one-line summary: "Your primary shift
// ended at Mon 9 Mar 09:00; Alice Archer is on call now; open incidents: 0."
func HandoffText(r *rota.Rota, p *rota.Person, rot *rota.Rotation, s rota.Shift, open int) string {
	next := "nobody"
	if id := rota.OnCall(rot, s.End); id != "" {
		next = display(r, r, id)
	}
	return fmt.Sprintf("Your %s shift ended at %s; %s is on call now%s.", s.Rotation, when(r, p, s.End), next, openIncidents(open))
}

func sameDay(a, b time.Time) bool {
	y, m, d := a.Date()
	y2, m2, d2 := b.Date()
	return y == y2 && m == m2 && d == d2
}

func openIncidents(n int) string {
	if n < 0 {
		return ""
	}
	return fmt.Sprintf("; open incidents: %d", n)
}
