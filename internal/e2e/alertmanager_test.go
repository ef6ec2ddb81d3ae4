package e2e

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/klaxon-oncall/klaxon/internal/e2e/harness"
)

type incidentJSON struct {
	ID       uint64 `json:"id"`
	GroupKey string `json:"groupKey"`
	State    string `json:"state"`
	Title    string `json:"title"`
	Alerts   []struct {
		Fingerprint string            `json:"fingerprint"`
		Status      string            `json:"status"`
		Labels      map[string]string `json:"labels"`
	} `json:"alerts"`
	Escalation struct {
		NextAt    time.Time `json:"nextAt"`
		Exhausted bool      `json:"exhausted"`
	} `json:"escalation"`
	AckedBy  string `json:"acknowledgedBy"`
	Timeline []struct {
		Kind string `json:"kind"`
		Text string `json:"text"`
	} `json:"timeline"`
}

func incidents(t *testing.T, k *harness.Klaxon, query string) []incidentJSON {
	t.Helper()
	var out struct{ Incidents []incidentJSON }
	code, err := k.Do(context.Background(), "GET", "/api/v1/incidents"+query, nil, &out)
	if err != nil || code != 200 {
		t.Fatalf("listing incidents: %d %v", code, err)
	}
	// Leave out Klaxon's own alarms (with no channel configured, the
	// coverage check raises one).
	var list []incidentJSON
	for _, inc := range out.Incidents {
		if !strings.HasPrefix(inc.GroupKey, "klaxon-alarm:") {
			list = append(list, inc)
		}
	}
	return list
}

// TestAlertmanagerToIncident runs a real Alertmanager against klaxon serve:
// alerts posted to Alertmanager become incidents, resolving them in
// Alertmanager resolves the incidents.
func TestAlertmanagerToIncident(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a real Alertmanager")
	}
	k := harness.StartKlaxon(t, harness.KlaxonConfig{WebhookToken: "wh-e2e-token", APIToken: "api-e2e-token"})
	am := harness.StartAlertmanager(t, harness.AlertmanagerConfig{
		WebhookURL: k.URL() + "/webhook/alertmanager", BearerToken: "wh-e2e-token", GroupBy: []string{"alertname"},
	})
	disk := harness.AMAlert{Labels: map[string]string{"alertname": "DiskFull", "instance": "db-1", "severity": "critical"},
		Annotations: map[string]string{"summary": "Disk full on db-1"}, GeneratorURL: "http://prometheus.example/graph"}
	load := harness.AMAlert{Labels: map[string]string{"alertname": "HighLoad", "instance": "web-1", "severity": "warning"}}
	am.PostAlerts(t, disk, load)

	harness.Eventually(t, 30*time.Second, func() (bool, string) {
		list := incidents(t, k, "?state=open")
		return len(list) == 2, fmt.Sprintf("%d open incidents", len(list))
	})
	byName := map[string]incidentJSON{}
	for _, inc := range incidents(t, k, "") {
		byName[inc.Alerts[0].Labels["alertname"]] = inc
	}
	d := byName["DiskFull"]
	if d.Alerts[0].Fingerprint != disk.Fingerprint() || d.GroupKey != harness.AMGroupKey(map[string]string{"alertname": "DiskFull"}) {
		t.Fatalf("DiskFull incident = %+v", d)
	}
	if d.Title != "DiskFull: Disk full on db-1" {
		t.Errorf("title %q", d.Title)
	}

	am.Resolve(t, disk.Labels)
	harness.Eventually(t, 30*time.Second, func() (bool, string) {
		var inc incidentJSON
		k.Do(context.Background(), "GET", fmt.Sprintf("/api/v1/incidents/%d", d.ID), nil, &inc)
		return inc.State == "resolved", "DiskFull incident is " + inc.State
	})
	if list := incidents(t, k, "?state=open"); len(list) != 1 || list[0].Alerts[0].Labels["alertname"] != "HighLoad" {
		t.Fatalf("open after resolving DiskFull: %+v", list)
	}
	// Alertmanager fires the group again later: a new incident.
	disk.StartsAt = time.Now()
	am.PostAlerts(t, disk)
	harness.Eventually(t, 30*time.Second, func() (bool, string) {
		list := incidents(t, k, "?state=open")
		return len(list) == 2, fmt.Sprintf("%d open incidents after the refire", len(list))
	})
	if list := incidents(t, k, ""); len(list) != 3 {
		t.Fatalf("want 3 incidents in all (the refire is a new one), got %d", len(list))
	}
}
