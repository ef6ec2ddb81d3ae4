package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/klaxon-oncall/klaxon/escalation/rota"
	"github.com/klaxon-oncall/klaxon/internal/importer"
	importgoalert "github.com/klaxon-oncall/klaxon/internal/importer/goalert"
	importoncall "github.com/klaxon-oncall/klaxon/internal/importer/oncall"
	importopsgenie "github.com/klaxon-oncall/klaxon/internal/importer/opsgenie"
	importpd "github.com/klaxon-oncall/klaxon/internal/importer/pagerduty"
	"github.com/klaxon-oncall/klaxon/notifiers"
)

const importUsage = `usage: klaxon import SOURCE [flags]

Read another on-call tool's people, schedules, escalation policies and routes
and write them as rota.yaml and rota_test.yaml. SOURCE is one of:

  pagerduty       token in PAGERDUTY_TOKEN (or PAGERDUTY_TOKEN_FILE)
  goalert         --url of the GoAlert; API key in GOALERT_TOKEN (or GOALERT_TOKEN_FILE)
  grafana-oncall  --url of the OnCall API; token in GRAFANA_ONCALL_TOKEN (or _FILE)
  opsgenie        API key in OPSGENIE_API_KEY (or OPSGENIE_API_KEY_FILE); --url api.eu.opsgenie.com for EU

Credentials come only from the environment or a *_FILE, never from flags.
By default (--dry-run) the rota and the report of what it cannot say as the
source does are printed; --write writes the files. --verify asks the source
who is on call at every hour of the next 28 days and prints every hour the
rota disagrees.

flags:
`

// importVerifyHours is how far --verify looks ahead.
const importVerifyHours = 28 * 24

// importEnv is what klaxon import is wired with.
type importEnv struct {
	now func() time.Time
	// transport sends the source's requests (retrying 429s); tests replace
	// its wait.
	transport http.RoundTripper
}

// importSource makes the reader of one source from its URL flag and secret.
type importSource struct {
	secret string
	make   func(url, secret string, rt http.RoundTripper, loc *time.Location) (importer.Source, error)
}

var importSources = map[string]importSource{
	"pagerduty": {importpd.TokenEnv, func(url, secret string, rt http.RoundTripper, loc *time.Location) (importer.Source, error) {
		s := importpd.New(url, secret, rt)
		s.Location = loc
		return s, nil
	}},
	"grafana-oncall": {importoncall.TokenEnv, func(url, secret string, rt http.RoundTripper, loc *time.Location) (importer.Source, error) {
		s := importoncall.New(url, secret, rt)
		s.Location = loc
		return s, nil
	}},
	"opsgenie": {importopsgenie.KeyEnv, func(url, secret string, rt http.RoundTripper, loc *time.Location) (importer.Source, error) {
		s, err := importopsgenie.New(url, secret, rt)
		if err != nil {
			return nil, err
		}
		s.Location = loc
		return s, nil
	}},
	"goalert": {importgoalert.TokenEnv, func(url, secret string, rt http.RoundTripper, loc *time.Location) (importer.Source, error) {
		s := importgoalert.New(url, secret, rt)
		s.Location = loc
		return s, nil
	}},
}

