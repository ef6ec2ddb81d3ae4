package importer

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/klaxon-oncall/klaxon/escalation/rota"
)

// Options say how a Model is written.
type Options struct {
	// Now is when the import runs: overrides are written from here.
	Now time.Time
	// Weeks of source overrides and restricted layers written as rota
	// overrides (default 4).
	Weeks int
	// RouteLabel is the alert label routes match on (default "service").
	RouteLabel string
	// Via are the channels every step pages on (default phone, sms).
	Via []string
	// Comment heads the written files (e.g. the command that made them).
	Comment string
}

func (o *Options) defaults() {
	if o.Weeks <= 0 {
		o.Weeks = 4
	}
	if o.RouteLabel == "" {
		o.RouteLabel = "service"
	}
	if len(o.Via) == 0 {
		o.Via = []string{"phone", "sms"}
	}
}

// Result is a Model written as a rota.
type Result struct {
	// YAML is the rota.yaml text; Rota the same parsed by escalation/rota.
	YAML []byte
	Rota *rota.Rota
	// Report lists what the rota does differently from the source.
	Report Report
	// Tracks maps a schedule key to the ids of the rotations that hold it.
	Tracks map[string][]string
	// PersonID maps a person key to the rota's person id.
	PersonID map[string]string
	// PersonKey is the inverse of PersonID.
	PersonKey map[string]string
	model     *Model
	opts      Options
	quiet     bool // the first, rotations-only pass: findings come from the second
	// gaps holds the schedules the report says have nobody on call at
	// times, which a rotation cannot say.
	gaps map[string]bool
	// crowded holds the schedules the report says have more people on call
	// at once than they have rotations.
	crowded map[string]bool
	// answered, while Verify runs, holds the schedules the source answered for.
	answered map[string]bool
}

// track is one rotation a schedule is written into.
type track struct {
	id    string
	sched *Schedule
	base  *Layer // where members, shift and handoff come from; nil: none fits
	group string
}

type override struct {
	who, reason string
	from, to    time.Time
}

// Build writes m as rota.yaml. The result always parses: a rota Build cannot
// write is an error naming why.
func Build(m *Model, opts Options) (*Result, error) {
	opts.defaults()
	if m.Location == nil {
		m.Location = time.UTC
	}
	if len(m.People) == 0 {
		return nil, fmt.Errorf("%s has no users to import", m.Source)
	}
	res := &Result{Tracks: map[string][]string{}, PersonID: map[string]string{}, PersonKey: map[string]string{}, model: m, opts: opts, gaps: map[string]bool{}, crowded: map[string]bool{}}
	res.Report.Findings = append(res.Report.Findings, m.Findings...)

	ids := newNamer()
	for _, p := range m.People {
		base := p.Name
		if p.Email != "" {
			base, _, _ = strings.Cut(p.Email, "@")
		}
		id := ids.take(slug(base, "person"))
		res.PersonID[p.Key] = id
		res.PersonKey[id] = p.Key
	}
	rotIDs := newNamer()
	var tracks []*track
	for _, s := range m.Schedules {
		ts := res.tracksOf(s, rotIDs)
		tracks = append(tracks, ts...)
	}
	// A rotation needs members: a schedule whose people were not imported
	// (deactivated users, say) is left out and reported.
	var kept []*track
	for _, t := range tracks {
		res.quiet = true
		n := len(res.members(t))
		res.quiet = false
		if n > 0 {
			kept = append(kept, t)
			continue
		}
		res.note(fmt.Sprintf("schedule %q", t.sched.Name), "has nobody on call who is among the imported users",
			fmt.Sprintf("no rotation %s", t.id), "steps that page this schedule leave it out")
		res.Tracks[t.sched.Key] = slices.DeleteFunc(res.Tracks[t.sched.Key], func(id string) bool { return id == t.id })
	}
	tracks = kept
	from := opts.Now.Truncate(time.Minute)
	to := from.AddDate(0, 0, 7*opts.Weeks)

	// First the rotations as their base layers give them, parsed by the
	// rota package itself so that handoffs follow its clock rules exactly.
	res.quiet = true
	baseYAML, err := res.render(tracks, nil, nil)
	res.quiet = false
	if err != nil {
		return nil, err
	}
	base, _, err := rota.Parse("rota.yaml", baseYAML)
	if err != nil {
		return nil, fmt.Errorf("importer: the rota written from %s does not parse (a bug): %v\n%s", m.Source, err, baseYAML)
	}
	ovs := res.overrides(tracks, base, from, to)
	pols := res.policies()
	out, err := res.render(tracks, ovs, pols)
	if err != nil {
		return nil, err
	}
	r, _, err := rota.Parse("rota.yaml", out)
	if err != nil {
		return nil, fmt.Errorf("importer: the rota written from %s does not parse (a bug): %v", m.Source, err)
	}
	res.YAML, res.Rota = out, r
	return res, nil
}

