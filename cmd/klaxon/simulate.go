package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/klaxon-oncall/klaxon/escalation"
	"github.com/klaxon-oncall/klaxon/escalation/boltstore"
	"github.com/klaxon-oncall/klaxon/escalation/rota"
	"github.com/klaxon-oncall/klaxon/notifiers"
	"github.com/klaxon-oncall/klaxon/notifiers/recorder"
)

// runSimulate runs the real engine on a fake clock with recording channels and
// prints who is paged, when and how: a rota edit can be tried before it merges.
func runSimulate(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("klaxon simulate", flag.ContinueOnError)
	fs.SetOutput(stderr)
	rotaPath := fs.String("rota", "./rota.yaml", "the rota to try")
	at := fs.String("at", "", `when the alert fires: RFC 3339, or "2006-01-02 15:04" in the rota's time zone (default now)`)
	labels := fs.String("labels", "alertname=Simulated,severity=critical", "the alert's labels, k=v,k=v")
	ackAfter := fs.Duration("ack-after", 0, "the paged person acknowledges this long after the alert fires")
	noAck := fs.Bool("no-ack", false, "nobody acknowledges (the default unless --ack-after is given)")
	fail := fs.String("fail", "", "channels that fail permanently, e.g. pagerduty or pagerduty,phone")
	down := fs.String("down", "", "channels whose self-test says down, e.g. phone: skipped while another channel of the step can page, paged anyway when none can")
	horizon := fs.Duration("for", 6*time.Hour, "how long to simulate")
	if err := fs.Parse(args); err != nil {
		return exitFlag(err)
	}
	if *noAck && *ackAfter > 0 {
		fmt.Fprintln(stderr, "klaxon simulate: --no-ack and --ack-after exclude each other")
		return 2
	}
	r, _, err := rota.Load(*rotaPath)
	if err != nil {
		fmt.Fprintf(stderr, "klaxon simulate: %v\n", err)
		return 1
	}
	start := time.Now()
	if *at != "" {
		if start, err = rota.ParseTime(*at, r.Location); err != nil {
			fmt.Fprintln(stderr, "klaxon simulate: --at:", err)
			return 2
		}
	}
	lbls, err := parseLabels(*labels)
	if err != nil {
		fmt.Fprintln(stderr, "klaxon simulate: --labels:", err)
		return 2
	}
	failing, err := parseChannels(*fail)
	if err != nil {
		fmt.Fprintln(stderr, "klaxon simulate: --fail:", err)
		return 2
	}
	downs, err := parseChannels(*down)
	if err != nil {
		fmt.Fprintln(stderr, "klaxon simulate: --down:", err)
		return 2
	}
	out, err := simulate(ctx, r, start, lbls, *ackAfter, failing, downs, *horizon)
	if err != nil {
		fmt.Fprintln(stderr, "klaxon simulate:", err)
		return 1
	}
	fmt.Fprint(stdout, out)
	return 0
}

// parseChannels reads a comma-separated list of channel names.
func parseChannels(s string) (map[notifiers.Channel]bool, error) {
	out := map[notifiers.Channel]bool{}
	for _, c := range strings.Split(s, ",") {
		if c = strings.TrimSpace(c); c == "" {
			continue
		}
		if !notifiers.Channel(c).Valid() {
			return nil, fmt.Errorf("unknown channel %q", c)
		}
		out[notifiers.Channel(c)] = true
	}
	return out, nil
}

func parseLabels(s string) (map[string]string, error) {
	out := map[string]string{}
	for _, kv := range strings.Split(s, ",") {
		if kv = strings.TrimSpace(kv); kv == "" {
			continue
		}
		k, v, ok := strings.Cut(kv, "=")
		if !ok || k == "" {
			return nil, fmt.Errorf("%q is not k=v", kv)
		}
		out[strings.TrimSpace(k)] = strings.TrimSpace(v)
	}
	if len(out) == 0 {
		return nil, errors.New("no labels")
	}
	return out, nil
}

