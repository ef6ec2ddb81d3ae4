package rota

import (
	"strings"
	"testing"

	"github.com/klaxon-oncall/klaxon/notifiers"
)

func TestParseMatcher(t *testing.T) {
	tests := []struct {
		in      string
		name    string
		op      MatchOp
		value   string
		wantErr string
	}{
		{`severity="critical"`, "severity", MatchEqual, "critical", ""},
		{`severity=critical`, "severity", MatchEqual, "critical", ""},
		{` team != db `, "team", MatchNotEqual, "db", ""},
		{`severity=~"warning|info"`, "severity", MatchRegexp, "warning|info", ""},
		{`env!~"dev.*"`, "env", MatchNotRegexp, "dev.*", ""},
		{`msg="say \"hi\""`, "msg", MatchEqual, `say "hi"`, ""},
		{`empty=""`, "empty", MatchEqual, "", ""},
		{`severity`, "", "", "", "want name, operator"},
		{`=x`, "", "", "", "want name, operator"},
		{`1abc=x`, "", "", "", "invalid label name"},
		{`a~=x`, "", "", "", "invalid label name"},
		{`a="unterminated`, "", "", "", "badly quoted"},
		{`a=x"y`, "", "", "", "badly quoted"},
		{`a=~"("`, "", "", "", "invalid regular expression"},
		{`a="` + strings.Repeat("x", 2000) + `"`, "", "", "", "longer than"},
	}
	for _, tt := range tests {
		m, err := ParseMatcher(tt.in)
		if tt.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("ParseMatcher(%.40q) error %v, want %q", tt.in, err, tt.wantErr)
			}
			continue
		}
		if err != nil || m.Name != tt.name || m.Op != tt.op || m.Value != tt.value {
			t.Errorf("ParseMatcher(%q) = %+v, %v", tt.in, m, err)
		}
		back, err := ParseMatcher(m.String())
		if err != nil || back.Name != m.Name || back.Op != m.Op || back.Value != m.Value {
			t.Errorf("String() %q does not parse back: %+v %v", m.String(), back, err)
		}
	}
}

func TestMatcherMatches(t *testing.T) {
	labels := map[string]string{"severity": "warning", "team": "db", "env": "prod-eu"}
	tests := []struct {
		m    string
		want bool
	}{
		{`severity="warning"`, true},
		{`severity="warn"`, false},
		{`severity=~"warn"`, false}, // anchored
		{`severity=~"warn.*"`, true},
		{`severity=~"warning|info"`, true},
		{`severity!~"warning|info"`, false},
		{`team!="db"`, false},
		{`team!="web"`, true},
		{`missing=""`, true}, // a missing label is empty
		{`missing!=""`, false},
		{`missing=~".*"`, true},
		{`missing=~".+"`, false},
		{`env=~"prod-.*"`, true},
	}
	for _, tt := range tests {
		m, err := ParseMatcher(tt.m)
		if err != nil {
			t.Fatal(err)
		}
		if got := m.Matches(labels); got != tt.want {
			t.Errorf("%s matches %v = %v, want %v", tt.m, labels, got, tt.want)
		}
	}
}

func TestRoute(t *testing.T) {
	src := strings.Replace(base, "routes:\n  - policy: default\n", `  low:
    steps:
      - {notify: primary, via: matrix, wait: 30m}
  db:
    steps:
      - {notify: {person: carol}, via: phone, wait: 5m}
routes:
  - match: ['team="db"', 'severity="critical"']
    policy: db
  - match: ['severity=~"warning|info"']
    policy: low
  - policy: default
`, 1)
	r, _, err := Parse("rota.yaml", []byte(src))
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		labels map[string]string
		want   string
		line   int // of the matching route
	}{
		{map[string]string{"team": "db", "severity": "critical"}, "db", 25},
		{map[string]string{"team": "db", "severity": "warning"}, "low", 27}, // first match wins: db needs both
		{map[string]string{"team": "web", "severity": "info"}, "low", 27},
		{map[string]string{"team": "web", "severity": "critical"}, "default", 29},
		{map[string]string{}, "default", 29},
		{nil, "default", 29},
	}
	for _, tt := range tests {
		p, err := r.Route(tt.labels)
		if err != nil || p.ID != tt.want {
			t.Errorf("Route(%v) = %v, %v; want %s", tt.labels, p, err, tt.want)
		}
		_, i, err := r.Match(tt.labels)
		if err != nil || r.Routes[i].Line != tt.line || r.Routes[i].Column != 5 {
			t.Errorf("Match(%v) = route %d at %d:%d, %v; want line %d", tt.labels, i, r.Routes[i].Line, r.Routes[i].Column, err, tt.line)
		}
	}
	var nilRota *Rota
	if _, err := nilRota.Route(nil); err == nil {
		t.Error("Route on a nil rota succeeded")
	}
}

