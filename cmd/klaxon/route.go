package main

import (
	"bytes"
	"flag"
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/klaxon-oncall/klaxon/escalation/rota"
	"github.com/klaxon-oncall/klaxon/notifiers"
)

// runRoute prints which route the labels match (with its line), the policy,
// and who each step would page at the given time: the one-shot companion of
// simulate.
func runRoute(args []string, stdout, stderr io.Writer, now func() time.Time) int {
	fs := flag.NewFlagSet("klaxon route", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintln(fs.Output(), "usage: klaxon route --labels k=v,... [--at TIME] [--rota FILE]")
		fs.PrintDefaults()
	}
	labels := fs.String("labels", "", "the alert's labels, k=v,k=v (required)")
	at := fs.String("at", "", `when the alert fires: RFC 3339, or "YYYY-MM-DD HH:MM" in the rota's time zone (default now)`)
	rotaPath := fs.String("rota", "./rota.yaml", "the rota")
	if err := fs.Parse(args); err != nil {
		return exitFlag(err)
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "klaxon route: unexpected argument %q\n", fs.Arg(0))
		return 2
	}
	if *labels == "" {
		fmt.Fprintln(stderr, "klaxon route: --labels is required, e.g. --labels alertname=DiskFull,severity=critical")
		return 2
	}
	lbls, err := parseLabels(*labels)
	if err != nil {
		fmt.Fprintln(stderr, "klaxon route: --labels:", err)
		return 2
	}
	r, _, ok := rotaLoad(*rotaPath, stderr)
	if !ok {
		return 1
	}
	t, err := rotaTime(*at, r.Location, now)
	if err != nil {
		fmt.Fprintln(stderr, "klaxon route: --at:", err)
		return 2
	}
	out, err := describeRoute(r, lbls, t)
	if err != nil {
		fmt.Fprintln(stderr, "klaxon route:", err)
		return 1
	}
	_, err = io.WriteString(stdout, out)
	if err != nil {
		return 1
	}
	return 0
}

// describeRoute renders the route labels match and who the policy's steps
// page at t.
func describeRoute(r *rota.Rota, labels map[string]string, t time.Time) (string, error) {
	p, i, err := r.Match(labels)
	if err != nil {
		return "", err
	}
	rt := r.Routes[i]
	loc := r.Location
	var b bytes.Buffer
	var kv []string
	for _, k := range slices.Sorted(maps.Keys(labels)) {
		kv = append(kv, fmt.Sprintf("%s=%q", k, labels[k]))
	}
	fmt.Fprintf(&b, "Labels {%s} at %s\n", strings.Join(kv, ", "), t.In(loc).Format(rotaShowFmt))
	match := "default route (no match)"
	if len(rt.Matchers) > 0 {
		var ms []string
		for _, m := range rt.Matchers {
			ms = append(ms, m.String())
		}
		match = "match [" + strings.Join(ms, ", ") + "]"
	}
	fmt.Fprintf(&b, "Route:  routes[%d] at %s:%d, %s\n", i, r.Source, rt.Line, match)
	fmt.Fprintf(&b, "Policy: %s (%d %s, repeat %d, ack_timeout %s)\n\n", p.ID, len(p.Steps), plural(len(p.Steps), "step", "steps"), p.Repeat, rotaSpan(p.AckTimeout))
	tw := tabwriter.NewWriter(&b, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "STEP\tNOTIFY\tVIA\tWAIT\tPAGES NOW")
	for n, st := range p.Steps {
		fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\n", n+1, targetList(st.Targets), channelList(st.Channels), rotaSpan(st.Wait),
			pagedList(r, r.StepPages(st.Targets, st.Channels, t)))
	}
	if len(p.Fallback) > 0 {
		fmt.Fprintf(tw, "fallback\t%s\tevery channel\t-\t%s\n", targetList(p.Fallback), pagedList(r, r.StepPages(p.Fallback, notifiers.Channels, t)))
	}
	if err := tw.Flush(); err != nil {
		return "", err
	}
	var out strings.Builder
	for line := range strings.Lines(b.String()) {
		out.WriteString(strings.TrimRight(line, " \n") + "\n")
	}
	return out.String(), nil
}

func targetList(ts []rota.Target) string {
	var s []string
	for _, t := range ts {
		s = append(s, t.String())
	}
	return strings.Join(s, ", ")
}

func channelList(cs []notifiers.Channel) string {
	var s []string
	for _, c := range cs {
		s = append(s, string(c))
	}
	return strings.Join(s, ", ")
}

// pagedList renders who a step pages: "Dave Diaz (dave) on matrix, phone; ...".
func pagedList(r *rota.Rota, ps []rota.Paged) string {
	if len(ps) == 0 {
		return "nobody"
	}
	var s []string
	for _, p := range ps {
		s = append(s, rotaPerson(r, p.Person)+" on "+channelList(p.Channels))
	}
	return strings.Join(s, "; ")
}
