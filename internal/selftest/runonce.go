package selftest

import (
	"context"
	"fmt"
	"io"
	"text/tabwriter"
	"time"

	"github.com/klaxon-oncall/klaxon/notifiers"
)

// RunOnce runs every tester once, concurrently, each under DefaultTestTimeout,
// against the real accounts (for `klaxon selftest`), and prints a table:
//
//	CHANNEL    STATUS    TOOK   REASON
//	matrix     up        120ms  logged in as @klaxon:example.org
//	pagerduty  down      2.1s   account expired (402)
//
// It returns false if any channel is down, or if there is nothing to test
// (Klaxon could page nobody); degraded channels still page and count as up.
func RunOnce(ctx context.Context, testers map[notifiers.Channel]notifiers.SelfTester, w io.Writer) bool {
	return runOnce(ctx, testers, w, DefaultTestTimeout)
}

func runOnce(ctx context.Context, testers map[notifiers.Channel]notifiers.SelfTester, w io.Writer, timeout time.Duration) bool {
	if len(testers) == 0 {
		fmt.Fprintln(w, "no channel with a self-test is configured: Klaxon cannot page anyone")
		return false
	}
	results := runTests(ctx, testers, timeout, nil)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "CHANNEL\tSTATUS\tTOOK\tREASON")
	ok := true
	down, degraded := 0, 0
	for _, r := range results {
		status := string(r.h.Status)
		switch r.h.Status {
		case notifiers.Down:
			ok = false
			down++
		case notifiers.Degraded:
			degraded++
			if r.h.WillFail {
				status += " (will fail)"
			}
		}
		reason := r.h.Reason
		if reason == "" {
			reason = "-"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", r.ch, status, r.took.Round(time.Millisecond), reason)
	}
	_ = tw.Flush()
	fmt.Fprintf(w, "%d %s: %d up, %d degraded, %d down\n", len(results), plural(len(results), "channel", "channels"),
		len(results)-down-degraded, degraded, down)
	return ok
}