// tracksOf decides which rotations hold schedule s.
func (res *Result) tracksOf(s *Schedule, ids *namer) []*track {
	name := slug(s.Name, "schedule")
	var out []*track
	if !s.Union {
		t := &track{sched: s, base: baseLayer(s)}
		t.id = ids.take(name)
		out = append(out, t)
		res.noteLayers(s, t)
	} else {
		seen := map[string]*track{}
		var order []string
		for i, l := range s.Layers {
			if l.Fixed != nil {
				continue
			}
			g := l.Group
			if g == "" {
				g = fmt.Sprintf("#%d", i)
			}
			if seen[g] == nil {
				seen[g] = &track{sched: s, base: l, group: g}
				order = append(order, g)
			}
		}
		for _, g := range order {
			t := seen[g]
			id := name
			if len(order) > 1 {
				id = name + "-" + slug(t.base.Name, "rotation")
			}
			t.id = ids.take(id)
			out = append(out, t)
		}
		if len(out) == 0 {
			t := &track{sched: s}
			t.id = ids.take(name)
			out = append(out, t)
		}
		for _, l := range s.Layers {
			if len(l.Restrictions) > 0 {
				res.note(fmt.Sprintf("schedule %q, %s %q", s.Name, kindOf(l), l.Name),
					fmt.Sprintf("on call only %s", describeWindows(l.Restrictions)),
					fmt.Sprintf("rotation %s has its person on call around the clock; until %s overrides give it someone the schedule has on call outside those hours",
						res.trackOf(out, l).id, res.opts.Now.AddDate(0, 0, 7*res.opts.Weeks).In(res.model.Location).Format("2006-01-02")),
					"after that, and whenever the schedule has nobody, Klaxon pages the rotation's person outside those hours")
			}
		}
	}
	var other []string
	for _, t := range out {
		res.Tracks[s.Key] = append(res.Tracks[s.Key], t.id)
		if t.base != nil {
			z := s.Location
			if t.base.Location != nil {
				z = t.base.Location
			}
			if z.String() != res.model.Location.String() {
				other = append(other, fmt.Sprintf("%s (%s)", t.id, z))
			}
		}
	}
	if len(other) > 0 {
		res.note(fmt.Sprintf("schedule %q", s.Name), "hands off in its own time zone",
			fmt.Sprintf("rotations %s hand off in the rota's time zone %s", strings.Join(other, ", "), res.model.Location),
			"where the two zones change clocks on different dates, handoffs differ by the change: overrides correct that within the written weeks")
	}
	return out
}

func (res *Result) trackOf(ts []*track, l *Layer) *track {
	for _, t := range ts {
		if t.base == l || (l.Group != "" && t.group == l.Group) {
			return t
		}
	}
	return ts[0]
}

func kindOf(l *Layer) string {
	if l.Kind != "" {
		return l.Kind
	}
	return "layer"
}

