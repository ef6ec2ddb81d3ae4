package rotatests

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/klaxon-oncall/klaxon/escalation/rota"
)

func exampleRota(t *testing.T) *rota.Rota {
	t.Helper()
	r, _, err := rota.Load(filepath.Join("..", "..", "rota.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// TestShippedCasesPass runs the repository's rota_test.yaml against the
// example rota, as the rota repo's CI would.
func TestShippedCasesPass(t *testing.T) {
	path := filepath.Join("..", "..", "rota_test.yaml")
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	f, err := Parse(path, data)
	if err != nil {
		t.Fatal(err)
	}
	if len(f.Cases) < 5 || f.RotaPath() != filepath.Join("..", "..", "rota.yaml") {
		t.Fatalf("%d cases, rota %s", len(f.Cases), f.RotaPath())
	}
	for _, x := range f.Run(exampleRota(t)) {
		t.Error(x)
	}
}

func TestParseRejects(t *testing.T) {
	tests := []struct {
		name, data string
		want       []string
	}{
		{"empty", "", []string{"t.yaml: empty file"}},
		{"no cases", "rota: r.yaml\n", []string{"t.yaml: no cases"}},
		{"syntax", "cases: [\n", []string{"t.yaml:1: did not find expected"}},
		{"unknown top-level field", "rota: r.yaml\ncasez: []\n", []string{"t.yaml:2: field casez not found"}},
		{"unknown case field", "cases:\n  - name: a\n    at: 2026-03-02\n    polcy: default\n", []string{`t.yaml:2: cases[0]: line 4: unknown field "polcy"`}},
		{"missing name", "cases:\n  - at: 2026-03-02\n    policy: default\n", []string{"t.yaml:2: cases[0]: missing name"}},
		{"missing at", "cases:\n  - name: a\n    policy: default\n", []string{`t.yaml:2: case "a": missing at`}},
		{"expects nothing", "cases:\n  - name: a\n    at: 2026-03-02\n", []string{`case "a": expects nothing`}},
		{"duplicate name", "cases:\n  - {name: a, at: 2026-03-02, policy: x}\n  - {name: a, at: 2026-03-02, policy: x}\n",
			[]string{`t.yaml:3: cases[1]: name "a" is already used at line 2`}},
		{"unknown channel", "cases:\n  - name: a\n    at: 2026-03-02\n    steps:\n      - {alice: [pager]}\n",
			[]string{`line 5: steps[0]: alice: unknown channel "pager"`}},
		{"steps not a list", "cases:\n  - name: a\n    at: 2026-03-02\n    steps: {alice: matrix}\n", []string{"line 4: steps: want a list"}},
		{"oncall not a map", "cases:\n  - name: a\n    at: 2026-03-02\n    oncall: [alice]\n", []string{"line 4: oncall: want rotation: person"}},
		{"labels not a map", "cases:\n  - name: a\n    at: 2026-03-02\n    policy: x\n    labels: [a]\n", []string{"t.yaml:2: cases[0]:", "cannot unmarshal"}},
		{"oversized", "cases:\n" + strings.Repeat("#", rota.MaxFileSize), []string{"file larger than"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f, err := Parse("t.yaml", []byte(tt.data))
			if err == nil {
				t.Fatalf("accepted: %+v", f)
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q lacks %q", err, w)
				}
			}
		})
	}
}

func TestRunReportsEachFailure(t *testing.T) {
	r := exampleRota(t)
	tests := []struct {
		name, cases string
		want        []Failure
	}{
		{"all pass", `
  - name: c
    at: 2026-12-26 03:00
    labels: {severity: critical}
    policy: default
    steps: [{dave: matrix}, {dave: pagerduty}, {dave: phone}, {alice: [phone, matrix]}]
    oncall: {primary: dave}
`, nil},
		{"wrong policy names the route that matched", `
  - name: c
    at: 2026-12-26 03:00
    labels: {severity: info}
    policy: default
    steps: [{dave: matrix}]
`, []Failure{{Pos: "t.yaml:5", What: "policy", Want: "default", Got: "low (routes[0], " + r.Source + ":155)"}}},
		{"wrong person and channels", `
  - name: c
    at: 2026-12-26 03:00
    labels: {severity: warning}
    steps:
      - {carol: [matrix]}
      - {alice: [matrix, sms]}
`, []Failure{
			{Pos: "t.yaml:6", What: "steps[0]", Want: "{carol: [matrix]}", Got: "{dave: [matrix]}"},
			{Pos: "t.yaml:7", What: "steps[1]", Want: "{alice: [matrix, sms]}", Got: "{alice: [matrix]}"},
		}},
		{"missing steps", `
  - name: c
    at: 2026-12-26 03:00
    labels: {severity: warning}
    steps:
      - {dave: [matrix]}
`, []Failure{{Pos: "t.yaml:6", What: "steps", Want: "1 steps", Got: "2 steps in policy low"}}},
		{"fallback", `
  - name: c
    at: 2026-12-26 03:00
    fallback: {alice: [phone]}
`, []Failure{{Pos: "t.yaml:4", What: "fallback", Want: "{alice: [phone]}",
			Got: "{alice: [matrix, pagerduty, phone, sms], bob: [matrix, pagerduty, phone, sms], carol: [matrix, pagerduty, phone, sms], dave: [matrix, pagerduty, phone, sms]}"}}},
		{"on call", `
  - name: c
    at: 2026-12-26 03:00
    oncall:
      primary: carol
      tertiary: bob
      secondary: nobody
`, []Failure{
			{Pos: "t.yaml:5", What: "oncall.primary", Want: "carol", Got: "dave"},
			{Pos: "t.yaml:7", What: "oncall.secondary", Want: "nobody", Got: "alice"},
			{Pos: "t.yaml:6", What: "oncall.tertiary", Want: "bob", Got: `no rotation "tertiary"`},
		}},
		{"bad time", `
  - name: c
    at: next tuesday
    oncall: {primary: dave}
`, []Failure{{Pos: "t.yaml:3", What: "at", Want: "a time", Got: `invalid time "next tuesday": want RFC 3339, "YYYY-MM-DD HH:MM" or "YYYY-MM-DD"`}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f, err := Parse("t.yaml", []byte("cases:"+tt.cases))
			if err != nil {
				t.Fatal(err)
			}
			got := f.Run(r)
			if len(got) != len(tt.want) {
				t.Fatalf("failures:\n%v\nwant %d", got, len(tt.want))
			}
			for i, w := range tt.want {
				w.Case = "c"
				if got[i] != w {
					t.Errorf("failure %d:\n got %+v\nwant %+v", i, got[i], w)
				}
			}
		})
	}
}