func runImport(ctx context.Context, args []string, stdout, stderr io.Writer, env importEnv) int {
	fs := flag.NewFlagSet("klaxon import", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), importUsage)
		fs.PrintDefaults()
	}
	url := fs.String("url", "", "the source's API base `URL` (default: the vendor's)")
	dryRun := fs.Bool("dry-run", false, "print the rota and the report, write nothing (the default without --write)")
	write := fs.Bool("write", false, "write rota.yaml and rota_test.yaml into --out")
	out := fs.String("out", ".", "`DIR` that --write writes into")
	force := fs.Bool("force", false, "let --write replace files that exist")
	weeks := fs.Int("weeks", 4, "write `N` weeks of overrides (the source's, and layers rota.yaml cannot say)")
	label := fs.String("route-label", "service", "alert `LABEL` whose value names the source's service, for routes")
	via := fs.String("via", "phone,sms", "`CHANNELS` every imported step pages on (matrix, pagerduty, phone, sms)")
	zone := fs.String("timezone", "", "the rota's time `ZONE` (default: the zone most schedules use)")
	verify := fs.Bool("verify", false, "ask the source who is on call every hour of the next 28 days and compare")
	document := fs.Bool("graphql-document", false, "goalert: print the GraphQL document to create the API key with, and exit")
	pos, err := rotaParse(fs, args)
	if errors.Is(err, flag.ErrHelp) {
		fs.SetOutput(stdout)
		fs.Usage()
		return 0
	}
	if err != nil {
		return 2
	}
	if *dryRun && *write {
		fmt.Fprintln(stderr, "klaxon import: --dry-run and --write contradict each other")
		return 2
	}
	if len(pos) != 1 {
		fmt.Fprintln(stderr, "klaxon import: name one source")
		fs.Usage()
		return 2
	}
	srcDef, ok := importSources[pos[0]]
	if ok && pos[0] == "goalert" && *document {
		fmt.Fprint(stdout, importgoalert.Document)
		return 0
	}
	if ok && pos[0] != "pagerduty" && pos[0] != "opsgenie" && *url == "" {
		fmt.Fprintf(stderr, "klaxon import %s: give --url, the API's address (e.g. https://goalert.example.org, or OnCall's \"OnCall API URL\")\n", pos[0])
		return 2
	}
	if !ok {
		names := make([]string, 0, len(importSources))
		for n := range importSources {
			names = append(names, n)
		}
		slices.Sort(names)
		fmt.Fprintf(stderr, "klaxon import: unknown source %q (sources: %s)\n", pos[0], strings.Join(names, ", "))
		return 2
	}
	if *weeks < 1 || *weeks > 52 {
		fmt.Fprintln(stderr, "klaxon import: --weeks must be from 1 to 52")
		return 2
	}
	if _, err := rota.ParseMatcher(*label + `="x"`); err != nil {
		fmt.Fprintf(stderr, "klaxon import: --route-label %q is not a label name\n", *label)
		return 2
	}
	var chans []string
	for _, c := range strings.Split(*via, ",") {
		c = strings.TrimSpace(c)
		if !notifiers.Channel(c).Valid() || slices.Contains(chans, c) {
			fmt.Fprintf(stderr, "klaxon import: --via: %q is not a channel (matrix, pagerduty, phone, sms) or is named twice\n", c)
			return 2
		}
		chans = append(chans, c)
	}
	var loc *time.Location
	if *zone != "" {
		l, err := time.LoadLocation(*zone)
		if err != nil || *zone == "Local" || strings.HasPrefix(*zone, "/") {
			fmt.Fprintf(stderr, "klaxon import: --timezone: unknown time zone %q\n", *zone)
			return 2
		}
		loc = l
	}
	secret, err := importer.Secret(srcDef.secret)
	if err != nil {
		fmt.Fprintf(stderr, "klaxon import %s: %v\n", pos[0], err)
		return 1
	}
	src, err := srcDef.make(*url, secret, env.transport, loc)
	if err != nil {
		fmt.Fprintf(stderr, "klaxon import %s: %v\n", pos[0], err)
		return 2
	}
	now := env.now()

	m, err := src.Read(ctx, now, *weeks)
	if err != nil {
		fmt.Fprintf(stderr, "klaxon import %s: %v\n", pos[0], err)
		return 1
	}
	res, err := importer.Build(m, importer.Options{
		Now: now, Weeks: *weeks, RouteLabel: *label, Via: chans,
		Comment: "klaxon import " + strings.Join(args, " "),
	})
	if err != nil {
		fmt.Fprintf(stderr, "klaxon import %s: %v\n", pos[0], err)
		return 1
	}
	var report bytes.Buffer
	res.Report.Write(&report, src.Name())

	code := 0
	samples, said := []importer.Sample(nil), "as the importer read "+src.Name()
	var verifyOut bytes.Buffer
	if *verify {
		bad, s, err := res.VerifyWith(ctx, src, now, importVerifyHours)
		if err != nil {
			fmt.Fprintf(stderr, "klaxon import %s --verify: %v\n", pos[0], err)
			return 1
		}
		samples, said = s, "as "+src.Name()+" answered"
		n := importer.Unreported(bad)
		switch {
		case len(bad) == 0:
			fmt.Fprintf(&verifyOut, "Verify: rota.yaml agrees with %s at every hour of the next 28 days.\n", src.Name())
		default:
			fmt.Fprintf(&verifyOut, "Verify: %d of the next %d hours disagree with %s (%d of them explained by the report):\n", len(bad), importVerifyHours, src.Name(), len(bad)-n)
			res.WriteMismatches(&verifyOut, bad)
		}
		if n > 0 {
			fmt.Fprintf(&verifyOut, "Verify FAILED: %d %s the report does not explain.\n", n, plural(n, "hour", "hours"))
			code = 1
		}
	} else {
		_, samples = res.Expected(now, importVerifyHours)
	}
	rotaText := append(slices.Clone(res.YAML), commentBlock(report.String())...)
	tests := res.TestsYAML(samples, "rota.yaml", said)

	if !*write {
		fmt.Fprint(stdout, string(rotaText))
		fmt.Fprint(stdout, verifyOut.String())
		return code
	}
	if err := os.MkdirAll(*out, 0o755); err != nil {
		fmt.Fprintf(stderr, "klaxon import: %v\n", err)
		return 1
	}
	files := []struct {
		name string
		data []byte
	}{{"rota.yaml", rotaText}, {"rota_test.yaml", tests}}
	for _, f := range files {
		path := filepath.Join(*out, f.name)
		if _, err := os.Stat(path); err == nil && !*force {
			fmt.Fprintf(stderr, "klaxon import: %s exists: give --force to replace it, or --out another directory\n", path)
			return 1
		}
	}
	for _, f := range files {
		path := filepath.Join(*out, f.name)
		if err := writeFileAtomic(path, f.data); err != nil {
			fmt.Fprintf(stderr, "klaxon import: %v\n", err)
			return 1
		}
		fmt.Fprintf(stdout, "wrote %s\n", path)
	}
	fmt.Fprint(stdout, report.String())
	fmt.Fprint(stdout, verifyOut.String())
	return code
}

// commentBlock renders text as YAML comment lines, so that the report
// travels with the rota it describes.
func commentBlock(text string) []byte {
	var b bytes.Buffer
	b.WriteString("\n")
	for _, line := range strings.Split(strings.TrimRight(text, "\n"), "\n") {
		b.WriteString(strings.TrimRight("# "+line, " ") + "\n")
	}
	return b.Bytes()
}

// writeFileAtomic writes data to path through a temporary file and a rename.
func writeFileAtomic(path string, data []byte) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	if err := os.Chmod(tmp.Name(), 0o644); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), path)
}
