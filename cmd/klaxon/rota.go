package main

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/klaxon-oncall/klaxon/escalation/rota"
	"github.com/klaxon-oncall/klaxon/internal/rotatests"
)

// Exit codes of the rota commands.
const (
	rotaExitOK      = 0
	rotaExitInvalid = 1 // invalid rota file, or the command failed
	rotaExitUsage   = 2
)

const rotaDefaultFile = "rota.yaml"

// rotaCheckExtension adds flags to `klaxon rota check` (e.g. --channels,
// which checks the channels' credentials) and returns a check run after the
// file is valid; a non-zero result becomes the exit code.
type rotaCheckExtension func(fs *flag.FlagSet) func(r *rota.Rota, stdout, stderr io.Writer) int

// rotaEnv is what the rota commands are wired with.
type rotaEnv struct {
	now func() time.Time
	// check, if not nil, extends `klaxon rota check` (main wires
	// rotaChannelsCheck; tests leave it out).
	check rotaCheckExtension
}

const rotaUsage = `usage: klaxon rota <command> [arguments]

commands:
  check [FILE] [--days N]                    validate the rota (exit 0 valid, 1 invalid)
  show  [FILE] [--at TIME] [--days N]        who is on call, and the coming handoffs
  diff  OLD NEW [--from TIME] [--days N]     shifts that change hands between two versions
  ics   [FILE] [--rotation R] [--person P] [--from TIME] [--days N]
                                             iCalendar feed of shifts on stdout
  test  [TESTFILE] [--rota FILE]             run the cases of rota_test.yaml (exit 0 all pass, 1 otherwise)

FILE defaults to rota.yaml. TIME is RFC 3339, or "YYYY-MM-DD HH:MM" or
"YYYY-MM-DD" in the rota's time zone.
`

// runRota runs `klaxon rota ...` with args after "rota" and returns the exit code.
func runRota(args []string, stdout, stderr io.Writer, env rotaEnv) int {
	now := env.now
	if len(args) == 0 {
		fmt.Fprint(stderr, rotaUsage)
		return rotaExitUsage
	}
	switch args[0] {
	case "check":
		return rotaCheck(args[1:], stdout, stderr, now, env.check)
	case "show":
		return rotaShow(args[1:], stdout, stderr, now)
	case "diff":
		return rotaDiff(args[1:], stdout, stderr, now)
	case "ics":
		return rotaICS(args[1:], stdout, stderr, now)
	case "test":
		return rotaTest(args[1:], stdout, stderr)
	case "-h", "-help", "--help", "help":
		fmt.Fprint(stdout, rotaUsage)
		return rotaExitOK
	}
	fmt.Fprintf(stderr, "klaxon rota: unknown command %q\n\n%s", args[0], rotaUsage)
	return rotaExitUsage
}

// rotaFlags makes a FlagSet for a subcommand that prints its usage on -h.
func rotaFlags(name, synopsis string, stderr io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet("klaxon rota "+name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintf(stderr, "usage: klaxon rota %s %s\n", name, synopsis)
		fs.PrintDefaults()
	}
	return fs
}

// rotaParse parses flags placed before, between or after the positional
// arguments and returns the positional ones.
func rotaParse(fs *flag.FlagSet, args []string) ([]string, error) {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			return nil, err
		}
		rest := fs.Args()
		if len(rest) == 0 {
			return pos, nil
		}
		if rest[0] == "--" {
			return append(pos, rest[1:]...), nil
		}
		pos = append(pos, rest[0])
		args = rest[1:]
	}
}

// rotaArgs parses and checks the positional argument count; it returns the
// exit code to use when parsing fails (ok is false).
func rotaArgs(fs *flag.FlagSet, args []string, min, max int, stdout io.Writer) (pos []string, code int, ok bool) {
	pos, err := rotaParse(fs, args)
	if errors.Is(err, flag.ErrHelp) {
		fs.SetOutput(stdout)
		return nil, rotaExitOK, false
	}
	if err != nil {
		return nil, rotaExitUsage, false
	}
	if len(pos) < min || len(pos) > max {
		fmt.Fprintf(fs.Output(), "%s: wrong number of arguments\n", fs.Name())
		fs.Usage()
		return nil, rotaExitUsage, false
	}
	return pos, 0, true
}

