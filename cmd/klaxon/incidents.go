package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"maps"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/klaxon-oncall/klaxon/escalation"
	"github.com/klaxon-oncall/klaxon/escalation/boltstore"
)

// clientFlags say where the CLI finds incidents: a running server, or a
// stopped server's data directory.
type clientFlags struct {
	server, dataDir string
	token           *secretFlag
}

func (c *clientFlags) declare(fs *flag.FlagSet, env map[string]string, withData bool) {
	fs.StringVar(&c.server, "server", "", "URL of a running klaxon serve, e.g. http://127.0.0.1:9797 (env KLAXON_SERVER)")
	env["server"] = "KLAXON_SERVER"
	help := "the server's data directory, where the API token is read from when KLAXON_API_TOKEN(_FILE) is not set (env KLAXON_DATA)"
	if withData {
		help = "data directory of a stopped server, read when --server is not given; also where the API token is read from (env KLAXON_DATA)"
	}
	fs.StringVar(&c.dataDir, "data", "./data", help)
	env["data"] = "KLAXON_DATA"
	c.token = newSecret(fs, env, "api-token", "KLAXON_API_TOKEN", "API bearer token (default: DATA/api-token)")
}

// finish refuses a token given as a flag and fills flags from the environment.
func (c *clientFlags) finish(fs *flag.FlagSet, env map[string]string) error {
	if err := rejectSecretFlags(fs, c.token); err != nil {
		return err
	}
	return envFlags(fs, env)
}

// apiToken is KLAXON_API_TOKEN(_FILE), else the token `klaxon serve`
// generated in the data directory, else "".
func (c *clientFlags) apiToken() (string, error) {
	tok, err := c.token.get()
	if err != nil || tok != "" {
		return tok, err
	}
	path := filepath.Join(c.dataDir, apiTokenFile)
	b, err := os.ReadFile(path)
	switch {
	case errors.Is(err, os.ErrNotExist):
		return "", nil
	case err != nil:
		return "", fmt.Errorf("reading the API token: %w (or set KLAXON_API_TOKEN_FILE)", err)
	}
	return strings.TrimSpace(string(b)), nil
}

// call makes an API request and decodes its JSON answer into out.
func (c *clientFlags) call(ctx context.Context, method, path string, out any) error {
	tok, err := c.apiToken()
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, method, strings.TrimRight(c.server, "/")+path, nil)
	if err != nil {
		return err
	}
	if tok != "" {
		req.Header.Set("Authorization", "Bearer "+tok)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("asking %s: %w", c.server, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 32<<20))
	if resp.StatusCode != http.StatusOK {
		var e struct{ Error string }
		_ = json.Unmarshal(body, &e)
		if e.Error == "" {
			e.Error = strings.TrimSpace(string(body))
		}
		if resp.StatusCode == http.StatusUnauthorized && tok == "" {
			return fmt.Errorf("%s: %s (no API token: set KLAXON_API_TOKEN_FILE, or --data to the server's data directory)", resp.Status, e.Error)
		}
		return fmt.Errorf("%s: %s", resp.Status, e.Error)
	}
	return json.Unmarshal(body, out)
}

type incidentDetail struct {
	escalation.Incident
	Timeline []escalation.Event      `json:"timeline"`
	Pages    []escalation.PageRecord `json:"pages"`
}

