package main

import (
	"bytes"
	"strings"
	"testing"
)

func TestRunRoute(t *testing.T) {
	files := rotaFixture(t, map[string]string{
		"rota.yaml":   rotaExample(t),
		"broken.yaml": strings.Replace(rotaExample(t), "policy: low", "policy: lo", 1),
	})
	tests := []struct {
		name   string
		args   []string
		code   int
		stdout []string // each a line that must appear (after trimming)
		stderr []string
	}{
		{"critical at Christmas", []string{"--labels", "alertname=DiskFull,severity=critical", "--at", "2026-12-26 03:00", "--rota", files["rota.yaml"]}, 0, []string{
			`Labels {alertname="DiskFull", severity="critical"} at Sat 2026-12-26 03:00 GMT`,
			"Route:  routes[1] at " + files["rota.yaml"] + ":157, default route (no match)",
			"Policy: default (4 steps, repeat 1, ack_timeout 4h)",
			"1         on-call of primary     matrix         5m    Dave Diaz (dave) on matrix",
			"4         on-call of secondary   matrix, phone  10m   Alice Archer (alice) on matrix, phone",
			"fallback  everyone in secondary  every channel  -     Dave Diaz (dave) on matrix, pagerduty, phone, sms; Carol Chen (carol) on matrix, pagerduty, phone, sms; Alice Archer (alice) on matrix, pagerduty, phone, sms; Bob Baker (bob) on matrix, pagerduty, phone, sms",
		}, nil},
		{"warning now", []string{"--labels", "severity=warning", "--rota", files["rota.yaml"]}, 0, []string{
			"Route:  routes[0] at " + files["rota.yaml"] + `:155, match [severity=~"warning|info"]`,
			"1     on-call of primary    matrix  30m   Bob Baker (bob) on matrix", // rotaTestNow: 2026-12-20
		}, nil},
		{"before the rota starts nobody is paged", []string{"--labels", "severity=info", "--at", "2025-06-01", "--rota", files["rota.yaml"]}, 0, []string{
			"1     on-call of primary    matrix  30m   nobody",
		}, nil},
		{"labels required", []string{"--rota", files["rota.yaml"]}, 2, nil, []string{"--labels is required"}},
		{"malformed labels", []string{"--labels", "severity", "--rota", files["rota.yaml"]}, 2, nil, []string{`--labels: "severity" is not k=v`}},
		{"malformed time", []string{"--labels", "a=b", "--at", "soon", "--rota", files["rota.yaml"]}, 2, nil, []string{`--at: invalid time "soon"`}},
		{"invalid rota", []string{"--labels", "a=b", "--rota", files["broken.yaml"]}, 1, nil, []string{`broken.yaml:156:13: routes[0].policy: unknown policy "lo"`}},
		{"missing rota", []string{"--labels", "a=b", "--rota", files["rota.yaml"] + ".missing"}, 1, nil, []string{"no such file"}},
		{"stray argument", []string{"--labels", "a=b", "extra"}, 2, nil, []string{`unexpected argument "extra"`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			code := runRoute(tt.args, &stdout, &stderr, rotaTestNow)
			if code != tt.code {
				t.Fatalf("exit %d, want %d\nstdout:\n%s\nstderr:\n%s", code, tt.code, stdout.String(), stderr.String())
			}
			lines := strings.Split(stdout.String(), "\n")
			for _, want := range tt.stdout {
				found := false
				for _, l := range lines {
					found = found || l == want
				}
				if !found {
					t.Errorf("stdout lacks the line %q:\n%s", want, stdout.String())
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