// simulate runs one alert through the engine and returns the timeline as text.
func simulate(ctx context.Context, r *rota.Rota, start time.Time, labels map[string]string, ackAfter time.Duration, failing, down map[notifiers.Channel]bool, horizon time.Duration) (string, error) {
	dir, err := os.MkdirTemp("", "klaxon-simulate-")
	if err != nil {
		return "", err
	}
	defer os.RemoveAll(dir)
	store, err := boltstore.Open(dir, boltstore.Options{NoSync: true})
	if err != nil {
		return "", err
	}
	defer store.Close()
	clock := escalation.NewFakeClock(start)
	var chans []notifiers.Notifier
	for _, c := range notifiers.Channels {
		rec := recorder.New(c)
		if failing[c] {
			rec.FailWith(func(notifiers.Page) error {
				return notifiers.Permanent("simulated", fmt.Errorf("%s fails (--fail)", c))
			})
		}
		chans = append(chans, rec)
	}
	er := rota.ForEngine(r)
	health := func(c notifiers.Channel) escalation.ChannelHealth {
		if down[c] {
			return escalation.ChannelHealth{Configured: true, Down: true, Since: start, Reason: "self-test failed (--down)"}
		}
		return escalation.ChannelHealth{Configured: true}
	}
	eng := escalation.New(escalation.Config{Store: store, Rota: func() escalation.Rota { return er }, Notifiers: chans, Clock: clock, Inline: true, Health: health})
	alert := escalation.Alert{Fingerprint: "simulated", Status: "firing", Labels: labels, StartsAt: start,
		Annotations: map[string]string{"summary": "simulated alert"}}
	res, err := eng.Ingest(ctx, escalation.Notification{GroupKey: "simulate", Status: "firing", CommonLabels: labels, Alerts: []escalation.Alert{alert}})
	if err != nil {
		return "", err
	}
	if res.Incident == 0 {
		return "", errors.New("the alert opened no incident")
	}
	end := start.Add(horizon)
	acked := ackAfter <= 0
	for {
		next, ok := eng.NextDeadline()
		if !acked && (!ok || !next.Before(start.Add(ackAfter))) && start.Add(ackAfter).Before(end) {
			clock.Set(start.Add(ackAfter))
			acked = true
			who := lastPaged(ctx, store, res.Incident)
			if _, err := eng.Act(ctx, res.Incident, notifiers.Ack, who); err != nil {
				return "", err
			}
			continue
		}
		if !ok || next.After(end) {
			break
		}
		clock.Set(next)
		eng.RunDue(ctx)
	}
	inc, err := store.Incident(ctx, res.Incident)
	if err != nil {
		return "", err
	}
	tl, err := store.Timeline(ctx, res.Incident)
	if err != nil {
		return "", err
	}
	var b strings.Builder
	fmt.Fprintf(&b, "Simulated alert %s firing at %s (rota time zone %s)\n", labelString(labels), start.In(r.Location).Format("Mon 2 Jan 2006 15:04 MST"), r.Location)
	for _, ev := range tl {
		fmt.Fprintf(&b, "  %s  +%-8s %s\n", ev.At.In(r.Location).Format("Mon 15:04:05"), ev.At.Sub(start).Round(time.Second), ev.Text)
	}
	state := string(inc.State)
	if inc.Escalation.Exhausted {
		state += ", escalation exhausted"
	}
	fmt.Fprintf(&b, "After %s the incident is %s.\n", horizon, state)
	return b.String(), nil
}

// lastPaged names the last person paged successfully, who acknowledges in a simulation.
func lastPaged(ctx context.Context, s escalation.Store, id uint64) string {
	pages, _ := s.Pages(ctx, id)
	for i := len(pages) - 1; i >= 0; i-- {
		if p := pages[i]; p.Kind == notifiers.KindPage && p.Status.Sent() {
			return p.Recipient.DisplayName()
		}
	}
	return "the on-call person"
}
