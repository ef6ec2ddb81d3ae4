package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"text/tabwriter"
	"time"

	"github.com/klaxon-oncall/klaxon/escalation/rota"
	"github.com/klaxon-oncall/klaxon/internal/selftest"
	"github.com/klaxon-oncall/klaxon/notifiers"
)

// memState is a StateStore in memory, for one-shot commands that must not
// touch a running server's database.
type memState struct {
	mu sync.Mutex
	m  map[string][]byte
}

func (s *memState) GetState(_ context.Context, bucket, key string) ([]byte, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.m[bucket+"\x00"+key], nil
}

func (s *memState) PutState(_ context.Context, bucket, key string, v []byte) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.m == nil {
		s.m = map[string][]byte{}
	}
	s.m[bucket+"\x00"+key] = append([]byte(nil), v...)
	return nil
}

// noResponder refuses responses: one-shot commands take none.
type noResponder struct{}

func (noResponder) Respond(context.Context, notifiers.Response) (notifiers.Outcome, error) {
	return notifiers.Outcome{}, fmt.Errorf("klaxon is not serving")
}
func (noResponder) Report(context.Context, notifiers.Report) error { return nil }

// oneShotChannels builds the configured channels for a check that pages nobody.
func oneShotChannels(c *channelFlags, log *slog.Logger) (*channelSet, error) {
	if err := c.resolve(); err != nil {
		return nil, err
	}
	return c.build(channelDeps{log: log, store: &memState{}, responder: noResponder{}})
}

// runSelftest checks every configured channel's account once and prints a
// table; it exits 1 if anything is down (for cron and CI).
func runSelftest(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("klaxon selftest", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var c channelFlags
	c.declare(fs, map[string]string{})
	if err := fs.Parse(args); err != nil {
		return exitFlag(err)
	}
	chans, err := oneShotChannels(&c, slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelWarn})))
	if err != nil {
		fmt.Fprintln(stderr, "klaxon selftest:", err)
		return 2
	}
	if len(chans.testers) == 0 {
		fmt.Fprintln(stderr, "klaxon selftest: no channel is configured (see README: Channels)")
		return 1
	}
	if !selftest.RunOnce(ctx, chans.testers, stdout) {
		return 1
	}
	return 0
}

// rotaChannelsCheck adds --channels to `klaxon rota check`: everyone on call in
// the next 7 days must be reachable on a channel that is configured and up.
func rotaChannelsCheck(fs *flag.FlagSet) func(r *rota.Rota, stdout, stderr io.Writer) int {
	on := fs.Bool("channels", false, "also check the channels' accounts and that everyone on call in the next 7 days can be reached")
	var c channelFlags
	c.declare(fs, map[string]string{})
	return func(r *rota.Rota, stdout, stderr io.Writer) int {
		if !*on {
			return 0
		}
		chans, err := oneShotChannels(&c, slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelWarn})))
		if err != nil {
			fmt.Fprintln(stderr, "klaxon rota check --channels:", err)
			return 2
		}
		up := map[notifiers.Channel]bool{}
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		for ch, t := range chans.testers {
			up[ch] = t.SelfTest(ctx).Status != notifiers.Down
		}
		for _, ch := range chans.channels() {
			if _, ok := chans.testers[ch]; !ok {
				up[ch] = true
			}
		}
		problems := selftest.RotaCoverage(r, time.Now(), selftest.DefaultCoverageHorizon, chans.channels(), func(ch notifiers.Channel) bool { return up[ch] })
		for _, p := range problems {
			fmt.Fprintln(stderr, "coverage:", p)
		}
		if len(problems) > 0 {
			return 1
		}
		fmt.Fprintln(stdout, "everyone on call in the next 7 days can be reached")
		return 0
	}
}

// runStatus prints the channels' health as a running server sees it.
func runStatus(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("klaxon status", flag.ContinueOnError)
	fs.SetOutput(stderr)
	env := map[string]string{}
	var c clientFlags
	c.declare(fs, env, false)
	if err := fs.Parse(args); err != nil {
		return exitFlag(err)
	}
	if err := c.finish(fs, env); err != nil {
		fmt.Fprintln(stderr, "klaxon status:", err)
		return 2
	}
	if c.server == "" {
		c.server = "http://127.0.0.1:9797"
	}
	var rep selftest.Report
	if err := c.call(ctx, http.MethodGet, "/api/v1/channels", &rep); err != nil {
		fmt.Fprintln(stderr, "klaxon status:", err)
		return 1
	}
	tw := tabwriter.NewWriter(stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "CHANNEL\tSTATUS\tSINCE\tLAST SUCCESS\tLAST DELIVERY\tREASON")
	down := false
	for _, ch := range rep.Channels {
		if ch.Status == notifiers.Down {
			down = true
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", ch.Channel, ch.Status, when(ch.Since), when(ch.LastSuccess), when(ch.LastDelivered), dash(ch.Reason))
	}
	tw.Flush()
	b, _ := json.Marshal(rep.Watchdog)
	fmt.Fprintf(stdout, "watchdog: %s\n", b)
	var cl leaderInfo
	if err := c.call(ctx, http.MethodGet, "/api/v1/cluster", &cl); err != nil {
		fmt.Fprintln(stdout, "replicas: unknown:", err)
		return 1
	}
	printCluster(stdout, cl)
	if down {
		return 1
	}
	return 0
}

// printCluster shows the replicas, the leader and its lease.
func printCluster(w io.Writer, cl leaderInfo) {
	if cl.Store != "etcd" {
		fmt.Fprintf(w, "store: %s (one replica, always the leader)\n", cl.Store)
		return
	}
	role := "follower"
	if cl.Leading {
		role = "leader"
	}
	fmt.Fprintf(w, "store: etcd; this replica: %s (%s)\n", cl.Replica, role)
	if cl.Leader == "" {
		fmt.Fprintln(w, "leader: none (election in progress or etcd unreachable)")
	} else {
		fmt.Fprintf(w, "leader: %s, lease %s, %s left\n", cl.Leader, cl.LeaseTTL, dash(cl.LeaseLeft))
	}
	fmt.Fprintf(w, "replicas: %s\n", strings.Join(cl.Candidates, ", "))
}

func when(t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	return t.Local().Format("2006-01-02 15:04")
}
