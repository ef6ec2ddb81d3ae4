//go:build !race

package escalation_test

// raceEnabled: see race_on_test.go.
const raceEnabled = false
