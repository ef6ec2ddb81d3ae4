// Command klaxon is Klaxon's server and command-line tool: it takes
// Alertmanager webhooks, pages the on-call person through Matrix, PagerDuty and
// the phone until someone acknowledges, and checks its own channels.
//
// Wiring of concrete channels, store and rota happens here and only here.
package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/klaxon-oncall/klaxon/internal/importer"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

const usage = `klaxon: alert routing and escalation for Prometheus Alertmanager

Usage:
  klaxon serve [flags]                 run the server (webhooks, escalation, API)
  klaxon incidents [--state S]         list incidents (newest first)
  klaxon incidents show ID             one incident with its timeline
  klaxon ack|unack|escalate|resolve ID act on an incident through a running server
  klaxon rota check|show|diff|ics|test check, explore and test rota.yaml
  klaxon token create|list|revoke      named API tokens (--person) and calendar feed tokens (--feed)
  klaxon token sessions [end ID]       the web sessions, and ending one
  klaxon simulate [flags]              run the real engine on a fake clock and print the timeline
  klaxon route --labels k=v,...        which route and policy an alert takes, and who each step pages now
  klaxon selftest                      check every configured channel's account once (exit 1 if one is down)
  klaxon status                        channel health, replicas and leader as a running server sees them
  klaxon import pagerduty|opsgenie|grafana-oncall|goalert [--write] [--verify]
                                       write rota.yaml from another on-call tool, checked against it
  klaxon migrate --from bolt://DIR --to etcd://HOSTS/PREFIX/
                                       copy a stopped single-node store into etcd
  klaxon version                       print the version

Run 'klaxon COMMAND -h' for a command's flags.
`

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdin, os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// run dispatches a command line; it returns the process exit code.
func run(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return 2
	}
	cmd, rest := args[0], args[1:]
	switch cmd {
	case "serve":
		return runServe(ctx, rest, stdout, stderr)
	case "incidents":
		return runIncidents(ctx, rest, stdout, stderr)
	case "ack", "unack", "escalate", "resolve":
		return runAct(ctx, cmd, rest, stdout, stderr)
	case "rota":
		return runRota(rest, stdout, stderr, rotaEnv{now: time.Now, check: rotaChannelsCheck})
	case "token":
		return runToken(rest, stdout, stderr, time.Now)
	case "selftest":
		return runSelftest(ctx, rest, stdout, stderr)
	case "status":
		return runStatus(ctx, rest, stdout, stderr)
	case "simulate":
		return runSimulate(ctx, rest, stdout, stderr)
	case "route":
		return runRoute(rest, stdout, stderr, time.Now)
	case "migrate":
		return runMigrate(ctx, rest, stdout, stderr)
	case "import":
		return runImport(ctx, rest, stdout, stderr, importEnv{now: time.Now, transport: &importer.RetryTransport{}})
	case "version", "--version":
		fmt.Fprintln(stdout, "klaxon", version)
		return 0
	case "help", "-h", "--help":
		fmt.Fprint(stdout, usage)
		return 0
	}
	fmt.Fprintf(stderr, "klaxon: unknown command %q\n\n%s", cmd, usage)
	return 2
}
