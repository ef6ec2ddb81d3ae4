package rota

import (
	"fmt"
	"io"
	"time"

	ics "github.com/arran4/golang-ical"
)

// ICSOptions selects the shifts of an iCalendar feed.
type ICSOptions struct {
	// Rotation limits the feed to one rotation ("" for all).
	Rotation string
	// Person limits the feed to one person's shifts ("" for everyone).
	Person string
	// From and To bound the shifts included (shifts overlapping the window).
	From, To time.Time
	// Now stamps the events (DTSTAMP).
	Now time.Time
}

// WriteICS writes the selected shifts as an iCalendar (RFC 5545) feed. Each
// shift is one event with a UID stable across reloads for the same rotation,
// person and start, so calendar apps update rather than duplicate. Contact
// details are not included: the feed is meant to be shared.
func WriteICS(w io.Writer, r *Rota, opt ICSOptions) error {
	if opt.Rotation != "" && r.Rotations[opt.Rotation] == nil {
		return fmt.Errorf("unknown rotation %q", opt.Rotation)
	}
	if opt.Person != "" && r.People[opt.Person] == nil {
		return fmt.Errorf("unknown person %q", opt.Person)
	}
	cal := ics.NewCalendarFor("Klaxon")
	cal.SetMethod(ics.MethodPublish)
	name := "On call"
	if opt.Rotation != "" {
		name += " · " + opt.Rotation
	}
	if opt.Person != "" {
		name += " · " + r.People[opt.Person].Name
	}
	cal.SetName(name)
	cal.SetXWRCalName(name)
	cal.SetXWRTimezone(r.Location.String())
	cal.SetRefreshInterval("PT1H")
	cal.SetXPublishedTTL("PT1H")
	for _, id := range r.RotationIDs() {
		if opt.Rotation != "" && id != opt.Rotation {
			continue
		}
		for _, s := range Shifts(r.Rotations[id], opt.From, opt.To) {
			if opt.Person != "" && s.Person != opt.Person {
				continue
			}
			ev := cal.AddEvent(fmt.Sprintf("%s.%s.%d@klaxon", id, s.Person, s.Start.Unix()))
			ev.SetDtStampTime(opt.Now)
			ev.SetStartAt(s.Start)
			ev.SetEndAt(s.End)
			ev.SetSummary(fmt.Sprintf("On call: %s (%s)", id, r.personName(s.Person)))
			desc := fmt.Sprintf("%s is on call for rotation %s.", r.personName(s.Person), id)
			if s.Override {
				desc += fmt.Sprintf(" Covering for %s", r.personName(s.Scheduled))
				if s.Reason != "" {
					desc += ": " + s.Reason
				}
				desc += "."
			}
			ev.SetDescription(desc)
			ev.AddCategory(id)
		}
	}
	return cal.SerializeTo(w)
}

func (r *Rota) personName(id string) string {
	if p := r.People[id]; p != nil {
		return p.Name
	}
	return id
}
