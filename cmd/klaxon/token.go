package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/klaxon-oncall/klaxon/escalation/boltstore"
	"github.com/klaxon-oncall/klaxon/escalation/rota"
	"github.com/klaxon-oncall/klaxon/internal/auth"
)

const tokenUsage = `usage:
  klaxon token create --person ID                 an API token that acts as that rota person
  klaxon token create --feed --person ID          a calendar feed token for one person's shifts
  klaxon token create --feed --rotation ID        a calendar feed token for one rotation
  klaxon token list                               the tokens (ids, never the secrets)
  klaxon token revoke ID                          revoke one, and end the web sessions it opened
  klaxon token sessions                           the web sessions (who, since, until)
  klaxon token sessions end ID                    end one web session
Tokens and sessions live in the store: with --server URL (env KLAXON_SERVER) the running
server is asked (admin API token: KLAXON_API_TOKEN(_FILE) or DATA/api-token); without it the
store in --data is opened, which works only while no server runs on it.
flags: --data DIR (env KLAXON_DATA), --rota FILE (people and rotations are checked against it),
       --public-url URL (prints a feed's full address; env KLAXON_PUBLIC_URL)
`

// tokenBackend is where `klaxon token` finds tokens: a running server's
// API or a stopped server's store.
type tokenBackend interface {
	create(ctx context.Context, kind auth.Kind, scope auth.Scope, now time.Time) (token, id string, err error)
	list(ctx context.Context) ([]auth.Entry, error)
	revoke(ctx context.Context, id string) error
	sessions(ctx context.Context, now time.Time) ([]auth.WebSession, error)
	endSession(ctx context.Context, id string) error
}

// runToken manages named tokens and web sessions. A new token is printed
// once, on stdout; the store keeps only its hash.
func runToken(args []string, stdout, stderr io.Writer, now func() time.Time) int {
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		fmt.Fprint(stderr, tokenUsage)
		return 2
	}
	sub, args := args[0], args[1:]
	fs := flag.NewFlagSet("klaxon token "+sub, flag.ContinueOnError)
	fs.SetOutput(stderr)
	env := map[string]string{"rota": "KLAXON_ROTA", "public-url": "KLAXON_PUBLIC_URL"}
	var c clientFlags
	c.declare(fs, env, true)
	rotaPath := fs.String("rota", "./rota.yaml", "the rota, to check people and rotations exist (env KLAXON_ROTA)")
	publicURL := fs.String("public-url", "", "Klaxon's public base URL, to print a feed's address (env KLAXON_PUBLIC_URL)")
	person := fs.String("person", "", "rota person id")
	rotation := fs.String("rotation", "", "rota rotation id (feeds only)")
	feed := fs.Bool("feed", false, "a calendar feed token instead of an API token")
	if err := parseInterleaved(fs, args); err != nil {
		return exitFlag(err)
	}
	if err := c.finish(fs, env); err != nil {
		fmt.Fprintln(stderr, "klaxon token:", err)
		return 2
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	fail := func(err error) int { fmt.Fprintf(stderr, "klaxon token %s: %v\n", sub, err); return 1 }
	var b tokenBackend
	switch {
	case c.server != "":
		b = apiTokens{&c}
	case os.Getenv("KLAXON_STORE") == "etcd":
		return fail(errors.New("with KLAXON_STORE=etcd the tokens are in etcd: ask a running replica with --server http://ADDRESS"))
	default:
		st, err := boltstore.Open(c.dataDir, boltstore.Options{LockTimeout: 500 * time.Millisecond})
		if errors.Is(err, boltstore.ErrLocked) {
			return fail(fmt.Errorf("%w; ask the running server with --server http://ADDRESS", err))
		}
		if err != nil {
			return fail(err)
		}
		defer st.Close()
		tokens, err := openTokens(ctx, st, c.dataDir, "", nil)
		if err != nil {
			return fail(err)
		}
		b = storeTokens{tokens}
	}
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
			return fail(err)
		}
		tok, id, err := b.create(ctx, kind, scope, now())
		if err != nil {
			return fail(err)
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
		list, err := b.list(ctx)
		if err != nil {
			return fail(err)
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
		if err := b.revoke(ctx, fs.Arg(0)); err != nil {
			return fail(err)
		}
		fmt.Fprintf(stderr, "token %s revoked, and the web sessions it opened ended\n", fs.Arg(0))
		return 0
	case "sessions":
		switch {
		case fs.NArg() == 0:
			list, err := b.sessions(ctx, now())
			if err != nil {
				return fail(err)
			}
			tw := tabwriter.NewWriter(stdout, 0, 0, 2, ' ', 0)
			fmt.Fprintln(tw, "ID\tPERSON\tTOKEN\tSINCE\tUNTIL")
			for _, s := range list {
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", s.ID, s.Person, s.TokenID, s.Created.Local().Format("2006-01-02 15:04"), s.Expires.Local().Format("2006-01-02 15:04"))
			}
			tw.Flush()
			return 0
		case fs.NArg() == 2 && fs.Arg(0) == "end":
			if err := b.endSession(ctx, fs.Arg(1)); err != nil {
				return fail(err)
			}
			fmt.Fprintf(stderr, "session %s ended\n", fs.Arg(1))
			return 0
		}
	}
	fmt.Fprint(stderr, tokenUsage)
	return 2
}

