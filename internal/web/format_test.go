package web

import (
	"context"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/klaxon-oncall/klaxon/escalation"
)

// TestPagesDropFormatCharacters: an incident stored with bidirectional
// overrides in its labels (before the webhook stripped them, or written
// by another path) is shown without them.
func TestPagesDropFormatCharacters(t *testing.T) {
	f := newFixture(t, nil)
	now := time.Now()
	labels := map[string]string{"alertname": "Disk\u202eFull", "severity": "critical", "instance": "db\u200b-1"}
	res, err := f.eng.Ingest(context.Background(), escalation.Notification{GroupKey: "g", Status: "firing", CommonLabels: labels,
		Alerts: []escalation.Alert{{Fingerprint: "fp", Status: "firing", StartsAt: now, Labels: labels,
			Annotations: map[string]string{"summary": "evil\u2066 text"}}}})
	if err != nil {
		t.Fatal(err)
	}
	alice := f.signIn(aliceToken)
	for _, path := range []string{"/", "/incidents/" + strconv.FormatUint(res.Incident, 10)} {
		r := f.do("GET", path, nil, alice, nil)
		if r.code != 200 || strings.ContainsAny(r.body, "\u202e\u200b\u2066") || !strings.Contains(r.body, "DiskFull") {
			t.Errorf("%s: %d, shows a format character or lost the text", path, r.code)
		}
	}
}