// rotaLoad loads a rota file, printing every error to stderr on failure.
func rotaLoad(path string, stderr io.Writer) (*rota.Rota, []rota.Warning, bool) {
	r, warns, err := rota.Load(path)
	if err != nil {
		lines := rota.ErrorStrings(err)
		for _, l := range lines {
			fmt.Fprintln(stderr, l)
		}
		fmt.Fprintf(stderr, "%s: invalid: %d %s\n", path, len(lines), plural(len(lines), "error", "errors"))
		return nil, nil, false
	}
	return r, warns, true
}

func plural(n int, one, many string) string {
	if n == 1 {
		return one
	}
	return many
}

// rotaTime reads a --at/--from value in the rota's zone; empty means now.
func rotaTime(s string, loc *time.Location, now func() time.Time) (time.Time, error) {
	if s == "" {
		return now(), nil
	}
	return rota.ParseTime(s, loc)
}

const rotaMaxDays = 3660

// rotaOpen parses a one-file command's arguments (FILE defaults to
// rota.yaml), checks --days, and loads the rota; on failure it returns the
// exit code.
func rotaOpen(fs *flag.FlagSet, args []string, days *int, stdout, stderr io.Writer) (*rota.Rota, []rota.Warning, int, bool) {
	pos, code, ok := rotaArgs(fs, args, 0, 1, stdout)
	if !ok {
		return nil, nil, code, false
	}
	if rotaDays(fs, *days) != nil {
		return nil, nil, rotaExitUsage, false
	}
	path := rotaDefaultFile
	if len(pos) == 1 {
		path = pos[0]
	}
	r, warns, ok := rotaLoad(path, stderr)
	if !ok {
		return nil, nil, rotaExitInvalid, false
	}
	return r, warns, 0, true
}

func rotaDays(fs *flag.FlagSet, n int) error {
	if n < 1 || n > rotaMaxDays {
		err := fmt.Errorf("--days must be from 1 to %d", rotaMaxDays)
		fmt.Fprintf(fs.Output(), "%s: %v\n", fs.Name(), err)
		return err
	}
	return nil
}

func rotaCheck(args []string, stdout, stderr io.Writer, now func() time.Time, ext rotaCheckExtension) int {
	fs := rotaFlags("check", "[FILE] [--days N]", stderr)
	days := fs.Int("days", 28, "also warn about coverage gaps in the next `N` days")
	var extra func(r *rota.Rota, stdout, stderr io.Writer) int
	if ext != nil {
		extra = ext(fs)
	}
	r, warns, code, ok := rotaOpen(fs, args, days, stdout, stderr)
	if !ok {
		return code
	}
	t := now()
	warns = append(warns, r.Gaps(t, t.AddDate(0, 0, *days))...)
	for _, w := range warns {
		fmt.Fprintln(stderr, "warning: "+w.String())
	}
	fmt.Fprintf(stdout, "%s: valid: %d people, %d rotations, %d policies, %d routes; %d %s\n",
		r.Source, len(r.People), len(r.Rotations), len(r.Policies), len(r.Routes), len(warns), plural(len(warns), "warning", "warnings"))
	if extra != nil {
		return extra(r, stdout, stderr)
	}
	return rotaExitOK
}

const rotaShowFmt = "Mon 2006-01-02 15:04 MST"

func rotaPerson(r *rota.Rota, id string) string {
	if id == "" {
		return "nobody"
	}
	if p := r.People[id]; p != nil && p.Name != id {
		return fmt.Sprintf("%s (%s)", p.Name, id)
	}
	return id
}

func rotaOverrideNote(s rota.Shift) string {
	if !s.Override {
		return ""
	}
	note := "override for " + s.Scheduled
	if s.Reason != "" {
		note += ": " + s.Reason
	}
	return note
}