// storeTokens is a stopped server's store.
type storeTokens struct{ s *auth.Store }

func (b storeTokens) create(ctx context.Context, kind auth.Kind, scope auth.Scope, now time.Time) (string, string, error) {
	return b.s.Create(ctx, kind, scope, now)
}
func (b storeTokens) list(ctx context.Context) ([]auth.Entry, error) { return b.s.List(ctx) }
func (b storeTokens) revoke(ctx context.Context, id string) error {
	_, err := b.s.Revoke(ctx, id)
	return err
}
func (b storeTokens) sessions(ctx context.Context, now time.Time) ([]auth.WebSession, error) {
	return b.s.Sessions(ctx, now)
}
func (b storeTokens) endSession(ctx context.Context, id string) error {
	_, err := b.s.EndSessionID(ctx, id)
	return err
}

// apiTokens is a running server's token API (admin token).
type apiTokens struct{ c *clientFlags }

func (b apiTokens) create(ctx context.Context, kind auth.Kind, scope auth.Scope, _ time.Time) (string, string, error) {
	body, _ := json.Marshal(map[string]string{"kind": string(kind), "person": scope.Person, "rotation": scope.Rotation})
	var out struct{ ID, Token string }
	err := b.c.send(ctx, "POST", "/api/v1/tokens", body, &out)
	return out.Token, out.ID, err
}
func (b apiTokens) list(ctx context.Context) ([]auth.Entry, error) {
	var out struct{ Tokens []auth.Entry }
	err := b.c.send(ctx, "GET", "/api/v1/tokens", nil, &out)
	return out.Tokens, err
}
func (b apiTokens) revoke(ctx context.Context, id string) error {
	return b.c.send(ctx, "DELETE", "/api/v1/tokens/"+url.PathEscape(id), nil, &struct{}{})
}
func (b apiTokens) sessions(ctx context.Context, _ time.Time) ([]auth.WebSession, error) {
	var out struct{ Sessions []auth.WebSession }
	err := b.c.send(ctx, "GET", "/api/v1/sessions", nil, &out)
	return out.Sessions, err
}
func (b apiTokens) endSession(ctx context.Context, id string) error {
	return b.c.send(ctx, "DELETE", "/api/v1/sessions/"+url.PathEscape(id), nil, &struct{}{})
}

// send makes an API request with a JSON body and decodes its answer.
func (c *clientFlags) send(ctx context.Context, method, path string, body []byte, out any) error {
	tok, err := c.apiToken()
	if err != nil {
		return err
	}
	req, err := http.NewRequestWithContext(ctx, method, strings.TrimRight(c.server, "/")+path, bytes.NewReader(body))
	if err != nil {
		return err
	}
	if tok != "" {
		req.Header.Set("Authorization", "Bearer "+tok)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("asking %s: %w", c.server, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 4<<20))
	if resp.StatusCode != http.StatusOK {
		var e struct{ Error string }
		_ = json.Unmarshal(b, &e)
		if e.Error == "" {
			e.Error = oneLineClip(string(b))
		}
		return fmt.Errorf("%s: %s", resp.Status, e.Error)
	}
	return json.Unmarshal(b, out)
}

func oneLineClip(s string) string {
	s = strings.Join(strings.Fields(s), " ")
	if len(s) > 200 {
		s = s[:200] + "…"
	}
	return s
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