// baseLayer picks the layer of a stacked schedule that best stands for it
// around the clock: the lowest one without restrictions, fixed spans or an
// end; failing that the lowest rotation.
func baseLayer(s *Schedule) *Layer {
	for _, l := range s.Layers {
		if l.Fixed == nil && len(l.Restrictions) == 0 && l.Until.IsZero() && len(l.Members) > 0 {
			return l
		}
	}
	for _, l := range s.Layers {
		if l.Fixed == nil && len(l.Members) > 0 {
			return l
		}
	}
	return nil
}

// noteLayers reports the layers of a stacked schedule that its one rotation
// can only follow by overrides.
func (res *Result) noteLayers(s *Schedule, t *track) {
	weeks := res.opts.Weeks
	until := res.opts.Now.AddDate(0, 0, 7*weeks).In(res.model.Location).Format("2006-01-02")
	for _, l := range s.Layers {
		if l == t.base {
			if len(l.Restrictions) > 0 || !l.Until.IsZero() {
				res.gaps[s.Key] = true
			}
			if len(l.Restrictions) > 0 {
				res.note(fmt.Sprintf("schedule %q, %s %q", s.Name, kindOf(l), l.Name),
					fmt.Sprintf("on call only %s", describeWindows(l.Restrictions)),
					fmt.Sprintf("rotation %s has this layer's person on call around the clock", t.id),
					"outside those hours the source has nobody on call; Klaxon pages the rotation's person")
			}
			if !l.Until.IsZero() {
				res.note(fmt.Sprintf("schedule %q, %s %q", s.Name, kindOf(l), l.Name),
					"ends "+l.Until.In(s.Location).Format("2006-01-02 15:04"),
					fmt.Sprintf("rotation %s goes on after that", t.id), "the source has nobody from this layer after its end")
			}
			continue
		}
		if l.Fixed != nil {
			continue // overrides: counted when written
		}
		what := "on call around the clock above the layers below"
		if len(l.Restrictions) > 0 {
			what = "on call " + describeWindows(l.Restrictions) + ", above the layers below"
		}
		res.note(fmt.Sprintf("schedule %q, %s %q", s.Name, kindOf(l), l.Name), what,
			fmt.Sprintf("rotation %s follows %s; this layer's shifts are written as overrides until %s (--weeks %d)", t.id, baseName(t), until, weeks),
			fmt.Sprintf("after %s Klaxon has only %s: import again before then, or edit the rota", until, baseName(t)))
	}
	if t.base == nil {
		res.note(fmt.Sprintf("schedule %q", s.Name), "has no rotation layer",
			fmt.Sprintf("rotation %s lists everyone its spans name, a week each; the spans are written as overrides until %s", t.id, until),
			"after that the rotation's weekly turns are made up: edit it")
	}
}

func baseName(t *track) string {
	if t.base == nil {
		return "a made-up weekly rotation"
	}
	return fmt.Sprintf("%s %q", kindOf(t.base), t.base.Name)
}

func (res *Result) note(where, src, nearest, diff string) {
	if res.quiet {
		return
	}
	res.Report.Findings = append(res.Report.Findings, Finding{Where: where, Source: src, Nearest: nearest, Difference: diff})
}

// describeWindows renders restrictions as "Mon 09:00–17:00, Tue 09:00–17:00".
func describeWindows(ws []Window) string {
	var parts []string
	for _, w := range ws {
		start := time.Date(2000, 1, 1, 0, 0, 0, 0, time.UTC).Add(w.Start)
		end := start.Add(w.Length)
		day := "daily"
		if !w.Daily {
			day = w.Weekday.String()[:3]
		}
		span := fmt.Sprintf("%s %s–%s", day, start.Format("15:04"), end.Format("15:04"))
		if w.Length >= 24*time.Hour || end.Day() != start.Day() {
			span = fmt.Sprintf("%s %s for %s", day, start.Format("15:04"), rota.FormatDuration(w.Length))
		}
		parts = append(parts, span)
	}
	return strings.Join(parts, ", ")
}