func runIncidents(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	show := len(args) > 0 && args[0] == "show"
	if show {
		args = args[1:]
	}
	fs := flag.NewFlagSet("klaxon incidents", flag.ContinueOnError)
	fs.SetOutput(stderr)
	env := map[string]string{}
	var c clientFlags
	c.declare(fs, env, true)
	state := fs.String("state", "", "only incidents in this state: open, acknowledged or resolved")
	limit := fs.Int("limit", 50, "how many incidents at most")
	if err := parseInterleaved(fs, args); err != nil {
		return exitFlag(err)
	}
	if err := c.finish(fs, env); err != nil {
		fmt.Fprintln(stderr, "klaxon incidents:", err)
		return 2
	}
	if show {
		if fs.NArg() != 1 {
			fmt.Fprintln(stderr, "usage: klaxon incidents show ID")
			return 2
		}
		id, err := strconv.ParseUint(strings.TrimPrefix(fs.Arg(0), "#"), 10, 64)
		if err != nil || id == 0 {
			fmt.Fprintf(stderr, "klaxon incidents show: %q is not an incident number\n", fs.Arg(0))
			return 2
		}
		d, err := c.incident(ctx, id)
		if err != nil {
			fmt.Fprintln(stderr, "klaxon incidents show:", err)
			return 1
		}
		printIncident(stdout, d)
		return 0
	}
	st, err := escalation.ParseState(*state)
	if err != nil {
		fmt.Fprintln(stderr, "klaxon incidents:", err)
		return 2
	}
	list, err := c.incidents(ctx, escalation.Filter{State: st, Limit: *limit})
	if err != nil {
		fmt.Fprintln(stderr, "klaxon incidents:", err)
		return 1
	}
	printIncidents(stdout, list)
	return 0
}

// parseInterleaved parses flags that may come before or after positional
// arguments ("show 42 --server URL"), leaving the positionals in fs.Args().
func parseInterleaved(fs *flag.FlagSet, args []string) error {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			return err
		}
		if fs.NArg() == 0 {
			break
		}
		pos = append(pos, fs.Arg(0))
		args = fs.Args()[1:]
	}
	return fs.Parse(append([]string{"--"}, pos...))
}

func exitFlag(err error) int {
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	return 2
}

// openData opens a stopped server's store read-only.
func (c *clientFlags) openData() (*boltstore.Store, error) {
	s, err := boltstore.Open(c.dataDir, boltstore.Options{ReadOnly: true, LockTimeout: 500 * time.Millisecond})
	if errors.Is(err, boltstore.ErrLocked) {
		return nil, fmt.Errorf("%w; ask the running server with --server http://ADDRESS", err)
	}
	return s, err
}

func (c *clientFlags) incidents(ctx context.Context, f escalation.Filter) ([]escalation.Incident, error) {
	if c.server != "" {
		var out struct{ Incidents []escalation.Incident }
		q := url.Values{"limit": {strconv.Itoa(f.Limit)}}
		if f.State != "" {
			q.Set("state", string(f.State))
		}
		err := c.call(ctx, http.MethodGet, "/api/v1/incidents?"+q.Encode(), &out)
		return out.Incidents, err
	}
	s, err := c.openData()
	if err != nil {
		return nil, err
	}
	defer s.Close()
	return s.Incidents(ctx, f)
}

func (c *clientFlags) incident(ctx context.Context, id uint64) (incidentDetail, error) {
	var d incidentDetail
	if c.server != "" {
		err := c.call(ctx, http.MethodGet, fmt.Sprintf("/api/v1/incidents/%d", id), &d)
		return d, err
	}
	s, err := c.openData()
	if err != nil {
		return d, err
	}
	defer s.Close()
	if d.Incident, err = s.Incident(ctx, id); err != nil {
		return d, fmt.Errorf("incident %d: %w", id, err)
	}
	if d.Timeline, err = s.Timeline(ctx, id); err != nil {
		return d, err
	}
	d.Pages, err = s.Pages(ctx, id)
	return d, err
}

