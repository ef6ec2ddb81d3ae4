package matrix

import (
	"strings"
	"testing"

	"github.com/klaxon-oncall/klaxon/notifiers"
)

func TestParseCommand(t *testing.T) {
	tests := []struct {
		body string
		want notifiers.Action
		ok   bool
	}{
		{"ack", notifiers.Ack, true},
		{"ACK", notifiers.Ack, true},
		{" 1 ", notifiers.Ack, true},
		{"Ack!", notifiers.Ack, true},
		{"acknowledge.", notifiers.Ack, true},
		{"> <@klaxon:example.org> 🚨 Incident #42\n> second quoted line\n\nack", notifiers.Ack, true},
		{"> <@klaxon:example.org> Incident #42\r\n\r\n  1\r\n", notifiers.Ack, true},
		{"2", notifiers.Escalate, true},
		{"Escalate", notifiers.Escalate, true},
		{"resolve", notifiers.Resolve, true},
		{"unack", notifiers.Unack, true},
		{"ack, looking into it", "", false},
		{"12", "", false},
		{"I'll ack later", "", false},
		{"", "", false},
		{"> ack", "", false}, // only a quote
		{"   ", "", false},
		{strings.Repeat(" ", maxCommandBytes) + "ack", "", false}, // oversized
	}
	for _, tc := range tests {
		got, ok := parseCommand(tc.body)
		if got != tc.want || ok != tc.ok {
			t.Errorf("parseCommand(%.40q) = %q, %v; want %q, %v", tc.body, got, ok, tc.want, tc.ok)
		}
	}
}

func TestParseReaction(t *testing.T) {
	tests := []struct {
		key string
		ok  bool
	}{
		{"✅", true},
		{"✅\uFE0F", true},
		{"👍", true},
		{"👍\uFE0F", true},
		{"👍🏽", true},
		{"✔️", true},
		{"👎", false},
		{"❌", false},
		{"ack", false},
		{"", false},
		{strings.Repeat("✅", 30), false},
	}
	for _, tc := range tests {
		got, ok := parseReaction(tc.key)
		if ok != tc.ok || (ok && got != notifiers.Ack) {
			t.Errorf("parseReaction(%q) = %q, %v; want ack=%v", tc.key, got, ok, tc.ok)
		}
	}
}

func TestTxnID(t *testing.T) {
	tests := []struct{ page, suffix, want string }{
		{"out-42-1", "", "out-42-1"},
		{"out-42-1", "edit", "out-42-1.edit"},
	}
	for _, tc := range tests {
		if got := txnID(tc.page, tc.suffix); got != tc.want {
			t.Errorf("txnID(%q, %q) = %q, want %q", tc.page, tc.suffix, got, tc.want)
		}
	}
	// Unsafe or long ids are hashed, stably and distinctly.
	a, b := txnID("a/b?c", ""), txnID("a/b?d", "")
	if a == b || a != txnID("a/b?c", "") || !txnSafe.MatchString(a) {
		t.Errorf("hashed txn ids %q, %q", a, b)
	}
	if long := txnID(strings.Repeat("x", 200), ""); len(long) > 64 {
		t.Errorf("long id not hashed: %q", long)
	}
}

func TestRenderAlertsOverflowCount(t *testing.T) {
	p := testPage()
	for i := 0; i < 11; i++ {
		p.Alerts = append(p.Alerts, p.Alerts[0])
	}
	small, extra := compactPage(p)
	c := renderPage(small, "", nil, extra)
	if !strings.Contains(c.Body, "Alerts (12):") || !strings.Contains(c.Body, "… and 2 more") {
		t.Errorf("body does not count the alerts left out:\n%s", c.Body)
	}
}