func TestResolveAndContacts(t *testing.T) {
	src := strings.Replace(base, "    start: 2026-01-05\n", `    start: 2026-01-05
    overrides:
      - {who: dave, instead_of: alice, from: 2026-01-06 09:00, to: 2026-01-07 09:00}
`, 1)
	src = strings.Replace(src, "  carol: {", "  dave: {name: Dave, phone: \"+15555550104\"}\n  carol: {", 1)
	r, _, err := Parse("rota.yaml", []byte(src))
	if err != nil {
		t.Fatal(err)
	}
	ids := func(ps []*Person) string {
		var out []string
		for _, p := range ps {
			out = append(out, p.ID)
		}
		return strings.Join(out, ",")
	}
	tests := []struct {
		target Target
		at     string
		want   string
	}{
		{Target{Rotation: "primary"}, "2026-01-05 09:00", "alice"},
		{Target{Rotation: "primary"}, "2026-01-06 12:00", "dave"},
		{Target{Rotation: "primary"}, "2026-01-12 09:00", "bob"},
		{Target{Rotation: "primary"}, "2025-12-01 09:00", ""},
		{Target{Person: "carol"}, "2026-01-05 09:00", "carol"},
		{Target{Rotation: "primary", Everyone: true}, "2026-01-05 09:00", "alice,bob,carol"},
		{Target{Rotation: "primary", Everyone: true}, "2026-01-06 12:00", "alice,bob,carol,dave"},
		{Target{Rotation: "nope"}, "2026-01-05 09:00", ""},
		{Target{Person: "nope"}, "2026-01-05 09:00", ""},
	}
	for _, tt := range tests {
		if got := ids(r.Resolve(tt.target, utc(tt.at))); got != tt.want {
			t.Errorf("Resolve(%v, %s) = %q, want %q", tt.target, tt.at, got, tt.want)
		}
	}
	if p := r.OnCall("primary", utc("2026-01-06 12:00")); p == nil || p.ID != "dave" {
		t.Errorf("Rota.OnCall = %v", p)
	}
	if p := r.OnCall("nope", utc("2026-01-06 12:00")); p != nil {
		t.Errorf("Rota.OnCall of unknown rotation = %v", p)
	}

	contacts := []struct {
		ch      notifiers.Channel
		address string
		want    string
	}{
		{notifiers.Phone, "+15555550102", "bob"},
		{notifiers.SMS, " +15555550102 ", "bob"},
		{notifiers.Matrix, "@carol:example.org", "carol"},
		{notifiers.Matrix, "@Carol:example.org", ""},
		{notifiers.PagerDuty, "PALICE1", "alice"},
		{notifiers.PagerDuty, "palice1", ""},
		{notifiers.PagerDuty, "BOB@Example.org", "bob"},
		{notifiers.Phone, "+15555550199", ""},
		{notifiers.Phone, "", ""},
		{notifiers.Matrix, "+15555550102", ""},
		{notifiers.Channel("fax"), "+15555550102", ""},
	}
	for _, tt := range contacts {
		p, ok := r.PersonByContact(tt.ch, tt.address)
		got := ""
		if ok {
			got = p.ID
		}
		if got != tt.want {
			t.Errorf("PersonByContact(%s, %q) = %q, want %q", tt.ch, tt.address, got, tt.want)
		}
	}
	rc := r.People["alice"].Recipient()
	if rc != (notifiers.Recipient{PersonID: "alice", Name: "Alice", Phone: "+15555550101", MatrixID: "@alice:example.org", PagerDutyUser: "PALICE1"}) {
		t.Errorf("Recipient = %+v", rc)
	}
}

func TestPersonByEmail(t *testing.T) {
	r := &Rota{People: map[string]*Person{
		"alice": {ID: "alice", Email: "alice@example.org"},
		"bob":   {ID: "bob", Email: "shared@example.org"},
		"carol": {ID: "carol", Email: "Shared@example.org"},
		"dave":  {ID: "dave"},
	}}
	tests := []struct{ email, want string }{
		{"alice@example.org", "alice"},
		{" ALICE@example.org ", "alice"},
		{"shared@example.org", ""}, // two people: nobody
		{"", ""},
		{"dave@example.org", ""},
	}
	for _, tt := range tests {
		p, ok := r.PersonByEmail(tt.email)
		got := ""
		if ok {
			got = p.ID
		}
		if got != tt.want {
			t.Errorf("PersonByEmail(%q) = %q, want %q", tt.email, got, tt.want)
		}
	}
}