func printIncidents(w io.Writer, list []escalation.Incident) {
	if len(list) == 0 {
		fmt.Fprintln(w, "no incidents")
		return
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tSTATE\tSEVERITY\tOPENED\tTITLE")
	for _, inc := range list {
		state := string(inc.State)
		if inc.Escalation.Exhausted && inc.State == escalation.Open {
			state += " (exhausted)"
		}
		fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\n", inc.ID, state, dash(inc.Severity), inc.OpenedAt.Local().Format("2006-01-02 15:04"), inc.Title)
	}
	tw.Flush()
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// printIncident prints one incident and its timeline for a terminal.
func printIncident(w io.Writer, d incidentDetail) {
	inc := d.Incident
	fmt.Fprintf(w, "Incident %d — %s\n", inc.ID, inc.Title)
	fmt.Fprintf(w, "  state:     %s", inc.State)
	if inc.State == escalation.Acknowledged {
		fmt.Fprintf(w, " by %s via %s at %s", inc.AckedBy, inc.AckedVia, inc.AckedAt.Local().Format("15:04:05"))
	}
	if inc.Escalation.Exhausted {
		fmt.Fprint(w, " (escalation exhausted)")
	}
	fmt.Fprintln(w)
	where := fmt.Sprintf("step %d, round %d", inc.Escalation.Step+1, inc.Escalation.Round+1)
	switch {
	case inc.Escalation.Exhausted:
		where = "used up"
	case inc.State != escalation.Open:
		where = string(inc.State)
	}
	fmt.Fprintf(w, "  severity:  %s\n  policy:    %s (%s)\n  opened:    %s\n", dash(inc.Severity), dash(inc.Escalation.Policy), where, inc.OpenedAt.Local().Format(time.RFC1123))
	if !inc.ResolvedAt.IsZero() {
		fmt.Fprintf(w, "  resolved:  %s\n", inc.ResolvedAt.Local().Format(time.RFC1123))
	}
	fmt.Fprintf(w, "  alerts:    %d firing of %d\n", inc.Firing(), len(inc.Alerts))
	for _, a := range inc.Alerts {
		fmt.Fprintf(w, "    [%s] %s %s\n", a.Status, a.Labels["alertname"], labelString(a.Labels))
	}
	fmt.Fprintln(w, "\nTimeline:")
	var day string
	for _, ev := range d.Timeline {
		t := ev.At.Local()
		if dd := t.Format("Mon 2 Jan 2006"); dd != day {
			day = dd
			fmt.Fprintf(w, "  %s\n", day)
		}
		fmt.Fprintf(w, "    %s  %-15s %s\n", t.Format("15:04:05"), ev.Kind, ev.Text)
	}
}

func labelString(l map[string]string) string {
	var parts []string
	for _, k := range slices.Sorted(maps.Keys(l)) {
		if k != "alertname" {
			parts = append(parts, k+"="+strconv.Quote(l[k]))
		}
	}
	return "{" + strings.Join(parts, ", ") + "}"
}

func runAct(ctx context.Context, action string, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("klaxon "+action, flag.ContinueOnError)
	fs.SetOutput(stderr)
	env := map[string]string{}
	var c clientFlags
	c.declare(fs, env, false)
	if err := parseInterleaved(fs, args); err != nil {
		return exitFlag(err)
	}
	if err := c.finish(fs, env); err != nil {
		fmt.Fprintf(stderr, "klaxon %s: %v\n", action, err)
		return 2
	}
	if c.server == "" {
		c.server = "http://127.0.0.1:9797"
	}
	if fs.NArg() != 1 {
		fmt.Fprintf(stderr, "usage: klaxon %s [--server URL] ID\n", action)
		return 2
	}
	id, err := strconv.ParseUint(strings.TrimPrefix(fs.Arg(0), "#"), 10, 64)
	if err != nil || id == 0 {
		fmt.Fprintf(stderr, "klaxon %s: %q is not an incident number\n", action, fs.Arg(0))
		return 2
	}
	var out struct {
		Applied bool
		Message string
	}
	if err := c.call(ctx, http.MethodPost, fmt.Sprintf("/api/v1/incidents/%d/%s", id, action), &out); err != nil {
		fmt.Fprintf(stderr, "klaxon %s: %v\n", action, err)
		return 1
	}
	fmt.Fprintln(stdout, out.Message)
	return 0
}