func rotaShow(args []string, stdout, stderr io.Writer, now func() time.Time) int {
	fs := rotaFlags("show", "[FILE] [--at TIME] [--days N]", stderr)
	at := fs.String("at", "", "show the rota as at `TIME` instead of now")
	days := fs.Int("days", 14, "list handoffs in the next `N` days")
	r, _, code, ok := rotaOpen(fs, args, days, stdout, stderr)
	if !ok {
		return code
	}
	t, err := rotaTime(*at, r.Location, now)
	if err != nil {
		fmt.Fprintf(stderr, "klaxon rota show: %v\n", err)
		return rotaExitUsage
	}
	end := t.AddDate(0, 0, *days)
	loc := r.Location
	var out bytes.Buffer
	tw := tabwriter.NewWriter(&out, 0, 0, 2, ' ', 0)
	fmt.Fprintf(tw, "%s, time zone %s, at %s\n\nOn call now:\n", r.Source, loc, t.In(loc).Format(rotaShowFmt))
	for _, id := range r.RotationIDs() {
		s, ok := rota.Current(r.Rotations[id], t, 400*24*time.Hour)
		if !ok {
			fmt.Fprintf(tw, "  %s\tnobody\tstarts %s\t\n", id, r.Rotations[id].Start.In(loc).Format(rotaShowFmt))
			continue
		}
		fmt.Fprintf(tw, "  %s\t%s\tuntil %s\t%s\n", id, rotaPerson(r, s.Person), s.End.In(loc).Format(rotaShowFmt), rotaOverrideNote(s))
	}
	fmt.Fprintf(tw, "\nHandoffs until %s:\n", end.In(loc).Format(rotaShowFmt))
	for _, id := range r.RotationIDs() {
		fmt.Fprintf(tw, "  %s\n", id)
		n := 0
		for _, s := range rota.Shifts(r.Rotations[id], t, end) {
			if !s.Start.After(t) {
				continue
			}
			n++
			fmt.Fprintf(tw, "    %s\t%s\t%s\n", s.Start.In(loc).Format(rotaShowFmt), rotaPerson(r, s.Person), rotaOverrideNote(s))
		}
		if n == 0 {
			fmt.Fprintf(tw, "    (none)\t\t\n")
		}
	}
	return rotaFlush(tw, &out, stdout)
}

func rotaDiff(args []string, stdout, stderr io.Writer, now func() time.Time) int {
	fs := rotaFlags("diff", "OLD NEW [--from TIME] [--days N]", stderr)
	from := fs.String("from", "", "compare from `TIME` instead of now")
	days := fs.Int("days", 28, "compare the next `N` days")
	pos, code, ok := rotaArgs(fs, args, 2, 2, stdout)
	if !ok {
		return code
	}
	if rotaDays(fs, *days) != nil {
		return rotaExitUsage
	}
	oldR, _, ok1 := rotaLoad(pos[0], stderr)
	newR, _, ok2 := rotaLoad(pos[1], stderr)
	if !ok1 || !ok2 {
		return rotaExitInvalid
	}
	loc := newR.Location
	t, err := rotaTime(*from, loc, now)
	if err != nil {
		fmt.Fprintf(stderr, "klaxon rota diff: %v\n", err)
		return rotaExitUsage
	}
	end := t.AddDate(0, 0, *days)
	changes := rota.Diff(oldR, newR, t, end)
	window := fmt.Sprintf("%s to %s", t.In(loc).Format(rotaShowFmt), end.In(loc).Format(rotaShowFmt))
	if len(changes) == 0 {
		fmt.Fprintf(stdout, "No shifts change hands from %s.\n", window)
		return rotaExitOK
	}
	fmt.Fprintf(stdout, "%d %s change hands from %s:\n\n", len(changes), plural(len(changes), "span", "spans"), window)
	var out bytes.Buffer
	tw := tabwriter.NewWriter(&out, 0, 0, 2, ' ', 0)
	for _, c := range changes {
		note := c.NewReason
		if note == "" && c.OldReason != "" {
			note = "was: " + c.OldReason
		}
		fmt.Fprintf(tw, "  %s\t%s → %s\t%s\t%s → %s\t%s\n", c.Rotation,
			c.Start.In(loc).Format(rotaShowFmt), c.End.In(loc).Format(rotaShowFmt), rotaSpan(c.End.Sub(c.Start)),
			rotaPerson(oldR, c.Old), rotaPerson(newR, c.New), note)
	}
	return rotaFlush(tw, &out, stdout)
}

