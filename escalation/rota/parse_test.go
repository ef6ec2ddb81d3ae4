package rota

import (
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/klaxon-oncall/klaxon/notifiers"
)

// base is a small valid rota the table tests break one line at a time.
const base = `timezone: Europe/London
people:
  alice: {name: Alice, phone: "+15555550101", matrix: "@alice:example.org", pagerduty: PALICE1}
  bob: {name: Bob, phone: "+15555550102", matrix: "@bob:example.org", pagerduty: bob@example.org}
  carol: {name: Carol, phone: "+15555550103", matrix: "@carol:example.org", pagerduty: PCAROL3}
rotations:
  primary:
    members: [alice, bob, carol]
    shift: 7d
    handoff: monday 09:00
    start: 2026-01-05
policies:
  default:
    steps:
      - notify: primary
        via: [matrix, phone]
        wait: 5m
routes:
  - policy: default
`

func TestBaseIsValid(t *testing.T) {
	r, warns, err := Parse("rota.yaml", []byte(base))
	if err != nil {
		t.Fatal(err)
	}
	if len(warns) != 0 {
		t.Errorf("warnings: %v", warns)
	}
	if r.Policies["default"].AckTimeout != DefaultAckTimeout || r.Policies["default"].Repeat != 0 {
		t.Errorf("defaults not applied: %+v", r.Policies["default"])
	}
}

func TestExampleRota(t *testing.T) {
	path := filepath.Join("..", "..", "rota.yaml")
	r, warns, err := Load(path)
	if err != nil {
		t.Fatalf("the example rota.yaml is invalid:\n%v", err)
	}
	if len(warns) != 0 {
		t.Errorf("the example rota.yaml has warnings: %v", warns)
	}
	if r.Location.String() != "Europe/London" || len(r.People) < 3 || len(r.People) > 4 {
		t.Errorf("zone %s, %d people", r.Location, len(r.People))
	}
	for _, id := range []string{"primary", "secondary"} {
		if r.Rotations[id] == nil {
			t.Errorf("no rotation %q", id)
		}
	}
	if len(r.Rotations["primary"].Overrides) == 0 {
		t.Error("the example has no override")
	}
	def := r.Policies["default"]
	if def == nil {
		t.Fatal("no default policy")
	}
	wantSteps := []struct {
		target Target
		chans  []notifiers.Channel
		wait   time.Duration
	}{
		{Target{Rotation: "primary"}, []notifiers.Channel{notifiers.Matrix}, 5 * time.Minute},
		{Target{Rotation: "primary"}, []notifiers.Channel{notifiers.PagerDuty}, 5 * time.Minute},
		{Target{Rotation: "primary"}, []notifiers.Channel{notifiers.Phone}, 5 * time.Minute},
		{Target{Rotation: "secondary"}, []notifiers.Channel{notifiers.Matrix, notifiers.Phone}, 10 * time.Minute},
	}
	if len(def.Steps) != len(wantSteps) {
		t.Fatalf("default policy has %d steps, want %d", len(def.Steps), len(wantSteps))
	}
	for i, w := range wantSteps {
		s := def.Steps[i]
		if !slices.Equal(s.Targets, []Target{w.target}) || !slices.Equal(s.Channels, w.chans) || s.Wait != w.wait {
			t.Errorf("default step %d = %+v, want %+v", i, s, w)
		}
	}
	if def.Repeat != 1 || def.AckTimeout != 4*time.Hour || len(def.Fallback) == 0 {
		t.Errorf("default policy repeat %d, ack_timeout %s, fallback %v", def.Repeat, def.AckTimeout, def.Fallback)
	}
	st := r.Policies["selftest"]
	if st == nil {
		t.Fatal("no selftest policy")
	}
	var chans []notifiers.Channel
	for _, s := range st.Steps {
		chans = append(chans, s.Channels...)
	}
	if !slices.Equal(chans, []notifiers.Channel{notifiers.Matrix, notifiers.Phone, notifiers.SMS}) {
		t.Errorf("selftest channels %v", chans)
	}
	if p, _ := r.Route(map[string]string{"severity": "warning"}); p == nil || p.ID == "default" {
		t.Errorf("warning routes to %v", p)
	}
	if p, _ := r.Route(map[string]string{"severity": "critical"}); p == nil || p.ID != "default" {
		t.Errorf("critical routes to %v", p)
	}
	if len(r.Owners) == 0 {
		t.Error("no owners")
	}
	for _, ch := range []notifiers.Channel{notifiers.Phone, notifiers.SMS} {
		if l := r.Limits[ch]; l.Count != 3 || l.Per != 15*time.Minute {
			t.Errorf("limit %s = %+v", ch, l)
		}
	}
}

