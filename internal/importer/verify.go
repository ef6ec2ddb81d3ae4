package importer

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/klaxon-oncall/klaxon/escalation/rota"
)

// Source reads one tool's configuration and answers who it has on call.
type Source interface {
	// Name is the tool's name ("PagerDuty").
	Name() string
	// Read fetches everything the import needs; now and weeks bound the
	// overrides and temporary schedules it asks for.
	Read(ctx context.Context, now time.Time, weeks int) (*Model, error)
	// OnCall asks the tool's own API who is on call for each schedule
	// between from and to, by schedule key.
	OnCall(ctx context.Context, schedules []*Schedule, from, to time.Time) (map[string][]Span, error)
}

// Mismatch is an hour in which the source and the rota disagree.
type Mismatch struct {
	Schedule string // the schedule's name
	At       time.Time
	// Source and Klaxon are the rota person ids (or source keys for people
	// not imported) on call then, sorted; empty is nobody.
	Source, Klaxon []string
	// Reported is set when the report explains the difference: the source
	// has fewer people on call than the rota in a schedule listed with a gap
	// (a rotation cannot say "nobody"), or more in one listed as having
	// more people on call at once than rotations.
	Reported bool
}

// Unreported counts the mismatches the report does not explain: any of
// them means the import is wrong.
func Unreported(bad []Mismatch) int {
	n := 0
	for _, m := range bad {
		if !m.Reported {
			n++
		}
	}
	return n
}

// Sample is an hour in which the rota agrees with an answer, kept as a test case.
type Sample struct {
	At time.Time
	// OnCall maps rotation id → person id ("nobody").
	OnCall map[string]string
}

// Verify compares, at every whole hour of [from, from+hours), who answers
// says each schedule has on call with what the written rota gives. It returns
// the hours that disagree and the agreeing samples to keep as test cases.
func (res *Result) Verify(answers map[string][]Span, from time.Time, hours int) ([]Mismatch, []Sample) {
	res.answered = map[string]bool{}
	for k := range answers {
		res.answered[k] = true
	}
	defer func() { res.answered = nil }()
	return res.compare(func(s *Schedule, t time.Time) []string {
		out := []string{}
		if !res.answered[s.Key] {
			return nil
		}
		for _, sp := range answers[s.Key] {
			if sp.Person != "" && !t.Before(sp.Start) && t.Before(sp.End) {
				out = append(out, sp.Person)
			}
		}
		return out
	}, from, hours)
}

// Expected is Verify against the importer's own reading of the source, for
// test cases when the source is not asked.
func (res *Result) Expected(from time.Time, hours int) ([]Mismatch, []Sample) {
	return res.compare(func(s *Schedule, t time.Time) []string { return s.OnCall(t) }, from, hours)
}

// sampleEvery spaces the kept samples so they fall at every hour of the day.
const sampleEvery = 11

func (res *Result) compare(src func(*Schedule, time.Time) []string, from time.Time, hours int) ([]Mismatch, []Sample) {
	from = from.Truncate(time.Hour)
	if from.Before(res.opts.Now) {
		from = from.Add(time.Hour)
	}
	var bad []Mismatch
	var samples []Sample
	for h := range hours {
		t := from.Add(time.Duration(h) * time.Hour)
		keep := h%sampleEvery == 0
		sample := Sample{At: t, OnCall: map[string]string{}}
		for _, s := range res.model.Schedules {
			answer := src(s, t)
			if answer == nil && !res.verifiable(s) {
				continue
			}
			want := res.ids(answer)
			var got []string
			per := map[string]string{}
			for _, id := range res.Tracks[s.Key] {
				p := rota.OnCall(res.Rota.Rotations[id], t)
				if p != "" {
					got = append(got, p)
				}
				per[id] = cmpOr(p, "nobody")
			}
			slices.Sort(got)
			got = slices.Compact(got)
			if !slices.Equal(want, got) {
				bad = append(bad, Mismatch{Schedule: s.Name, At: t, Source: want, Klaxon: got,
					Reported: (res.gaps[s.Key] && len(want) < len(got) && subset(want, got)) ||
						(res.crowded[s.Key] && len(want) > len(got) && subset(got, want))})
				continue
			}
			for id, p := range per {
				sample.OnCall[id] = p
			}
		}
		if keep && len(sample.OnCall) > 0 {
			samples = append(samples, sample)
		}
	}
	return bad, samples
}

// verifiable reports whether s is compared: against the importer's own
// reading always, against a source's answers only when it answered for s.
func (res *Result) verifiable(s *Schedule) bool {
	return res.answered == nil
}

func subset(a, b []string) bool {
	for _, x := range a {
		if !slices.Contains(b, x) {
			return false
		}
	}
	return true
}

