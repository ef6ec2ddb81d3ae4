package rota

import (
	"bytes"
	"strings"
	"testing"
	"time"

	ics "github.com/arran4/golang-ical"
)

func exampleWithOverride(t *testing.T) *Rota {
	t.Helper()
	src := strings.Replace(base, "    start: 2026-01-05\n", `    start: 2026-01-05
    overrides:
      - {who: carol, instead_of: bob, from: 2026-02-03 09:00, to: 2026-02-05 09:00, reason: "Bob at a wedding"}
`, 1)
	r, _, err := Parse("rota.yaml", []byte(src))
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func TestWriteICSParsesBack(t *testing.T) {
	r := exampleWithOverride(t)
	now := utc("2026-02-01 12:00")
	tests := []struct {
		name      string
		opt       ICSOptions
		wantStart []string // UTC starts of the events
		wantErr   string
	}{
		{"all", ICSOptions{From: utc("2026-02-02 09:00"), To: utc("2026-02-16 09:00")},
			[]string{"2026-02-02 09:00", "2026-02-03 09:00", "2026-02-05 09:00", "2026-02-09 09:00"}, ""},
		{"carol", ICSOptions{Person: "carol", From: utc("2026-01-01 00:00"), To: utc("2026-03-01 00:00")},
			[]string{"2026-01-19 09:00", "2026-02-03 09:00", "2026-02-09 09:00"}, ""},
		{"rotation", ICSOptions{Rotation: "primary", From: utc("2026-02-09 09:00"), To: utc("2026-02-09 10:00")},
			[]string{"2026-02-09 09:00"}, ""},
		{"unknown person", ICSOptions{Person: "zed"}, nil, `unknown person "zed"`},
		{"unknown rotation", ICSOptions{Rotation: "zed"}, nil, `unknown rotation "zed"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.opt.Now = now
			var buf bytes.Buffer
			err := WriteICS(&buf, r, tt.opt)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("error %v, want %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if strings.Contains(buf.String(), "+1555") || strings.Contains(buf.String(), "example.org") {
				t.Error("the feed carries contact details")
			}
			cal, err := ics.ParseCalendar(strings.NewReader(buf.String()))
			if err != nil {
				t.Fatalf("feed does not parse: %v\n%s", err, buf.String())
			}
			evs := cal.Events()
			if len(evs) != len(tt.wantStart) {
				t.Fatalf("%d events, want %d:\n%s", len(evs), len(tt.wantStart), buf.String())
			}
			uids := map[string]bool{}
			for i, ev := range evs {
				start, err := ev.GetStartAt()
				if err != nil {
					t.Fatal(err)
				}
				end, err := ev.GetEndAt()
				if err != nil {
					t.Fatal(err)
				}
				if !start.Equal(utc(tt.wantStart[i])) || !end.After(start) {
					t.Errorf("event %d: %s – %s, want start %s", i, start, end, tt.wantStart[i])
				}
				if uids[ev.Id()] {
					t.Errorf("duplicate UID %s", ev.Id())
				}
				uids[ev.Id()] = true
				summary := ev.GetProperty(ics.ComponentPropertySummary).Value
				if !strings.HasPrefix(summary, "On call: primary (") {
					t.Errorf("summary %q", summary)
				}
				if start.Equal(utc("2026-02-03 09:00")) {
					desc := ev.GetProperty(ics.ComponentPropertyDescription).Value
					if !strings.Contains(desc, "Covering for Bob") || !strings.Contains(desc, "wedding") {
						t.Errorf("override event description %q", desc)
					}
				}
				if stamp, _ := ev.GetDtStampTime(); !stamp.Equal(now) {
					t.Errorf("DTSTAMP %s, want %s", stamp, now)
				}
			}
		})
	}
}

func TestICSUIDsStableAcrossReload(t *testing.T) {
	r1, r2 := exampleWithOverride(t), exampleWithOverride(t)
	opt := ICSOptions{From: utc("2026-02-01 00:00"), To: utc("2026-03-01 00:00"), Now: utc("2026-02-01 00:00")}
	var a, b bytes.Buffer
	if err := WriteICS(&a, r1, opt); err != nil {
		t.Fatal(err)
	}
	opt.Now = opt.Now.Add(time.Hour)
	if err := WriteICS(&b, r2, opt); err != nil {
		t.Fatal(err)
	}
	uids := func(s string) []string {
		var out []string
		for _, l := range strings.Split(s, "\n") {
			if strings.HasPrefix(l, "UID:") {
				out = append(out, strings.TrimSpace(l))
			}
		}
		return out
	}
	if ua, ub := uids(a.String()), uids(b.String()); strings.Join(ua, ",") != strings.Join(ub, ",") || len(ua) == 0 {
		t.Errorf("UIDs differ across reloads: %v vs %v", ua, ub)
	}
}

func TestDiff(t *testing.T) {
	old, err := func() (*Rota, error) { r, _, err := Parse("old.yaml", []byte(base)); return r, err }()
	if err != nil {
		t.Fatal(err)
	}
	from, to := utc("2026-02-02 09:00"), utc("2026-03-02 09:00")
	tests := []struct {
		name string
		new  string
		want []Change
	}{
		{"identical", base, nil},
		{"swap with override", strings.Replace(base, "    start: 2026-01-05\n", "    start: 2026-01-05\n    overrides:\n      - {who: carol, instead_of: bob, from: 2026-02-03 09:00, to: 2026-02-05 09:00, reason: wedding}\n", 1),
			[]Change{{Rotation: "primary", Start: utc("2026-02-03 09:00"), End: utc("2026-02-05 09:00"), Old: "bob", New: "carol", NewReason: "wedding"}}},
		{"members reordered", strings.Replace(base, "[alice, bob, carol]", "[alice, carol, bob]", 1),
			[]Change{
				// old: bob, carol, alice, bob from 2 Feb; new: carol, bob, alice, carol
				{Rotation: "primary", Start: utc("2026-02-02 09:00"), End: utc("2026-02-09 09:00"), Old: "bob", New: "carol"},
				{Rotation: "primary", Start: utc("2026-02-09 09:00"), End: utc("2026-02-16 09:00"), Old: "carol", New: "bob"},
				{Rotation: "primary", Start: utc("2026-02-23 09:00"), End: utc("2026-03-02 09:00"), Old: "bob", New: "carol"},
			}},
		{"handoff moved an hour", strings.Replace(base, "monday 09:00", "monday 10:00", 1),
			[]Change{
				// each week's first hour stays with the previous person
				{Rotation: "primary", Start: utc("2026-02-02 09:00"), End: utc("2026-02-02 10:00"), Old: "bob", New: "alice"},
				{Rotation: "primary", Start: utc("2026-02-09 09:00"), End: utc("2026-02-09 10:00"), Old: "carol", New: "bob"},
				{Rotation: "primary", Start: utc("2026-02-16 09:00"), End: utc("2026-02-16 10:00"), Old: "alice", New: "carol"},
				{Rotation: "primary", Start: utc("2026-02-23 09:00"), End: utc("2026-02-23 10:00"), Old: "bob", New: "alice"},
			}},
		{"rotation added", strings.Replace(base, "policies:", "  spare:\n    members: [carol]\n    handoff: \"09:00\"\n    shift: 1d\n    start: 2026-02-20\npolicies:", 1),
			[]Change{{Rotation: "spare", Start: utc("2026-02-20 09:00"), End: to, Old: "", New: "carol"}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			nr, _, err := Parse("new.yaml", []byte(tt.new))
			if err != nil {
				t.Fatal(err)
			}
			got := Diff(old, nr, from, to)
			if len(got) != len(tt.want) {
				t.Fatalf("Diff = %+v, want %+v", got, tt.want)
			}
			for i := range got {
				g, w := got[i], tt.want[i]
				if g.Rotation != w.Rotation || !g.Start.Equal(w.Start) || !g.End.Equal(w.End) || g.Old != w.Old || g.New != w.New || g.NewReason != w.NewReason {
					t.Errorf("change %d = %+v, want %+v", i, g, w)
				}
			}
			// Reversed, the same spans with old and new swapped.
			back := Diff(nr, old, from, to)
			if len(back) != len(got) {
				t.Fatalf("reverse diff has %d changes, want %d", len(back), len(got))
			}
			for i := range back {
				if back[i].Old != got[i].New || back[i].New != got[i].Old || !back[i].Start.Equal(got[i].Start) {
					t.Errorf("reverse change %d = %+v, forward %+v", i, back[i], got[i])
				}
			}
		})
	}
}
