package e2e

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"
)

// writeRota writes a rota for end-to-end tests: alice is always on call for
// primary and bob for secondary; policy is the YAML of the "default" policy's
// steps. Matrix ids live on matrixServer.
func writeRota(t testing.TB, matrixServer, steps string) string {
	t.Helper()
	return writeRotaSelftest(t, matrixServer, steps, `
      - {notify: primary, via: [matrix, phone], wait: 1m}`)
}

// writeRotaSelftest is writeRota with the steps of the selftest policy, which
// pages Klaxon's own alarms.
func writeRotaSelftest(t testing.TB, matrixServer, steps, selftestSteps string) string {
	t.Helper()
	y := fmt.Sprintf(`timezone: UTC
people:
  alice: {name: Alice Archer, phone: "+15555550101", matrix: "@alice:%[1]s", pagerduty: PALICE1}
  bob:   {name: Bob Baker, phone: "+15555550102", matrix: "@bob:%[1]s", pagerduty: PBOB002}
rotations:
  primary:   {members: [alice], shift: 7d, handoff: "monday 09:00", start: 2026-01-05}
  secondary: {members: [bob], shift: 7d, handoff: "monday 09:00", start: 2026-01-05}
policies:
  default:
    steps:
%[2]s
  selftest:
    steps:
%[3]s
routes:
  - policy: default
owners: [alice]
`, matrixServer, steps, selftestSteps)
	path := filepath.Join(t.TempDir(), "rota.yaml")
	if err := os.WriteFile(path, []byte(y), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}
