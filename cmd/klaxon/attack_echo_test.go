package main

import (
	"strings"
	"testing"
)

// TestAttackWebhookErrorEcho: a webhook whose number is half a megabyte
// long is refused with an error that quotes a few hundred bytes of it at
// most, in the answer and in the log.
func TestAttackWebhookErrorEcho(t *testing.T) {
	k := startKlaxon(t, "", nil, nil)
	huge := strings.Repeat("9", 500<<10)
	for name, body := range map[string]string{
		"number":  `{"version":"4","truncatedAlerts":` + huge + `}`,
		"string":  `{"version":"4","groupKey":"g","alerts":[{"status":"firing","labels":{"a":"b"},"startsAt":"` + huge + `"}]}`,
		"garbage": `{"version":"4","groupKey":` + huge + `x}`,
		"field":   `{"` + huge + `":` + huge + `x}`,
	} {
		before := len(k.logs.String())
		resp, answer := do(t, bearer(newReq(t, "POST", k.base+"/webhook/alertmanager", []byte(body)), acWebhookToken))
		if resp.StatusCode != 400 {
			t.Fatalf("%s: %d, want 400", name, resp.StatusCode)
		}
		if len(answer) > 512 {
			t.Errorf("%s: the 400 answer has %d bytes: %.80s…", name, len(answer), answer)
		}
		found := false
		for line := range strings.SplitSeq(k.logs.String()[before:], "\n") {
			if strings.Contains(line, "rejected Alertmanager webhook") {
				found = true
				if len(line) > 1024 {
					t.Errorf("%s: the refusal logged %d bytes", name, len(line))
				}
			}
		}
		if !found {
			t.Errorf("%s: the refusal was not logged", name)
		}
	}
}
