package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/klaxon-oncall/klaxon/escalation/rota"
	"github.com/klaxon-oncall/klaxon/internal/auth"
)

const tokenUsage = `usage:
  klaxon token create --person ID                 an API token that acts as that rota person
  klaxon token create --feed --person ID          a calendar feed token for one person's shifts
  klaxon token create --feed --rotation ID        a calendar feed token for one rotation
  klaxon token list                               the tokens (ids, never the secrets)
  klaxon token revoke ID                          revoke one at once (a running server notices)
flags: --data DIR (env KLAXON_DATA), --rota FILE (people and rotations are checked against it),
       --public-url URL (prints a feed's full address; env KLAXON_PUBLIC_URL)
`

// runToken manages named tokens in the data directory's token file. The
// token itself is printed once, on stdout; the file keeps only its hash.
func runToken(args []string, stdout, stderr io.Writer, now func() time.Time) int {
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		fmt.Fprint(stderr, tokenUsage)
		return 2
	}
	sub, args := args[0], args[1:]
	fs := flag.NewFlagSet("klaxon token "+sub, flag.ContinueOnError)
	fs.SetOutput(stderr)
	env := map[string]string{"data": "KLAXON_DATA", "rota": "KLAXON_ROTA", "public-url": "KLAXON_PUBLIC_URL"}
	dataDir := fs.String("data", "./data", "the server's data directory (env KLAXON_DATA)")
	rotaPath := fs.String("rota", "./rota.yaml", "the rota, to check people and rotations exist (env KLAXON_ROTA)")
	publicURL := fs.String("public-url", "", "Klaxon's public base URL, to print a feed's address (env KLAXON_PUBLIC_URL)")
	person := fs.String("person", "", "rota person id")
	rotation := fs.String("rotation", "", "rota rotation id (feeds only)")
	feed := fs.Bool("feed", false, "a calendar feed token instead of an API token")
	if err := parseInterleaved(fs, args); err != nil {
		return exitFlag(err)
	}
	if err := envFlags(fs, env); err != nil {
		fmt.Fprintln(stderr, "klaxon token:", err)
		return 2
	}
	path := filepath.Join(*dataDir, tokensFile)
	switch sub {
	case "create":
		if fs.NArg() != 0 {
			fmt.Fprint(stderr, tokenUsage)
			return 2
		}
		kind := auth.API
		if *feed {
			kind = auth.Feed
		}
		scope := auth.Scope{Person: *person, Rotation: *rotation}
		if err := checkScope(*rotaPath, scope); err != nil {
			fmt.Fprintln(stderr, "klaxon token create:", err)
			return 1
		}
		tok, id, err := auth.Create(path, kind, scope, now())
		if err != nil {
			fmt.Fprintln(stderr, "klaxon token create:", err)
			return 1
		}
		if kind == auth.Feed {
			u := strings.TrimRight(*publicURL, "/") + "/rota.ics?token=" + url.QueryEscape(tok)
			fmt.Fprintf(stderr, "feed token %s for %s created; subscribe to this address (it is the secret; revoke with: klaxon token revoke %s):\n", id, scope, id)
			fmt.Fprintln(stdout, u)
			return 0
		}
		fmt.Fprintf(stderr, "API token %s for %s created; it is shown only now (revoke with: klaxon token revoke %s):\n", id, scope.Person, id)
		fmt.Fprintln(stdout, tok)
		return 0
	case "list":
		list, err := auth.NewFile(path, "").List()
		if err != nil {
			fmt.Fprintln(stderr, "klaxon token list:", err)
			return 1
		}
		tw := tabwriter.NewWriter(stdout, 0, 0, 2, ' ', 0)
		fmt.Fprintln(tw, "ID\tKIND\tFOR\tCREATED")
		for _, e := range list {
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", e.ID, e.Kind, e.Scope, e.Created.Local().Format("2006-01-02 15:04"))
		}
		tw.Flush()
		return 0
	case "revoke":
		if fs.NArg() != 1 {
			fmt.Fprint(stderr, tokenUsage)
			return 2
		}
		if err := auth.Revoke(path, fs.Arg(0)); err != nil {
			fmt.Fprintln(stderr, "klaxon token revoke:", err)
			return 1
		}
		fmt.Fprintf(stderr, "token %s revoked\n", fs.Arg(0))
		return 0
	}
	fmt.Fprint(stderr, tokenUsage)
	return 2
}

// checkScope refuses a person or rotation the rota does not have, when the
// rota can be read.
func checkScope(path string, s auth.Scope) error {
	data, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	r, _, err := rota.Parse(path, data)
	if err != nil {
		return fmt.Errorf("%s is not valid, so %s cannot be checked: %w", path, s, err)
	}
	if s.Person != "" && r.People[s.Person] == nil {
		return fmt.Errorf("%s has no person %q", path, s.Person)
	}
	if s.Rotation != "" && r.Rotations[s.Rotation] == nil {
		return fmt.Errorf("%s has no rotation %q", path, s.Rotation)
	}
	return nil
}