// members returns the rota members of t: its base layer's members once each,
// or everyone the schedule can have on call.
func (res *Result) members(t *track) []string {
	var keys []string
	if t.base != nil {
		keys = t.base.Members
	} else {
		for _, l := range t.sched.Layers {
			keys = append(keys, l.Members...)
			for _, s := range l.Fixed {
				keys = append(keys, s.Person)
			}
		}
	}
	var out []string
	for _, k := range keys {
		if id := res.PersonID[k]; id != "" && !slices.Contains(out, id) {
			out = append(out, id)
		}
	}
	if t.base != nil && len(out) != len(t.base.Members) {
		res.note(fmt.Sprintf("schedule %q, %s %q", t.sched.Name, kindOf(t.base), t.base.Name),
			"names a person more than once in its turn order",
			fmt.Sprintf("rotation %s names each person once", t.id),
			"the turns differ; overrides follow the source within the written weeks")
	}
	return out
}

// shape returns a track's shift, handoff and start as rota.yaml spells them.
func (res *Result) shape(t *track) (shift, handoff, start string) {
	loc := res.model.Location
	turn, origin := 7*24*time.Hour, res.opts.Now.In(loc).Truncate(24*time.Hour)
	if t.base != nil {
		turn, origin = t.base.Turn, t.base.Origin
	}
	if turn%time.Hour != 0 || turn <= 0 || turn > rota.MaxShift {
		h := max(turn.Round(time.Hour), time.Hour)
		h = min(h, rota.MaxShift)
		res.note(fmt.Sprintf("schedule %q", t.sched.Name),
			fmt.Sprintf("turns last %s", turn), fmt.Sprintf("rotation %s turns every %s (whole hours only)", t.id, rota.FormatDuration(h)),
			"handoffs drift from the source's; overrides follow the source within the written weeks")
		turn = h
	}
	o := origin.In(loc)
	if o.Year() < 1970 {
		// Move the origin forward by whole cycles of the rotation.
		cycle := turn * time.Duration(max(1, len(res.members(t))))
		for o.Year() < 1970 {
			o = o.Add(cycle)
		}
	}
	if o.Second() != 0 || o.Nanosecond() != 0 {
		o = o.Truncate(time.Minute)
	}
	shift = rota.FormatDuration(turn)
	handoff = o.Format("15:04")
	if turn%(7*24*time.Hour) == 0 {
		handoff = strings.ToLower(o.Weekday().String()) + " " + handoff
	}
	return shift, handoff, o.Format("2006-01-02")
}