// rotaFlush aligns the table and writes it without trailing blanks.
func rotaFlush(tw *tabwriter.Writer, buf *bytes.Buffer, stdout io.Writer) int {
	if err := tw.Flush(); err != nil {
		return rotaExitInvalid
	}
	for _, line := range strings.SplitAfter(buf.String(), "\n") {
		if _, err := io.WriteString(stdout, strings.TrimRight(line, " \n")+line[len(strings.TrimRight(line, "\n")):]); err != nil {
			return rotaExitInvalid
		}
	}
	return rotaExitOK
}

// rotaSpan renders a length of time briefly: "7d", "3d12h", "45m".
func rotaSpan(d time.Duration) string {
	s := rota.FormatDuration(d.Round(time.Minute))
	return strings.TrimSuffix(s, "0s")
}

func rotaICS(args []string, stdout, stderr io.Writer, now func() time.Time) int {
	fs := rotaFlags("ics", "[FILE] [--rotation R] [--person P] [--from TIME] [--days N]", stderr)
	rotation := fs.String("rotation", "", "only shifts of rotation `R`")
	person := fs.String("person", "", "only shifts of person `P`")
	from := fs.String("from", "", "shifts from `TIME` (default: two weeks ago)")
	days := fs.Int("days", 90, "shifts in the `N` days after --from (default: after now)")
	r, _, code, ok := rotaOpen(fs, args, days, stdout, stderr)
	if !ok {
		return code
	}
	start, end := now().AddDate(0, 0, -14), now().AddDate(0, 0, *days)
	if *from != "" {
		t, err := rotaTime(*from, r.Location, now)
		if err != nil {
			fmt.Fprintf(stderr, "klaxon rota ics: %v\n", err)
			return rotaExitUsage
		}
		start, end = t, t.AddDate(0, 0, *days)
	}
	err := rota.WriteICS(stdout, r, rota.ICSOptions{Rotation: *rotation, Person: *person, From: start, To: end, Now: now()})
	if err != nil {
		fmt.Fprintf(stderr, "klaxon rota ics: %v\n", err)
		return rotaExitInvalid
	}
	return rotaExitOK
}

const rotaTestDefaultFile = "rota_test.yaml"

// rotaTest runs a rota test file's cases against the rota it names (or
// --rota) and prints each failure with file:line, the case, the expectation
// and what the rota gives.
func rotaTest(args []string, stdout, stderr io.Writer) int {
	fs := rotaFlags("test", "[TESTFILE] [--rota FILE]", stderr)
	rotaPath := fs.String("rota", "", "test this rota `FILE` instead of the one the test file names")
	pos, code, ok := rotaArgs(fs, args, 0, 1, stdout)
	if !ok {
		return code
	}
	path := rotaTestDefaultFile
	if len(pos) == 1 {
		path = pos[0]
	}
	data, err := rota.ReadFile(path)
	if err != nil {
		fmt.Fprintf(stderr, "klaxon rota test: %v\n", err)
		return rotaExitInvalid
	}
	f, err := rotatests.Parse(path, data)
	if err != nil {
		fmt.Fprintln(stderr, err)
		return rotaExitInvalid
	}
	if *rotaPath == "" {
		*rotaPath = f.RotaPath()
	}
	r, _, ok := rotaLoad(*rotaPath, stderr)
	if !ok {
		return rotaExitInvalid
	}
	fails := f.Run(r)
	failed := map[string]bool{}
	for _, x := range fails {
		fmt.Fprintln(stdout, "FAIL "+x.String())
		failed[x.Case] = true
	}
	fmt.Fprintf(stdout, "%s against %s: %d %s, %d passed, %d failed\n", path, r.Source,
		len(f.Cases), plural(len(f.Cases), "case", "cases"), len(f.Cases)-len(failed), len(failed))
	if len(fails) > 0 {
		return rotaExitInvalid
	}
	return rotaExitOK
}
