package selftest

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/klaxon-oncall/klaxon/escalation/rota"
	"github.com/klaxon-oncall/klaxon/notifiers"
)

// RotaCoverage lists the people on call in r between from and from+horizon
// who cannot be paged: no configured channel is both up and has their contact
// (a phone number for phone and sms, a Matrix id for matrix, a PagerDuty user
// for pagerduty). Each problem names the person, their first shift in the
// window and why each channel fails them. nil means everyone is reachable.
func RotaCoverage(r *rota.Rota, from time.Time, horizon time.Duration, configured []notifiers.Channel, up func(notifiers.Channel) bool) []string {
	return PeopleCoverage(r, from, horizon, configured, up, nil)
}

// PeopleCoverage is RotaCoverage that also counts each person's own delivery
// problems: problem(person, channel) says why their last page on that
// channel failed for them alone (an invalid number, a STOP), or "".
func PeopleCoverage(r *rota.Rota, from time.Time, horizon time.Duration, configured []notifiers.Channel, up func(notifiers.Channel) bool, problem func(person string, ch notifiers.Channel) string) []string {
	if r == nil {
		return []string{"no rota is loaded"}
	}
	to := from.Add(horizon)
	loc := r.Location
	if loc == nil {
		loc = time.UTC
	}
	chs := sortChannels(append([]notifiers.Channel(nil), configured...))
	checked := map[string]bool{}
	var out []string
	for _, id := range r.RotationIDs() {
		for _, s := range rota.Shifts(r.Rotations[id], from, to) {
			if checked[s.Person] {
				continue
			}
			checked[s.Person] = true
			when := fmt.Sprintf("on call for %s from %s", s.Rotation, s.Start.In(loc).Format("Mon 2 Jan 15:04 MST"))
			if !s.Start.After(from) {
				when = fmt.Sprintf("on call for %s now, until %s", s.Rotation, s.End.In(loc).Format("Mon 2 Jan 15:04 MST"))
			}
			p, ok := r.People[s.Person]
			if !ok {
				out = append(out, fmt.Sprintf("%q (%s) is not a person in the rota", s.Person, when))
				continue
			}
			if len(chs) == 0 {
				out = append(out, fmt.Sprintf("%s (%s) cannot be paged: no channel is configured", p.Name, when))
				continue
			}
			var why []string
			reachable := false
			for _, ch := range chs {
				switch {
				case p.Contact(ch) == "":
					why = append(why, fmt.Sprintf("no %s for %s", contactWord(ch), ch))
				case up != nil && !up(ch):
					why = append(why, fmt.Sprintf("%s is down", ch))
				case problem != nil && problem(s.Person, ch) != "":
					why = append(why, fmt.Sprintf("%s failed for them: %s", ch, problem(s.Person, ch)))
				default:
					reachable = true
				}
			}
			if !reachable {
				out = append(out, fmt.Sprintf("%s (%s) cannot be paged: %s", p.Name, when, strings.Join(why, ", ")))
			}
		}
	}
	return out
}

func contactWord(ch notifiers.Channel) string {
	switch ch {
	case notifiers.Matrix:
		return "Matrix id"
	case notifiers.PagerDuty:
		return "PagerDuty user"
	case notifiers.Phone, notifiers.SMS:
		return "phone number"
	}
	return "contact"
}

// CheckCoverage runs the Coverage check now and raises the "coverage" alarm
// when someone on call soon cannot be paged, or clears it when all can.
func (m *Monitor) CheckCoverage(ctx context.Context) []string {
	if m.cfg.Coverage == nil {
		return nil
	}
	problems := m.cfg.Coverage(m.cfg.Clock.Now(), m.Usable)
	title := ""
	if len(problems) > 0 {
		m.log.Error("coverage gap: someone on call soon cannot be paged", "problems", strings.Join(problems, "; "))
		title = fmt.Sprintf("Coverage gap: %d %s on call soon cannot be paged: %s — add a contact to rota.yaml or fix the channel before the shift (klaxon rota check --channels)",
			len(problems), plural(len(problems), "person", "people"), summarize(problems))
	}
	m.setWanted(KeyCoverage, title)
	m.reconcileKeyed(ctx)
	return problems
}

// RotaInvalid raises the "rota" alarm: a reload of the rota file failed (errs
// are its errors, file:line:col) and the last valid rota keeps serving.
// An empty errs means valid (see RotaValid).
func (m *Monitor) RotaInvalid(ctx context.Context, errs []string) {
	if len(errs) == 0 {
		m.RotaValid(ctx)
		return
	}
	one := make([]string, len(errs))
	for i, e := range errs {
		one[i] = oneLine(e)
	}
	m.setWanted(KeyRota, fmt.Sprintf("Rota reload failed: %s — Klaxon keeps paging with the last valid rota; fix the file (klaxon rota check) and it reloads",
		summarize(one)))
	m.reconcileKeyed(ctx)
}

// RotaValid clears the "rota" alarm, if open: the rota file is valid again.
func (m *Monitor) RotaValid(ctx context.Context) {
	m.setWanted(KeyRota, "")
	m.reconcileKeyed(ctx)
}

func plural(n int, one, many string) string {
	if n == 1 {
		return one
	}
	return many
}