// overrides compares, minute by minute from from to to, who each track has
// (its base rotation in the rota without overrides) with who the source has,
// and returns the overrides that make them agree, by track id.
func (res *Result) overrides(tracks []*track, base *rota.Rota, from, to time.Time) map[string][]override {
	out := map[string][]override{}
	bySched := map[*Schedule][]*track{}
	var order []*Schedule
	for _, t := range tracks {
		if bySched[t.sched] == nil {
			order = append(order, t.sched)
		}
		bySched[t.sched] = append(bySched[t.sched], t)
	}
	for _, s := range order {
		ts := bySched[s]
		gaps := make([]time.Duration, len(ts))
		firstGap := make([]time.Time, len(ts))
		var crowded time.Duration
		var firstCrowd time.Time
		points := res.instants(s, ts, base, from, to)
		for pi, m := range points {
			next := to
			if pi+1 < len(points) {
				next = points[pi+1]
			}
			span := next.Sub(m)
			want := s.OnCall(m)
			natural := make([]string, len(ts))
			assigned := make([]string, len(ts))
			left := map[string]bool{}
			for _, k := range want {
				if id := res.PersonID[k]; id != "" {
					left[id] = true
				}
			}
			for i, t := range ts {
				natural[i] = rota.OnCall(base.Rotations[t.id], m)
				if left[natural[i]] {
					assigned[i] = natural[i]
					delete(left, natural[i])
				}
			}
			for _, id := range slices.Sorted(maps.Keys(left)) {
				i := slices.Index(assigned, "")
				if i < 0 {
					if crowded == 0 {
						firstCrowd = m
					}
					crowded += span
					break
				}
				assigned[i] = id
			}
			// A rotation left over would show its own person: while the
			// schedule has anyone on call, let it show one of them instead
			// (a step pages each person once), preferring its own members.
			if len(want) > 0 {
				for i, t := range ts {
					if assigned[i] != "" || left[natural[i]] {
						continue
					}
					if slices.Contains(wantIDs(res, want), natural[i]) {
						assigned[i] = natural[i] // already shows someone on call
						continue
					}
					assigned[i] = res.pick(t, wantIDs(res, want))
				}
			}
			for i, t := range ts {
				switch {
				case assigned[i] == "":
					if natural[i] != "" {
						if gaps[i] == 0 {
							firstGap[i] = m
						}
						gaps[i] += span
					}
				case assigned[i] != natural[i]:
					reason := res.reason(s, res.PersonKey[assigned[i]], m)
					list := out[t.id]
					if n := len(list); n > 0 && list[n-1].to.Equal(m) && list[n-1].who == assigned[i] && list[n-1].reason == reason {
						list[n-1].to = next
					} else {
						list = append(list, override{who: assigned[i], reason: reason, from: m, to: next})
					}
					out[t.id] = list
				}
			}
		}
		loc := res.model.Location
		for i, t := range ts {
			if gaps[i] > 0 {
				res.gaps[s.Key] = true
				res.note(fmt.Sprintf("schedule %q", s.Name),
					fmt.Sprintf("has nobody on call for %s of the next %d weeks (first at %s)", rota.FormatDuration(gaps[i]), res.opts.Weeks, firstGap[i].In(loc).Format("Mon 2006-01-02 15:04 MST")),
					fmt.Sprintf("rotation %s always has someone on call", t.id),
					"Klaxon pages the rotation's person in those hours")
			}
		}
		if crowded > 0 {
			res.crowded[s.Key] = true
			res.note(fmt.Sprintf("schedule %q", s.Name),
				fmt.Sprintf("has more people on call at once than it has rotations for %s of the next %d weeks (first at %s)", rota.FormatDuration(crowded), res.opts.Weeks, firstCrowd.In(loc).Format("Mon 2006-01-02 15:04 MST")),
				"one rotation per person the schedule can have on call at once is written only for its rotations",
				"the extra people are not paged in those hours")
		}
		n := 0
		for _, t := range ts {
			n += len(out[t.id])
		}
		if n > 0 {
			res.Report.Overrides += n
		}
	}
	return out
}

