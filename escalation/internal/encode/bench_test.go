package encode

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/klaxon-oncall/klaxon/escalation"
	"github.com/klaxon-oncall/klaxon/notifiers"
)

// BenchmarkEncode compares encode with encoding/json on records as one
// webhook's ingest writes them.
//
//	go test -run '^$' -bench Encode -count 6 ./escalation/internal/encode/ | benchstat -col /by -
func BenchmarkEncode(b *testing.B) {
	at := time.Date(2026, 11, 26, 23, 33, 0, 123456789, time.UTC)
	labels := map[string]string{"alertname": "DiskFull", "instance": "db-1:9100", "severity": "critical"}
	inc := &escalation.Incident{ID: 41237, GroupKey: `{}/{severity="critical"}:{alertname="DiskFull"}`, State: escalation.Open,
		Title: "DiskFull", Severity: "critical", Receiver: "klaxon", ExternalURL: "http://am.example:9093",
		GroupLabels: map[string]string{"alertname": "DiskFull"}, CommonLabels: labels,
		CommonAnnotations: map[string]string{"summary": "Disk full on db-1"},
		Alerts: []escalation.Alert{{Fingerprint: "5f2a9c1e0b7d3a48", Status: "firing", Labels: labels,
			Annotations: map[string]string{"summary": "Disk full on db-1"}, StartsAt: at, GeneratorURL: "http://prom.example:9090/graph"}},
		OpenedAt: at, UpdatedAt: at, Escalation: escalation.Escalation{Policy: "default", Started: true, Generation: 1, StepAt: at, NextAt: at.Add(5 * time.Minute)}}
	ev := &escalation.Event{At: at, Kind: escalation.EvPaged, Text: "paged Alice via sms", Channel: "sms", PageID: "41237-1"}
	page := &escalation.PageRecord{ID: "41237-1", Incident: 41237, Seq: 1, Kind: notifiers.KindPage, Channel: notifiers.SMS,
		Recipient:  notifiers.Recipient{PersonID: "alice", Name: "Alice", Phone: "+15550100", MatrixID: "@alice:example.org"},
		Generation: 1, Status: escalation.PageSent, Attempts: 1, CreatedAt: at, ProviderID: "SM0123456789abcdef0123456789abcdef"}
	run := func(name string, enc func([]byte) ([]byte, error), v any) {
		b.Run(name+"/by=json", func(b *testing.B) {
			for b.Loop() {
				if _, err := json.Marshal(v); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run(name+"/by=encode", func(b *testing.B) {
			for b.Loop() {
				if _, err := enc(nil); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
	run("incident", func(buf []byte) ([]byte, error) { return Incident(buf, inc) }, inc)
	run("event", func(buf []byte) ([]byte, error) { return Event(buf, ev) }, ev)
	run("page", func(buf []byte) ([]byte, error) { return Page(buf, page) }, page)
}
