// Package e2e holds Klaxon's end-to-end tests: `klaxon serve` as a real
// subprocess, fed by a real Prometheus Alertmanager and paging through a real
// Matrix homeserver and faithful fakes of PagerDuty and Twilio, all on
// 127.0.0.1. The harness that starts them is in package harness.
package e2e