// instants returns, in order, every minute in [from, to) at which who a
// schedule or its tracks' base rotations have on call can change: layer
// bounds, turns, restriction edges, fixed spans, temporary schedules,
// adjustments and the rotations' handoffs. Between two of them nothing
// changes, so they are all that needs comparing.
func (res *Result) instants(s *Schedule, ts []*track, base *rota.Rota, from, to time.Time) []time.Time {
	loc := s.Location
	out := []time.Time{from}
	add := func(ts ...time.Time) {
		for _, t := range ts {
			if t.IsZero() {
				continue
			}
			t = t.Truncate(time.Minute)
			if !t.Before(from) && t.Before(to) {
				out = append(out, t)
			}
		}
	}
	// wall adds the instants at which loc's clock reads w (and an hour
	// either side, for readings a clock change repeats or skips).
	wall := func(w time.Time) {
		t := time.Date(w.Year(), w.Month(), w.Day(), w.Hour(), w.Minute(), w.Second(), 0, loc)
		add(t, t.Add(-time.Hour), t.Add(time.Hour))
	}
	wf, wt := wallClock(from, loc).AddDate(0, 0, -1), wallClock(to, loc).AddDate(0, 0, 1)
	for _, l := range s.Layers {
		add(l.From, l.Until)
		for _, sp := range l.Fixed {
			add(sp.Start, sp.End)
		}
		for _, sp := range l.Cover {
			add(sp.Start, sp.End)
		}
		if l.Fixed == nil && l.Turn > 0 && len(l.Members) > 0 {
			tl := loc
			if l.Location != nil {
				tl = l.Location
			}
			ow, wf, wt := wallClock(l.Origin, tl), wallClock(from, tl).AddDate(0, 0, -1), wallClock(to, tl).AddDate(0, 0, 1)
			k := int64(wf.Sub(ow) / l.Turn)
			for w := ow.Add(time.Duration(k-1) * l.Turn); w.Before(wt); w = w.Add(l.Turn) {
				if !w.Before(wf) {
					t := time.Date(w.Year(), w.Month(), w.Day(), w.Hour(), w.Minute(), w.Second(), 0, tl)
					add(t, t.Add(-time.Hour), t.Add(time.Hour))
				}
			}
		}
		for d := time.Date(wf.Year(), wf.Month(), wf.Day(), 0, 0, 0, 0, time.UTC).AddDate(0, 0, -8); d.Before(wt); d = d.AddDate(0, 0, 1) {
			for _, r := range l.Restrictions {
				if r.Daily || d.Weekday() == r.Weekday {
					wall(d.Add(r.Start))
					wall(d.Add(r.Start + r.Length))
				}
			}
		}
	}
	for _, tmp := range s.Temporary {
		add(tmp.Start, tmp.End)
		for _, sp := range tmp.Shifts {
			add(sp.Start, sp.End)
		}
	}
	for _, a := range s.Adjust {
		add(a.Start, a.End)
	}
	for _, t := range ts {
		for _, sh := range rota.Shifts(base.Rotations[t.id], from, to) {
			add(sh.Start, sh.End)
		}
	}
	slices.SortFunc(out, time.Time.Compare)
	return slices.CompactFunc(out, time.Time.Equal)
}

// wantIDs maps the source's on-call keys to rota ids.
func wantIDs(res *Result, want []string) []string {
	var out []string
	for _, k := range want {
		if id := res.PersonID[k]; id != "" {
			out = append(out, id)
		}
	}
	return out
}

// pick chooses who of ids a leftover track shows: one of its members if any.
func (res *Result) pick(t *track, ids []string) string {
	if len(ids) == 0 {
		return ""
	}
	members := res.members(t)
	for _, id := range ids {
		if slices.Contains(members, id) {
			return id
		}
	}
	return ids[0]
}

// reason says why the source has person on call at t, for an override.
func (res *Result) reason(s *Schedule, person string, t time.Time) string {
	src := res.model.Source
	for _, tmp := range s.Temporary {
		if !t.Before(tmp.Start) && t.Before(tmp.End) {
			return src + " temporary schedule"
		}
	}
	for _, a := range s.Adjust {
		if a.Add == person && !t.Before(a.Start) && t.Before(a.End) {
			return src + " override"
		}
	}
	for i := len(s.Layers) - 1; i >= 0; i-- {
		l := s.Layers[i]
		for _, c := range l.Cover {
			if c.Person == person && !t.Before(c.Start) && t.Before(c.End) {
				return src + " override"
			}
		}
		if p, ok := l.at(t, s.Location); ok && p == person {
			if l.Fixed != nil && l.Name == "" {
				return src + " " + kindOf(l)
			}
			return fmt.Sprintf("%s %s %s", src, kindOf(l), l.Name)
		}
	}
	return src + " schedule"
}

type policyOut struct {
	id, name string
	steps    []stepOut
	repeat   int
}

type stepOut struct {
	targets []string // rendered targets
	wait    time.Duration
}

