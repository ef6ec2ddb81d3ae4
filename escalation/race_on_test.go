//go:build race

package escalation_test

// raceEnabled: the race detector slows the model-based test about tenfold,
// so -race runs fewer seeds by default (CI also runs the full set without it).
const raceEnabled = true
