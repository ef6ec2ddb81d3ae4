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
		fmt.Fprintln(stderr, "klaxon selftest: no channel is configured (see docs/channels/)")
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
	code := 0
	// Either answer alone is worth showing: with etcd down the channels
	// cannot be read, while the replica still tells what it knows.
	if err := c.call(ctx, http.MethodGet, "/api/v1/channels", &rep); err != nil {
		fmt.Fprintln(stdout, "channels: unknown:", err)
		code = 1
	} else if printChannels(stdout, rep) {
		code = 1
	}
	var cl leaderInfo
	if err := c.call(ctx, http.MethodGet, "/api/v1/cluster", &cl); err != nil {
		fmt.Fprintln(stdout, "replicas: unknown:", err)
		return 1
	}
	printCluster(stdout, cl)
	return code
}

// printChannels shows the channels' verdicts and reports whether one is down.
func printChannels(stdout io.Writer, rep selftest.Report) bool {
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
	if rep.RecordedBy != "" {
		age := ""
		if rep.Age != nil {
			age = fmt.Sprintf(" (%s ago)", (time.Duration(*rep.Age) * time.Second).Round(time.Second))
		}
		fmt.Fprintf(stdout, "checks: recorded by %s at %s%s\n", rep.RecordedBy, when(rep.RecordedAt), age)
	}
	b, _ := json.Marshal(rep.Watchdog)
	fmt.Fprintf(stdout, "watchdog: %s\n", b)
	if hb := rep.Heartbeat; hb != nil && hb.Configured {
		fmt.Fprintf(stdout, "heartbeat: last ok %s, last try %s %s\n", when(hb.LastOK), when(hb.LastTry), dash(hb.Error))
	}
	for k, title := range rep.Alarms {
		fmt.Fprintf(stdout, "alarm %s: %s\n", k, title)
	}
	return down
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
	if cl.ElectionError != "" {
		fmt.Fprintf(w, "election: %s; leader and replicas as last read at %s\n", cl.ElectionError, when(cl.ElectionReadAt))
	}
	if e := cl.Etcd; e != nil {
		answer := 0
		for _, m := range e.Members {
			if m.Reachable {
				answer++
			}
		}
		if e.Reachable {
			fmt.Fprintf(w, "etcd: reachable, %d of %d members answer\n", answer, len(e.Members))
		} else {
			fmt.Fprintf(w, "etcd: %s; last contact %s\n", strings.TrimPrefix(e.Error, "etcd "), when(e.LastContact))
		}
		for _, m := range e.Members {
			state := "answers"
			if m.Leader {
				state = fmt.Sprintf("answers, Raft leader (term %d)", m.RaftTerm)
			}
			if !m.Reachable {
				state = "does not answer: " + m.Error + "; last contact " + when(m.LastContact)
			} else if m.Error != "" {
				state += ": " + m.Error
			}
			fmt.Fprintf(w, "  member %s: %s\n", m.Endpoint, state)
		}
	}
}

func when(t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	return t.Local().Format("2006-01-02 15:04")
}