func (res *Result) policies() []policyOut {
	ids := newNamer()
	var out []policyOut
	for _, p := range res.model.Policies {
		po := policyOut{id: ids.take(slug(p.Name, "policy")), name: p.Name, repeat: min(p.Repeat, rota.MaxRepeat)}
		for i, st := range p.Steps {
			var targets []string
			for _, k := range st.Schedules {
				rots := res.Tracks[k]
				if len(rots) == 0 {
					res.note(fmt.Sprintf("policy %q, step %d", p.Name, i+1), "pages schedule "+k, "the step leaves it out", "that schedule was not imported")
				}
				for _, id := range rots {
					targets = append(targets, "{rotation: "+id+"}")
				}
			}
			for _, k := range st.People {
				if id := res.PersonID[k]; id != "" {
					targets = append(targets, "{person: "+id+"}")
				} else {
					res.note(fmt.Sprintf("policy %q, step %d", p.Name, i+1), "pages user "+k, "the step leaves them out", "that user was not imported")
				}
			}
			if len(targets) == 0 {
				res.note(fmt.Sprintf("policy %q, step %d", p.Name, i+1), "pages nobody Klaxon knows", "the step is left out", "escalation moves on at once instead of waiting")
				continue
			}
			wait := st.Wait
			if wait <= 0 {
				wait = time.Minute
			}
			po.steps = append(po.steps, stepOut{targets: targets, wait: wait})
		}
		if len(po.steps) == 0 {
			res.note(fmt.Sprintf("policy %q", p.Name), "has no step that pages anyone Klaxon knows", "the policy is left out", "routes to it go to the default route")
			continue
		}
		p.Key = strings.TrimSpace(p.Key)
		res.policyID(p.Key, po.id)
		out = append(out, po)
	}
	return out
}

func (res *Result) policyID(key, id string) {
	if res.Report.policyIDs == nil {
		res.Report.policyIDs = map[string]string{}
	}
	res.Report.policyIDs[key] = id
}

// q quotes s for YAML when it is not a plain safe scalar.
func q(s string) string {
	if s != "" && strings.IndexFunc(s, func(r rune) bool {
		return !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_' || r == '.' || r == ' ')
	}) < 0 && s == strings.TrimSpace(s) && !slices.Contains([]string{"yes", "no", "true", "false", "on", "off", "null", "y", "n", "~"}, strings.ToLower(s)) {
		if _, err := fmt.Sscanf(s, "%g", new(float64)); err != nil {
			return s
		}
	}
	b, _ := json.Marshal(s)
	return string(b)
}

// localTime writes t as rota.yaml's local "YYYY-MM-DD HH:MM", or RFC 3339
// near a clock change where a local reading could be ambiguous.
func localTime(t time.Time, loc *time.Location) string {
	t = t.In(loc)
	_, off := t.Zone()
	_, before := t.Add(-2 * time.Hour).Zone()
	_, after := t.Add(2 * time.Hour).Zone()
	if off != before || off != after {
		return q(t.Format(time.RFC3339))
	}
	return t.Format("2006-01-02 15:04")
}

