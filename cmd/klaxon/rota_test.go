package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	ics "github.com/arran4/golang-ical"
)

func rotaTestNow() time.Time { return time.Date(2026, 12, 20, 12, 0, 0, 0, time.UTC) }

// rotaFixture writes files into a temporary directory and returns their paths.
func rotaFixture(t *testing.T, files map[string]string) map[string]string {
	t.Helper()
	dir := t.TempDir()
	out := map[string]string{}
	for name, data := range files {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
		out[name] = p
	}
	return out
}

func rotaExample(t *testing.T) string {
	t.Helper()
	data, err := os.ReadFile(filepath.Join("..", "..", "rota.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	return string(data)
}

func TestRunRota(t *testing.T) {
	example := rotaExample(t)
	swapped := strings.Replace(example, "members: [alice, bob, carol]", "members: [alice, carol, bob]", 1)
	future := strings.Replace(example, "start: 2026-01-05\n\n", "start: 2027-01-04\n\n", 1)
	broken := strings.Replace(example, "notify: secondary", "notify: secundary", 1)
	secundary := lineOf(t, example, "      - notify: secondary") // where the typo is
	broken = strings.Replace(broken, `phone: "+15555550103"`, `phone: "0155 5555 0103"`, 1)
	files := rotaFixture(t, map[string]string{
		"rota.yaml": example, "swapped.yaml": swapped, "future.yaml": future, "broken.yaml": broken,
	})
	tests := []struct {
		name     string
		args     []string
		code     int
		stdout   []string // substrings
		stderr   []string
		lines    [][]string // each: one stdout line holds all, in order
		noStderr bool
	}{
		{name: "check valid", args: []string{"check", files["rota.yaml"]}, code: 0,
			stdout: []string{"valid: 4 people, 2 rotations, 3 policies, 2 routes; 0 warnings"}, noStderr: true},
		{name: "check broken lists every error", args: []string{"check", files["broken.yaml"]}, code: 1,
			stderr: []string{
				`broken.yaml:41:12: people.carol.phone: phone "0155 5555 0103" is not E.164`,
				`broken.yaml:` + secundary + `:17: policies.default.steps[3].notify: unknown rotation "secundary" (did you mean "secondary"?)`,
				"invalid: 2 errors",
			}},
		{name: "check warns about a gap", args: []string{"check", "--days", "30", files["future.yaml"]}, code: 0,
			stdout: []string{"1 warning"}, stderr: []string{"warning: ", "rotations.secondary: coverage gap"}},
		{name: "check gap up to the horizon", args: []string{"check", files["future.yaml"], "--days=7"}, code: 0,
			stdout: []string{"1 warning"}, stderr: []string{"from Sun 2026-12-20 12:00 GMT until Sun 2026-12-27 12:00 GMT"}},
		{name: "check missing file", args: []string{"check", filepath.Join(t.TempDir(), "nope.yaml")}, code: 1,
			stderr: []string{"no such file"}},
		{name: "check too many args", args: []string{"check", "a", "b"}, code: 2, stderr: []string{"wrong number of arguments", "usage: klaxon rota check"}},
		{name: "check bad flag", args: []string{"check", "--nope"}, code: 2, stderr: []string{"flag provided but not defined"}},
		{name: "check bad days", args: []string{"check", "--days", "0", files["rota.yaml"]}, code: 2, stderr: []string{"--days must be"}},
		{name: "check help", args: []string{"check", "-h"}, code: 0},
		{name: "no command", args: nil, code: 2, stderr: []string{"usage: klaxon rota"}},
		{name: "unknown command", args: []string{"lint"}, code: 2, stderr: []string{`unknown command "lint"`}},
		{name: "help", args: []string{"help"}, code: 0, stdout: []string{"commands:"}},
		{name: "show", args: []string{"show", files["rota.yaml"], "--at", "2026-12-25 12:00", "--days", "14"}, code: 0,
			lines: [][]string{
				{"at Fri 2026-12-25 12:00 GMT"},
				{"primary", "Dave Diaz (dave)", "until Mon 2026-12-28 09:00 GMT", "override for carol: Carol on holiday over Christmas"},
				{"secondary", "Alice Archer (alice)", "until Mon 2026-12-28 09:00 GMT"},
				{"Mon 2026-12-28 09:00 GMT", "Alice Archer (alice)"},
				{"Mon 2027-01-04 09:00 GMT", "Bob Baker (bob)"},
				{"Mon 2027-01-04 09:00 GMT", "Dave Diaz (dave)"},
			}},
		{name: "show now by default", args: []string{"show", files["rota.yaml"]}, code: 0,
			lines: [][]string{{"at Sun 2026-12-20 12:00 GMT"}, {"primary", "Bob Baker (bob)", "until Mon 2026-12-21 09:00 GMT"}}},
		{name: "show bad time", args: []string{"show", files["rota.yaml"], "--at", "next tuesday"}, code: 2, stderr: []string{"invalid time"}},
		{name: "show broken file", args: []string{"show", files["broken.yaml"]}, code: 1, stderr: []string{"unknown rotation"}},
		{name: "diff", args: []string{"diff", files["rota.yaml"], files["swapped.yaml"], "--from", "2026-12-21 09:00", "--days", "14"}, code: 0,
			lines: [][]string{
				{"2 spans change hands"},
				{"primary", "Mon 2026-12-21 09:00 GMT → Thu 2026-12-24 09:00 GMT", "3d", "Carol Chen (carol) → Bob Baker (bob)"},
				// The override was for carol, who is no longer on call then.
				{"primary", "Thu 2026-12-24 09:00 GMT → Mon 2026-12-28 09:00 GMT", "4d", "Dave Diaz (dave) → Bob Baker (bob)", "was: Carol on holiday"},
			}},
		{name: "diff identical", args: []string{"diff", files["rota.yaml"], files["rota.yaml"]}, code: 0, stdout: []string{"No shifts change hands"}},
		{name: "diff one arg", args: []string{"diff", files["rota.yaml"]}, code: 2, stderr: []string{"wrong number of arguments"}},
		{name: "diff broken new", args: []string{"diff", files["rota.yaml"], files["broken.yaml"]}, code: 1, stderr: []string{"broken.yaml:" + secundary + ":17"}},
		{name: "ics unknown person", args: []string{"ics", files["rota.yaml"], "--person", "zed"}, code: 1, stderr: []string{`unknown person "zed"`}},
		{name: "ics bad from", args: []string{"ics", files["rota.yaml"], "--from", "soon"}, code: 2, stderr: []string{"invalid time"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			code := runRota(tt.args, &stdout, &stderr, rotaEnv{now: rotaTestNow})
			if code != tt.code {
				t.Errorf("exit %d, want %d\nstdout:\n%s\nstderr:\n%s", code, tt.code, stdout.String(), stderr.String())
			}
			for _, s := range tt.stdout {
				if !strings.Contains(stdout.String(), s) {
					t.Errorf("stdout lacks %q:\n%s", s, stdout.String())
				}
			}
			for _, s := range tt.stderr {
				if !strings.Contains(stderr.String(), s) {
					t.Errorf("stderr lacks %q:\n%s", s, stderr.String())
				}
			}
			for _, parts := range tt.lines {
				if !rotaHasLine(stdout.String(), parts) {
					t.Errorf("no stdout line holds %q:\n%s", parts, stdout.String())
				}
			}
			if tt.noStderr && stderr.Len() > 0 {
				t.Errorf("unexpected stderr:\n%s", stderr.String())
			}
		})
	}
}

func TestRotaICSCommand(t *testing.T) {
	files := rotaFixture(t, map[string]string{"rota.yaml": rotaExample(t)})
	var stdout, stderr bytes.Buffer
	code := runRota([]string{"ics", files["rota.yaml"], "--person", "dave", "--rotation", "primary", "--from", "2026-12-01", "--days", "31"}, &stdout, &stderr, rotaEnv{now: rotaTestNow})
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr.String())
	}
	cal, err := ics.ParseCalendar(strings.NewReader(stdout.String()))
	if err != nil {
		t.Fatal(err)
	}
	evs := cal.Events()
	if len(evs) != 1 {
		t.Fatalf("%d events, want dave's Christmas cover:\n%s", len(evs), stdout.String())
	}
	start, _ := evs[0].GetStartAt()
	if want := time.Date(2026, 12, 24, 9, 0, 0, 0, time.UTC); !start.Equal(want) {
		t.Errorf("start %s, want %s", start, want)
	}
}