func cmpOr(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

// ids maps person keys to rota ids (unknown people keep their key, marked).
func (res *Result) ids(keys []string) []string {
	var out []string
	for _, k := range keys {
		if id := res.PersonID[k]; id != "" {
			out = append(out, id)
		} else {
			out = append(out, "?"+k)
		}
	}
	slices.Sort(out)
	return slices.Compact(out)
}

// WriteMismatches prints every disagreeing hour, runs of consecutive hours
// with the same answers on one line; the hours the report explains are
// marked so.
func (res *Result) WriteMismatches(w io.Writer, bad []Mismatch) {
	loc := res.model.Location
	const layout = "Mon 2006-01-02 15:04 MST"
	byName := map[string][]Mismatch{}
	var names []string
	for _, m := range bad {
		if byName[m.Schedule] == nil {
			names = append(names, m.Schedule)
		}
		byName[m.Schedule] = append(byName[m.Schedule], m)
	}
	for _, name := range names {
		list := byName[name]
		for i := 0; i < len(list); {
			j := i + 1
			for j < len(list) && list[j].At.Equal(list[j-1].At.Add(time.Hour)) && slices.Equal(list[j].Source, list[i].Source) &&
				slices.Equal(list[j].Klaxon, list[i].Klaxon) && list[j].Reported == list[i].Reported {
				j++
			}
			m := list[i]
			when := m.At.In(loc).Format(layout)
			if j-i > 1 {
				when = fmt.Sprintf("%s to %s (%d hours, each)", when, list[j-1].At.In(loc).Format(layout), j-i)
			}
			note := ""
			switch {
			case m.Reported && len(m.Source) < len(m.Klaxon):
				note = " [in the report: a rotation cannot say nobody]"
			case m.Reported:
				note = " [in the report: more people at once than rotations]"
			}
			fmt.Fprintf(w, "  %s: %s: %s has %s, rota.yaml has %s%s\n", name, when, res.model.Source, orNobody(m.Source), orNobody(m.Klaxon), note)
			i = j
		}
	}
}

func orNobody(ids []string) string {
	if len(ids) == 0 {
		return "nobody"
	}
	return strings.Join(ids, ", ")
}

// VerifyWith asks src who is on call for the next hours and compares.
func (res *Result) VerifyWith(ctx context.Context, src Source, from time.Time, hours int) ([]Mismatch, []Sample, error) {
	to := from.Truncate(time.Hour).Add(time.Duration(hours+1) * time.Hour)
	answers, err := src.OnCall(ctx, res.model.Schedules, from, to)
	if err != nil {
		return nil, nil, err
	}
	bad, samples := res.Verify(answers, from, hours)
	return bad, samples, nil
}

// TestsYAML writes rota_test.yaml: a case per route and the samples' on-call
// answers. rotaPath is the rota file as the test file names it; said tells
// where the answers came from ("as PagerDuty answered").
func (res *Result) TestsYAML(samples []Sample, rotaPath, said string) []byte {
	m, o := res.model, res.opts
	loc := m.Location
	var b bytes.Buffer
	w := func(format string, args ...any) { fmt.Fprintf(&b, format, args...) }
	w("# rota_test.yaml — imported from %s at %s; run with: klaxon rota test\n", m.Source, o.Now.UTC().Format(time.RFC3339))
	w("# The on-call cases are %s: they keep checking the migration after later edits.\n", said)
	w("rota: %s\n\ncases:\n", q(rotaPath))
	at := localTime(o.Now.Truncate(time.Hour).Add(time.Hour), loc)
	names := map[string]bool{}
	for _, rt := range m.Routes {
		id := res.Report.policyIDs[rt.Policy]
		if id == "" {
			id = res.Report.DefaultPolicy
		}
		name := fmt.Sprintf("%s takes policy %s", rt.Name, id)
		if names[name] {
			continue
		}
		names[name] = true
		w("  - name: %s\n    at: %s\n    labels: {%s: %s}\n    policy: %s\n", q(name), at, q(o.RouteLabel), strconvQuote(rt.Value), id)
	}
	w("  - name: %s\n    at: %s\n    labels: {alertname: ImportCheck}\n    policy: %s\n", q("an alert without "+o.RouteLabel+" takes the default route"), at, res.Report.DefaultPolicy)
	for _, s := range samples {
		var parts []string
		for _, id := range slices.Sorted(maps.Keys(s.OnCall)) {
			parts = append(parts, id+": "+s.OnCall[id])
		}
		w("  - name: %s\n    at: %s\n    oncall: {%s}\n", q("on call at "+s.At.In(loc).Format("Mon 2006-01-02 15:04 MST")+" "+said), localTime(s.At, loc), strings.Join(parts, ", "))
	}
	return b.Bytes()
}