func (res *Result) render(tracks []*track, ovs map[string][]override, pols []policyOut) ([]byte, error) {
	m, o := res.model, res.opts
	var b bytes.Buffer
	w := func(format string, args ...any) { fmt.Fprintf(&b, format, args...) }
	for _, line := range strings.Split(strings.TrimSpace(o.Comment), "\n") {
		if line != "" {
			w("# %s\n", line)
		}
	}
	w("# Imported from %s at %s. Check it with: klaxon rota check\n", m.Source, o.Now.UTC().Format(time.RFC3339))
	w("timezone: %s\n\npeople:\n", m.Location)
	for _, p := range m.People {
		w("  %s:\n", res.PersonID[p.Key])
		if p.Name != "" {
			w("    name: %s\n", q(p.Name))
		}
		if p.Phone != "" {
			if rota.ValidPhone(p.Phone) {
				w("    phone: %s\n", q(p.Phone))
			} else {
				res.note(fmt.Sprintf("user %q", p.Name), "has phone "+q(p.Phone), "no phone", "the number is not E.164: they are not called or texted")
			}
		}
		if p.Matrix != "" && rota.ValidMatrixID(p.Matrix) {
			w("    matrix: %s\n", q(p.Matrix))
		}
		if p.PagerDutyUser != "" && rota.ValidPagerDutyUser(p.PagerDutyUser) {
			w("    pagerduty: %s\n", p.PagerDutyUser)
		}
		if p.Email != "" {
			w("    email: %s\n", q(p.Email))
		}
		if p.TimeZone != "" {
			if _, err := time.LoadLocation(p.TimeZone); err == nil && !strings.HasPrefix(p.TimeZone, "/") && p.TimeZone != "Local" {
				w("    timezone: %s\n", p.TimeZone)
			}
		}
	}
	if len(tracks) == 0 {
		w("\nrotations: {}\n")
	} else {
		w("\nrotations:\n")
	}
	for _, t := range tracks {
		members := res.members(t)
		if len(members) == 0 {
			return nil, fmt.Errorf("schedule %q: nobody in it is among the imported users", t.sched.Name)
		}
		shift, handoff, start := res.shape(t)
		w("  # %s schedule %q", m.Source, t.sched.Name)
		if t.base != nil {
			w(", %s %q", kindOf(t.base), t.base.Name)
		}
		w("\n  %s:\n    members: [%s]\n    shift: %s\n    handoff: %s\n    start: %s\n", t.id, strings.Join(members, ", "), shift, handoff, start)
		if list := ovs[t.id]; len(list) > 0 {
			w("    overrides:\n")
			for _, ov := range list {
				w("      - who: %s\n        from: %s\n        to: %s\n        reason: %s\n", ov.who, localTime(ov.from, m.Location), localTime(ov.to, m.Location), q(ov.reason))
			}
		}
	}
	if pols == nil && ovs == nil {
		// The first pass only needs rotations: give the rota a placeholder
		// policy and route so that it parses.
		if len(tracks) == 0 {
			w("\npolicies:\n  placeholder:\n    steps:\n      - notify: {person: %s}\n        via: phone\n        wait: 5m\nroutes:\n  - policy: placeholder\n", res.PersonID[m.People[0].Key])
		} else {
			w("\npolicies:\n  placeholder:\n    steps:\n      - notify: %s\n        via: phone\n        wait: 5m\nroutes:\n  - policy: placeholder\n", tracks[0].id)
		}
		return b.Bytes(), nil
	}
	if len(pols) == 0 {
		return nil, errors.New("no escalation policy pages anyone imported: a rota needs at least one policy")
	}
	w("\npolicies:\n")
	for _, p := range pols {
		w("  # %s escalation policy %q\n  %s:\n    steps:\n", m.Source, p.name, p.id)
		for _, st := range p.steps {
			w("      - notify: [%s]\n        via: [%s]\n        wait: %s\n", strings.Join(st.targets, ", "), strings.Join(o.Via, ", "), rota.FormatDuration(st.wait))
		}
		if p.repeat > 0 {
			w("    repeat: %d\n", p.repeat)
		}
	}
	w("\nroutes:\n")
	counts := map[string]int{}
	for _, rt := range m.Routes {
		if id := res.Report.policyIDs[rt.Policy]; id != "" {
			counts[id]++
		}
	}
	def := pols[0].id
	for _, p := range pols {
		if counts[p.id] > counts[def] {
			def = p.id
		}
	}
	for _, rt := range m.Routes {
		id := res.Report.policyIDs[rt.Policy]
		if id == "" {
			res.note(rt.Name, "uses an escalation policy that was not imported", "the default route", "its alerts follow policy "+def)
			continue
		}
		if id == def {
			continue // the default route takes it
		}
		matcher := fmt.Sprintf("%s=%s", o.RouteLabel, strconvQuote(rt.Value))
		w("  - match: [%s]  # %s\n    policy: %s\n", q(matcher), rt.Name, id)
	}
	w("  - policy: %s\n", def)
	res.Report.DefaultPolicy = def
	return b.Bytes(), nil
}

func strconvQuote(s string) string {
	b, _ := json.Marshal(s)
	return string(b)
}