// TestBrokenFileReportsEveryError parses a file with many mistakes and wants
// every one of them, in order, each at its line and column.
func TestBrokenFileReportsEveryError(t *testing.T) {
	data, err := os.ReadFile(filepath.Join("testdata", "broken.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	_, _, err = Parse("broken.yaml", data)
	var es *Errors
	if !errors.As(err, &es) {
		t.Fatalf("Parse error %T %v, want *Errors", err, err)
	}
	want := []string{
		`broken.yaml:1:11: timezone: unknown time zone "Europe/Lundon"`,
		`broken.yaml:5:12: people.alice.phone: phone "+1 555 555 0101" is not E.164: write "+15555550101"`,
		`broken.yaml:6:13: people.alice.matrix: invalid Matrix user id "alice@example.org"`,
		`broken.yaml:10:12: people.bob.phone: phone "555-0102" is not E.164`,
		`broken.yaml:12:5: people.bob.emial: unknown field "emial"`,
		`broken.yaml:16:15: people.carol.timezone: unknown time zone "Mars/Olympus"`,
		`broken.yaml:19:27: rotations.primary.members[2]: alice is already in this rotation at members[0]`,
		`broken.yaml:19:34: rotations.primary.members[3]: unknown person "zed"`,
		`broken.yaml:20:12: rotations.primary.shift: shift "36m" must be a whole number of hours or days`,
		`broken.yaml:21:14: rotations.primary.handoff: invalid handoff "monday 25:00"`,
		`broken.yaml:22:12: rotations.primary.start: 2026-01-06 is a Tuesday, but the handoff is on monday`,
		`broken.yaml:30:13: rotations.primary.overrides[1].to: override ends (2026-12-26 09:00) before it starts`,
		`broken.yaml:31:9: rotations.primary.overrides[2]: override overlaps rotations.primary.overrides[0] (line 24)`,
		`broken.yaml:36:14: rotations.secondary.handoff: a handoff weekday needs a shift of whole weeks`,
		`broken.yaml:45:17: policies.default.steps[1].notify: unknown rotation "primry" (did you mean "primary"?)`,
		`broken.yaml:46:26: policies.default.steps[1].via[1]: unknown channel "fax"`,
		`broken.yaml:47:15: policies.default.steps[1].wait: must be longer than zero`,
		`broken.yaml:48:27: policies.default.steps[2].notify[0].person: unknown person "dave"`,
		`broken.yaml:48:34: policies.default.steps[2].notify[1]: name exactly one of rotation, person, everyone`,
		`broken.yaml:50:15: policies.default.steps[2].wait: invalid duration "soon"`,
		`broken.yaml:51:13: policies.default.repeat: want a whole number from 0 to 100, found "-1"`,
		`broken.yaml:52:18: policies.default.ack_timeout: invalid duration "4 hours"`,
		`broken.yaml:54:5: routes[0]: the default route (no match) must be the last route`,
		`broken.yaml:55:13: routes[1].match[0]: matcher "severity=~\"(warning\"": invalid regular expression`,
		`broken.yaml:55:37: routes[1].match[1]: matcher "team": want name, operator`,
		`broken.yaml:56:13: routes[1].policy: unknown policy "deflt" (did you mean "default"?)`,
		`broken.yaml:57:17: owners[1]: unknown person "eve"`,
		`broken.yaml:59:18: limits.phone.count: want a whole number from 1 to 10000, found "0"`,
		`broken.yaml:60:3: limits.fax: unknown channel "fax"`,
	}
	got := es.Strings()
	for i := 0; i < max(len(got), len(want)); i++ {
		switch {
		case i >= len(got):
			t.Errorf("missing error %d: %s", i, want[i])
		case i >= len(want):
			t.Errorf("unexpected error: %s", got[i])
		case !strings.HasPrefix(got[i], want[i]):
			t.Errorf("error %d:\n got %s\nwant %s…", i, got[i], want[i])
		}
	}
}

func TestParseErrors(t *testing.T) {
	tests := []struct {
		name     string
		old, new string // replace old with new in base
		want     string // substring of one error, with its position
	}{
		{"unknown top-level field", "timezone: Europe/London\n", "timezone: Europe/London\nowner: [alice]\n", `rota.yaml:2:1: owner: unknown field "owner" (did you mean "owners"?)`},
		{"missing timezone", "timezone: Europe/London\n", "", `rota.yaml:1:1: missing field "timezone"`},
		{"Local zone", "Europe/London", "Local", `rota.yaml:1:11: timezone: unknown time zone "Local"`},
		{"zone as a path", "Europe/London", "../../etc/passwd", `unknown time zone`},
		{"phone without plus", `"+15555550101"`, `"15555550101"`, `rota.yaml:3:31: people.alice.phone: phone "15555550101" is not E.164`},
		{"phone too long", `"+15555550101"`, `"+1555555010123456"`, `people.alice.phone: phone "+1555555010123456" is not E.164`},
		{"matrix without server", `"@alice:example.org"`, `"@alice"`, `rota.yaml:3:55: people.alice.matrix: invalid Matrix user id "@alice"`},
		{"matrix upper case", `"@alice:example.org"`, `"@Alice:example.org"`, `invalid Matrix user id "@Alice:example.org"`},
		{"pagerduty junk", `PALICE1`, `alice`, `people.alice.pagerduty: invalid PagerDuty user "alice"`},
		{"email junk", `pagerduty: PALICE1}`, `pagerduty: PALICE1, email: alice}`, `people.alice.email: invalid email "alice"`},
		{"person not a mapping", `alice: {name: Alice, phone: "+15555550101", matrix: "@alice:example.org", pagerduty: PALICE1}`, `alice: Alice`, `rota.yaml:3:10: people.alice: want a mapping, found "Alice"`},
		{"bad person id", "  alice: {", "  al ice: {", `people.al ice: invalid person id "al ice"`},
		{"duplicate person", "  bob: {", "  alice: {", `rota.yaml:4:3: people.alice: duplicate key "alice" (first at line 3)`},
		{"empty members", "[alice, bob, carol]", "[]", `rota.yaml:8:14: rotations.primary.members: no members`},
		{"members not a list", "[alice, bob, carol]", "alice", `rotations.primary.members: want a list, found "alice"`},
		{"person twice in a rotation", "[alice, bob, carol]", "[alice, bob, alice]", `rota.yaml:8:27: rotations.primary.members[2]: alice is already in this rotation`},
		{"unknown member", "[alice, bob, carol]", "[alice, bob, carl]", `rotations.primary.members[2]: unknown person "carl" (did you mean "carol"?)`},
		{"negative shift", "shift: 7d", "shift: -7d", `rota.yaml:9:12: rotations.primary.shift: invalid duration "-7d"`},
		{"zero shift", "shift: 7d", "shift: 0h", `rotations.primary.shift: must be longer than zero`},
		{"huge shift", "shift: 7d", "shift: 999999999999d", `rotations.primary.shift: invalid duration`},
		{"shift over a year", "shift: 7d", "shift: 371d", `rotations.primary.shift: shift "371d" is longer than 366d`},
		{"handoff weekday with 12h shifts", "shift: 7d", "shift: 12h", `rota.yaml:10:14: rotations.primary.handoff: a handoff weekday needs a shift of whole weeks`},
		{"start not on the weekday", "2026-01-05", "2026-01-07", `rota.yaml:11:12: rotations.primary.start: 2026-01-07 is a Wednesday, but the handoff is on monday`},
		{"bad start date", "2026-01-05", "2026-02-30", `rotations.primary.start: invalid start date "2026-02-30"`},
		{"start out of range", "2026-01-05", "1066-10-12", `out of range`},
		{"bad weekday", "monday 09:00", "moonday 09:00", `invalid handoff "moonday 09:00": unknown weekday "moonday"`},
		{"missing handoff", "    handoff: monday 09:00\n", "", `rota.yaml:8:5: rotations.primary: missing field "handoff"`},
		{"unknown rotation", "notify: primary", "notify: primry", `rota.yaml:15:17: policies.default.steps[0].notify: unknown rotation "primry" (did you mean "primary"?)`},
		{"person named as rotation", "notify: primary", "notify: alice", `unknown rotation "alice" ("alice" is a person: write {person: alice})`},
		{"target with two kinds", "notify: primary", "notify: {person: alice, rotation: primary}", `rota.yaml:15:17: policies.default.steps[0].notify: name exactly one of rotation, person, everyone`},
		{"target unknown kind", "notify: primary", "notify: {team: primary}", `policies.default.steps[0].notify.team: unknown field "team"`},
		{"everyone of unknown rotation", "notify: primary", "notify: [{everyone: ops}]", `policies.default.steps[0].notify[0].everyone: unknown rotation "ops"`},
		{"unknown channel", "[matrix, phone]", "[matrix, pager]", `rota.yaml:16:23: policies.default.steps[0].via[1]: unknown channel "pager"`},
		{"channel twice", "[matrix, phone]", "[matrix, matrix]", `policies.default.steps[0].via[1]: channel "matrix" named twice`},
		{"no channels", "[matrix, phone]", "[]", `policies.default.steps[0].via: no channels`},
		{"negative wait", "wait: 5m", "wait: -5m", `rota.yaml:17:15: policies.default.steps[0].wait: invalid duration "-5m"`},
		{"zero wait", "wait: 5m", "wait: 0s", `policies.default.steps[0].wait: must be longer than zero`},
		{"missing wait", "        wait: 5m\n", "", `rota.yaml:15:9: policies.default.steps[0]: missing field "wait"`},
		{"no steps", "    steps:\n      - notify: primary\n        via: [matrix, phone]\n        wait: 5m\n", "    steps: []\n", `policies.default.steps: no steps`},
		{"repeat too large", "  default:\n", "  default:\n    repeat: 1000\n", `policies.default.repeat: want a whole number from 0 to 100`},
		{"zero ack_timeout", "  default:\n", "  default:\n    ack_timeout: 0s\n", `policies.default.ack_timeout: must be longer than zero`},
		{"bad pagerduty_acks", "  default:\n", "  default:\n    pagerduty_acks: everybody\n", `policies.default.pagerduty_acks: "everybody": want rota`},
		{"bad routing key", "        wait: 5m\n", "        wait: 5m\n        routing_key: \"secret key!\"\n", `policies.default.steps[0].routing_key: invalid routing key`},
		{"unknown policy in route", "  - policy: default", "  - policy: defualt", `rota.yaml:19:13: routes[0].policy: unknown policy "defualt"`},
		{"no default route", "  - policy: default", "  - policy: default\n    match: [team=db]", `rota.yaml:19:3: routes: no default route`},
		{"two default routes", "  - policy: default", "  - policy: default\n  - policy: default", `rota.yaml:20:5: routes[1]: a second default route`},
		{"bad matcher", "  - policy: default", "  - policy: default\n    match: ['sev~=x']\n  - policy: default", `routes[0].match[0]: matcher "sev~=x"`},
		{"bad label name", "  - policy: default", "  - policy: default\n    match: ['1sev=x']\n  - policy: default", `invalid label name "1sev"`},
		{"owners unknown", "routes:", "owners: [zoe]\nroutes:", `rota.yaml:18:10: owners[0]: unknown person "zoe"`},
		{"limits unknown channel", "routes:", "limits:\n  fax: {count: 1, per: 1m}\nroutes:", `rota.yaml:19:3: limits.fax: unknown channel "fax"`},
		{"limits missing per", "routes:", "limits:\n  sms: {count: 1}\nroutes:", `limits.sms: missing field "per"`},
		{"override reversed", "    start: 2026-01-05\n", "    start: 2026-01-05\n    overrides:\n      - {who: alice, from: 2026-02-02 09:00, to: 2026-02-01 09:00}\n", `rotations.primary.overrides[0].to: override ends (2026-02-01 09:00) before it starts (2026-02-02 09:00)`},
		{"override bad time", "    start: 2026-01-05\n", "    start: 2026-01-05\n    overrides:\n      - {who: alice, from: tomorrow, to: 2026-02-01 09:00}\n", `rotations.primary.overrides[0].from: invalid time "tomorrow"`},
		{"override self cover", "    start: 2026-01-05\n", "    start: 2026-01-05\n    overrides:\n      - {who: alice, instead_of: alice, from: 2026-02-01 09:00, to: 2026-02-02 09:00}\n", `alice cannot cover for themselves`},
		{"overlapping overrides", "    start: 2026-01-05\n", "    start: 2026-01-05\n    overrides:\n      - {who: alice, from: 2026-02-01 09:00, to: 2026-02-03 09:00}\n      - {who: bob, instead_of: carol, from: 2026-02-02 09:00, to: 2026-02-04 09:00}\n", `rota.yaml:14:9: rotations.primary.overrides[1]: override overlaps rotations.primary.overrides[0] (line 13)`},
		{"override missing who", "    start: 2026-01-05\n", "    start: 2026-01-05\n    overrides:\n      - {from: 2026-02-01 09:00, to: 2026-02-03 09:00}\n", `rotations.primary.overrides[0]: missing field "who"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if !strings.Contains(base, tt.old) {
				t.Fatalf("base has no %q", tt.old)
			}
			src := strings.Replace(base, tt.old, tt.new, 1)
			_, _, err := Parse("rota.yaml", []byte(src))
			if err == nil {
				t.Fatalf("Parse accepted:\n%s", src)
			}
			for _, line := range ErrorStrings(err) {
				if strings.Contains(line, tt.want) {
					return
				}
			}
			t.Errorf("no error contains %q; got:\n%v", tt.want, err)
		})
	}
}

func TestParseMalformedInput(t *testing.T) {
	tests := []struct {
		name string
		data string
		want string
	}{
		{"empty", "", "rota.yaml: empty file"},
		{"only a comment", "# nothing\n", "rota.yaml: empty document"},
		{"not yaml", "timezone: [unclosed\n", "rota.yaml:"},
		{"tab indentation", "timezone: UTC\npeople:\n\talice: {}\n", "rota.yaml:3: invalid YAML"},
		{"a list", "- a\n- b\n", "rota.yaml:1:1: want a mapping, found a list"},
		{"a scalar", "hello\n", `want a mapping, found "hello"`},
		{"two documents", base + "---\n" + base, "more than one YAML document"},
		{"alias", strings.Replace(base, "  default:\n", "  default: &d\n", 1), "anchors and aliases are not supported"},
		{"billion laughs", "a: &a [x, x]\nb: &b [*a, *a]\nc: [*b, *b]\n", "anchors and aliases are not supported"},
		{"binary", "\x00\x01\x02\xff", "rota.yaml"},
		{"oversized", "timezone: UTC\n" + strings.Repeat("# padding\n", MaxFileSize/10+1), "larger than"},
		{"deep nesting", "a: " + strings.Repeat("[", 200) + strings.Repeat("]", 200) + "\n", "rota.yaml"},
		{"long value", strings.Replace(base, "name: Alice", "name: "+strings.Repeat("A", 5000), 1), "value longer than 4096 bytes"},
		{"non-scalar key", "? [a]\n: b\n", "keys must be plain names"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r, _, err := Parse("rota.yaml", []byte(tt.data))
			if err == nil || r != nil {
				t.Fatalf("Parse accepted it: %v", r)
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error %q does not contain %q", err, tt.want)
			}
			var es *Errors
			if !errors.As(err, &es) || len(es.List) == 0 {
				t.Errorf("error is %T, want *Errors", err)
			}
		})
	}
}

func TestParseWarnings(t *testing.T) {
	tests := []struct {
		name     string
		old, new string
		want     string
	}{
		{"missing phone for a phone step", `alice: {name: Alice, phone: "+15555550101", `, `alice: {name: Alice, `,
			`rota.yaml:3:3: people.alice: alice has no phone number, but policy "default" steps[0] pages on-call of primary by phone`},
		{"nobody can be reached", `bob: {name: Bob, phone: "+15555550102", matrix: "@bob:example.org", pagerduty: bob@example.org}`, `bob: {name: Bob}`,
			`people.bob: bob has no phone, matrix or pagerduty: they cannot be paged`},
		{"override for a non-member", "    start: 2026-01-05\n", "    start: 2026-01-05\n    overrides:\n      - {who: alice, instead_of: dave, from: 2026-02-01 09:00, to: 2026-02-02 09:00}\npeople2: x\n",
			""}, // replaced below
		{"override with no effect", "    start: 2026-01-05\n", "    start: 2026-01-05\n    overrides:\n      - {who: carol, instead_of: bob, from: 2026-01-06 09:00, to: 2026-01-07 09:00}\n",
			`rota.yaml:13:9: rotations.primary.overrides[0]: override for bob, who is not on call for "primary" between 2026-01-06 09:00 and 2026-01-07 09:00: it has no effect`},
		{"unused rotation", "policies:", "  spare:\n    members: [carol]\n    handoff: \"09:00\"\n    shift: 1d\n    start: 2026-01-05\npolicies:",
			`rota.yaml:12:3: rotations.spare: rotation "spare" is not used by any policy`},
		{"routing key without pagerduty", "        wait: 5m\n", "        wait: 5m\n        routing_key: R0UT1NGKEY\n",
			`policies.default.steps[0].routing_key: routing_key is used by the pagerduty channel only`},
	}
	// A non-member needs a person outside the rotation.
	tests[2].old = "routes:"
	tests[2].new = "routes:"
	nonMember := strings.Replace(base, `  carol: {`, `  dave: {name: Dave, phone: "+15555550104"}
  carol: {`, 1)
	nonMember = strings.Replace(nonMember, "    start: 2026-01-05\n", "    start: 2026-01-05\n    overrides:\n      - {who: alice, instead_of: dave, from: 2026-02-02 09:00, to: 2026-02-03 09:00}\n", 1)
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			src := strings.Replace(base, tt.old, tt.new, 1)
			want := tt.want
			if i == 2 {
				src = nonMember
				want = `rota.yaml:14:9: rotations.primary.overrides[0]: override for dave, who is not in rotation "primary": it has no effect`
			}
			r, warns, err := Parse("rota.yaml", []byte(src))
			if err != nil {
				t.Fatalf("Parse: %v", err)
			}
			if !slices.Equal(warns, r.Warnings) {
				t.Error("Rota.Warnings differs from the returned warnings")
			}
			for _, w := range warns {
				if strings.Contains(w.String(), want) {
					return
				}
			}
			t.Errorf("no warning contains %q; got %v", want, warns)
		})
	}
}

func TestRoutingKeyNeverInMessages(t *testing.T) {
	const secret = "s3cr3t-r0ut1ng-k3y-do-not-print"
	for _, src := range []string{
		strings.Replace(base, "        wait: 5m\n", "        wait: 5m\n        routing_key: \""+secret+"!\"\n", 1), // invalid
		strings.Replace(base, "        wait: 5m\n", "        wait: 5m\n        routing_key: "+secret+"\n", 1),      // valid, warned
	} {
		_, warns, err := Parse("rota.yaml", []byte(src))
		msgs := ErrorStrings(err)
		for _, w := range warns {
			msgs = append(msgs, w.String())
		}
		if len(msgs) == 0 {
			t.Fatal("expected an error or a warning")
		}
		for _, m := range msgs {
			if strings.Contains(m, secret) {
				t.Errorf("routing key leaked: %s", m)
			}
		}
	}
}

func TestGaps(t *testing.T) {
	src := strings.Replace(base, "2026-01-05", "2026-03-02", 1)
	r, _, err := Parse("rota.yaml", []byte(src))
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		from, to string
		want     int
	}{
		{"2026-02-01 00:00", "2026-02-15 00:00", 1},
		{"2026-02-01 00:00", "2026-03-15 00:00", 1},
		{"2026-03-02 09:00", "2026-03-15 00:00", 0},
		{"2026-04-01 00:00", "2026-05-01 00:00", 0},
	}
	for _, tt := range tests {
		got := r.Gaps(utc(tt.from), utc(tt.to))
		if len(got) != tt.want {
			t.Errorf("Gaps(%s, %s) = %v, want %d", tt.from, tt.to, got, tt.want)
		}
		for _, g := range got {
			if !strings.Contains(g.String(), "rota.yaml:7:3: rotations.primary: coverage gap") {
				t.Errorf("gap warning %q lacks its position", g)
			}
		}
	}
}

func TestParseDuration(t *testing.T) {
	tests := []struct {
		in   string
		want time.Duration
		bad  bool
	}{
		{"5m", 5 * time.Minute, false},
		{"1h30m", 90 * time.Minute, false},
		{"7d", 7 * 24 * time.Hour, false},
		{"1d12h", 36 * time.Hour, false},
		{"0d", 0, false},
		{"d", 0, true},
		{"7", 0, true},
		{"-1d", 0, true},
		{"1d-1h", 0, true},
		{"99999999999999999999d", 0, true},
		{"106752d", 0, true},
		{"", 0, true},
	}
	for _, tt := range tests {
		got, err := ParseDuration(tt.in)
		if (err != nil) != tt.bad || got != tt.want {
			t.Errorf("ParseDuration(%q) = %v, %v; want %v, bad=%v", tt.in, got, err, tt.want, tt.bad)
		}
	}
	for _, d := range []time.Duration{5 * time.Minute, 90 * time.Minute, 7 * 24 * time.Hour, 36 * time.Hour, time.Hour} {
		back, err := ParseDuration(FormatDuration(d))
		if err != nil || back != d {
			t.Errorf("FormatDuration(%v) = %q does not parse back: %v %v", d, FormatDuration(d), back, err)
		}
	}
}

func TestPagerDutyAcksField(t *testing.T) {
	for _, tt := range []struct {
		line   string
		anyone bool
	}{{"", false}, {"    pagerduty_acks: rota\n", false}, {"    pagerduty_acks: anyone\n", true}} {
		r, _, err := Parse("rota.yaml", []byte(strings.Replace(base, "  default:\n", "  default:\n"+tt.line, 1)))
		if err != nil {
			t.Fatalf("%q: %v", tt.line, err)
		}
		if got := r.Policies["default"].PagerDutyAcksAnyone; got != tt.anyone {
			t.Errorf("%q: anyone = %v", tt.line, got)
		}
		if p, _ := ForEngine(r).PolicyNamed("default"); p.PagerDutyAcksAnyone != tt.anyone {
			t.Errorf("%q: the engine's policy says anyone = %v", tt.line, p.PagerDutyAcksAnyone)
		}
	}
}

func TestRotationReminder(t *testing.T) {
	tests := []struct {
		line string // replaces "shift: 7d"
		want time.Duration
		err  string
	}{
		{"shift: 7d", DefaultReminder, ""},
		{"shift: 7d\n    reminder: 30m", 30 * time.Minute, ""},
		{"shift: 7d\n    reminder: 1d", 24 * time.Hour, ""},
		{"shift: 7d\n    reminder: off", 0, ""},
		{"shift: 7d\n    reminder: 8d", 0, `rota.yaml:10:15: rotations.primary.reminder: reminder "8d" must be more than 0 and at most 7d`},
		{"shift: 7d\n    reminder: soon", 0, "rota.yaml:10:15: rotations.primary.reminder: invalid duration"},
		{"shift: 7d\n    reminder: -1h", 0, `rota.yaml:10:15: rotations.primary.reminder: invalid duration "-1h"`},
	}
	for _, tt := range tests {
		t.Run(tt.line, func(t *testing.T) {
			r, _, err := Parse("rota.yaml", []byte(strings.Replace(base, "shift: 7d", tt.line, 1)))
			if tt.err != "" {
				if err == nil || !strings.Contains(err.Error(), tt.err) {
					t.Fatalf("err %v, want %q", err, tt.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got := r.Rotations["primary"].Reminder; got != tt.want {
				t.Errorf("reminder %s, want %s", got, tt.want)
			}
		})
	}
}