// rotaHasLine reports whether one line of out contains all parts, in order.
func rotaHasLine(out string, parts []string) bool {
	for _, line := range strings.Split(out, "\n") {
		rest, ok := line, true
		for _, p := range parts {
			i := strings.Index(rest, p)
			if i < 0 {
				ok = false
				break
			}
			rest = rest[i+len(p):]
		}
		if ok {
			return true
		}
	}
	return false
}

// TestRotaCheckChannelsIsWired runs `klaxon rota check --channels` through
// main's dispatcher: with no channel configured nobody can be reached, so the
// check fails with the coverage problems (without the wiring the flag is unknown).
func TestRotaCheckChannelsIsWired(t *testing.T) {
	for _, k := range []string{"KLAXON_MATRIX_HOMESERVER", "KLAXON_MATRIX_USER_ID", "KLAXON_MATRIX_ROOM",
		"KLAXON_PAGERDUTY_ROUTING_KEY", "KLAXON_TWILIO_ACCOUNT_SID"} {
		t.Setenv(k, "")
	}
	files := rotaFixture(t, map[string]string{"rota.yaml": rotaExample(t)})
	var stdout, stderr bytes.Buffer
	code := run(t.Context(), []string{"rota", "check", "--channels", files["rota.yaml"]}, nil, &stdout, &stderr)
	if code != 1 || !strings.Contains(stderr.String(), "coverage:") {
		t.Fatalf("exit %d, stderr:\n%s", code, stderr.String())
	}
	stdout.Reset()
	stderr.Reset()
	if code := run(t.Context(), []string{"rota", "check", files["rota.yaml"]}, nil, &stdout, &stderr); code != 0 {
		t.Fatalf("without --channels: exit %d, stderr:\n%s", code, stderr.String())
	}
}

