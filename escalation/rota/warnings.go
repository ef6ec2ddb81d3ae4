package rota

import (
	"fmt"
	"slices"
	"time"

	"github.com/klaxon-oncall/klaxon/notifiers"
)

var contactWords = map[notifiers.Channel]string{
	notifiers.Matrix:    "Matrix id",
	notifiers.PagerDuty: "PagerDuty user",
	notifiers.Phone:     "phone number",
	notifiers.SMS:       "phone number (for sms)",
}

// staticWarnings finds problems that do not depend on the date: people a
// policy would page on a channel they have no address for, people with no
// address at all, rotations no policy uses.
func (b *builder) staticWarnings() {
	r := b.r
	type key struct {
		person string
		ch     notifiers.Channel
	}
	warned := map[key]bool{}
	for _, ref := range b.stepRefs {
		for _, t := range ref.step.Targets {
			for _, id := range r.possiblePeople(t) {
				p := r.People[id]
				for _, ch := range ref.step.Channels {
					if p.Contact(ch) != "" || warned[key{id, ch}] {
						continue
					}
					warned[key{id, ch}] = true
					b.warnf(b.personNode[id], join("people", id), "%s has no %s, but policy %q %s pages %s by %s",
						id, contactWords[ch], ref.policy, ref.path[len("policies."+ref.policy+"."):], t, ch)
				}
			}
		}
	}
	for _, id := range r.PersonIDs() {
		p := r.People[id]
		if p.Phone == "" && p.MatrixID == "" && p.PagerDutyUser == "" {
			b.warnf(b.personNode[id], join("people", id), "%s has no phone, matrix or pagerduty: they cannot be paged", id)
		}
	}
	for _, id := range r.RotationIDs() {
		if !b.rotationUsed[id] {
			b.warnf(b.rotationNode[id], join("rotations", id), "rotation %q is not used by any policy", id)
		}
	}
}

// possiblePeople returns everyone a target can name at some time: a person,
// or a rotation's members and the people its overrides bring in.
func (r *Rota) possiblePeople(t Target) []string {
	if t.Person != "" {
		return []string{t.Person}
	}
	rot := r.Rotations[t.Rotation]
	if rot == nil {
		return nil
	}
	out := slices.Clone(rot.Members)
	for _, o := range rot.Overrides {
		if !slices.Contains(out, o.Person) {
			out = append(out, o.Person)
		}
	}
	return out
}

// Gaps warns about windows within [from, to) where a rotation has nobody on
// call, which today happens before a rotation's start date.
func (r *Rota) Gaps(from, to time.Time) []Warning {
	var out []Warning
	for _, id := range r.RotationIDs() {
		rot := r.Rotations[id]
		if rot.Start.After(from) && from.Before(to) {
			end := minTime(rot.Start, to)
			out = append(out, Warning{
				Position: Position{File: r.Source, Line: rot.line, Column: rot.col, Path: join("rotations", id)},
				Msg: fmt.Sprintf("coverage gap: nobody is on call for %q from %s until %s (the rotation starts %s)",
					id, from.In(r.Location).Format(timeFmt), end.In(r.Location).Format(timeFmt), rot.Start.In(r.Location).Format(timeFmt)),
			})
		}
	}
	return out
}

const timeFmt = "Mon 2006-01-02 15:04 MST"