// TestRotaTestCommand runs `klaxon rota test` on the shipped rota_test.yaml:
// it passes against the example rota and fails, with file:line, case,
// expectation and what the rota gives, against an edited one.
func TestRotaTestCommand(t *testing.T) {
	shipped := filepath.Join("..", "..", "rota_test.yaml")
	edited := strings.Replace(rotaExample(t), "via: [matrix, phone]", "via: [matrix, sms]", 1)
	files := rotaFixture(t, map[string]string{"edited.yaml": edited, "bad_test.yaml": "cases:\n  - name: x\n    at: 2026-01-01\n    polcy: low\n"})
	tests := []struct {
		name   string
		args   []string
		code   int
		stdout []string
		stderr []string
	}{
		{"shipped cases pass", []string{"test", shipped}, 0, []string{"6 cases, 6 passed, 0 failed"}, nil},
		{"an edit breaks a case", []string{"test", shipped, "--rota", files["edited.yaml"]}, 1, []string{
			`FAIL ` + shipped + `:25: case "a critical alert over Christmas pages Dave, covering for Carol": steps[3]:`,
			"want: {alice: [matrix, phone]}", "rota gives: {alice: [matrix, sms]}", "6 cases, 5 passed, 1 failed"}, nil},
		{"malformed test file", []string{"test", files["bad_test.yaml"]}, 1, nil, []string{`bad_test.yaml:2: cases[0]: line 4: unknown field "polcy"`}},
		{"missing test file", []string{"test", files["bad_test.yaml"] + ".missing"}, 1, nil, []string{"no such file"}},
		{"missing rota", []string{"test", shipped, "--rota", files["edited.yaml"] + ".missing"}, 1, nil, []string{"no such file"}},
		{"too many arguments", []string{"test", "a", "b"}, 2, nil, []string{"wrong number of arguments"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			code := runRota(tt.args, &stdout, &stderr, rotaEnv{now: rotaTestNow})
			if code != tt.code {
				t.Errorf("exit %d, want %d\nstdout:\n%s\nstderr:\n%s", code, tt.code, stdout.String(), stderr.String())
			}
			for _, s := range tt.stdout {
				if !strings.Contains(stdout.String(), s) {
					t.Errorf("stdout lacks %q:\n%s", s, stdout.String())
				}
			}
			for _, s := range tt.stderr {
				if !strings.Contains(stderr.String(), s) {
					t.Errorf("stderr lacks %q:\n%s", s, stderr.String())
				}
			}
		})
	}
}
