// Package auth holds Klaxon's credentials and decides who a bearer token
// belongs to: the shared admin API token, named per-person API tokens, and
// calendar feed tokens, and keeps the web's sessions. Tokens are random
// secrets; the store (Store) keeps only their SHA-256 hashes, so reading it
// does not let anyone act. File is the token file of earlier versions
// (DATA/tokens), read once to move its tokens into the store.
package auth

import (
	"bufio"
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"time"
)

// Authenticator says who a bearer token belongs to. admin is true for the
// shared API token (recorded as "api"); person is the rota person id of a
// named token; ok is false for an unknown or revoked token.
type Authenticator interface {
	Authenticate(token string) (person string, admin bool, ok bool)
}

// Kind is what a stored token is for.
type Kind string

// Token kinds.
const (
	// API tokens act on incidents as a rota person.
	API Kind = "api"
	// Feed tokens read one calendar feed (/rota.ics) and nothing else.
	Feed Kind = "feed"
)

// Scope is what a token stands for: the person of an API token; the person
// or rotation of a feed token.
type Scope struct {
	Person   string `json:"person,omitempty"`
	Rotation string `json:"rotation,omitempty"`
}

func (s Scope) String() string {
	if s.Rotation != "" {
		return "rotation:" + s.Rotation
	}
	return "person:" + s.Person
}

func parseScope(s string) (Scope, bool) {
	k, v, ok := strings.Cut(s, ":")
	if !ok || !ValidID(v) {
		return Scope{}, false
	}
	switch k {
	case "person":
		return Scope{Person: v}, true
	case "rotation":
		return Scope{Rotation: v}, true
	}
	return Scope{}, false
}

// Entry is one stored token (its hash, never the token).
type Entry struct {
	ID      string // short public name, for listing and revoking
	Kind    Kind
	Scope   Scope
	Created time.Time
	hash    [32]byte
}

var idPattern = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$`)

// ValidID reports whether s is a well-formed rota id (person or rotation).
func ValidID(s string) bool { return idPattern.MatchString(s) }

// TokenBytes is how many random bytes a generated token carries.
const TokenBytes = 32

// Generate returns a new random token: 32 bytes, base64url without padding.
func Generate() (string, error) {
	b := make([]byte, TokenBytes)
	if _, err := rand.Read(b); err != nil {
		return "", err
	}
	return base64.RawURLEncoding.EncodeToString(b), nil
}

// Hash is the SHA-256 of a token, as the token file keeps it.
func Hash(token string) [32]byte { return sha256.Sum256([]byte(token)) }

// Equal compares a presented token with a known one in constant time
// (hashing first, so neither length nor content leaks).
func Equal(got string, want [32]byte) bool {
	h := Hash(got)
	return subtle.ConstantTimeCompare(h[:], want[:]) == 1
}

// Bearer returns the request's bearer token, or "".
func Bearer(r *http.Request) string {
	scheme, tok, ok := strings.Cut(r.Header.Get("Authorization"), " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return ""
	}
	return strings.TrimSpace(tok)
}

// LoadOrCreate returns the token kept in path, creating it (0600, random)
// when the file does not exist. created says whether it was made now.
func LoadOrCreate(path string) (token string, created bool, err error) {
	b, err := os.ReadFile(path)
	switch {
	case err == nil:
		t := strings.TrimSpace(string(b))
		if t == "" {
			return "", false, fmt.Errorf("%s is empty: delete it to have a new token generated", path)
		}
		return t, false, nil
	case !errors.Is(err, os.ErrNotExist):
		return "", false, fmt.Errorf("reading %s: %w", path, err)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return "", false, err
	}
	t, err := Generate()
	if err != nil {
		return "", false, err
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if errors.Is(err, os.ErrExist) { // another process won the race
		return LoadOrCreate(path)
	}
	if err != nil {
		return "", false, fmt.Errorf("creating %s: %w", path, err)
	}
	if _, err := f.WriteString(t + "\n"); err != nil {
		f.Close()
		return "", false, fmt.Errorf("writing %s: %w", path, err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return "", false, err
	}
	return t, true, f.Close()
}

// File is the token file: one line per named token,
//
//	ID KIND SCOPE CREATED SHA256-HEX
//
// e.g. "k3f9a2c1 api person:alice 2026-12-01T10:00:00Z 9f86d0…". It is
// re-read when it changes, so tokens created or revoked with the CLI take
// effect on a running server at once.
type File struct {
	path  string
	admin *[32]byte

	mu      sync.Mutex
	stamp   fileStamp
	entries []Entry
	err     error
}

type fileStamp struct {
	mod  time.Time
	size int64
	ok   bool
}

// NewFile reads tokens from path (a missing file is no tokens). adminToken,
// if not empty, is the shared admin API token.
func NewFile(path, adminToken string) *File {
	f := &File{path: path}
	if adminToken != "" {
		h := Hash(adminToken)
		f.admin = &h
	}
	return f
}

// Path is the token file's path.
func (f *File) Path() string { return f.path }

// load returns the current entries, re-reading the file when it changed.
func (f *File) load() ([]Entry, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	var st fileStamp
	if fi, err := os.Stat(f.path); err == nil {
		st = fileStamp{mod: fi.ModTime(), size: fi.Size(), ok: true}
	} else if !errors.Is(err, os.ErrNotExist) {
		return nil, err
	}
	if st == f.stamp && (f.entries != nil || f.err != nil || !st.ok) {
		return f.entries, f.err
	}
	f.stamp = st
	f.entries, f.err = readEntries(f.path)
	return f.entries, f.err
}

// Authenticate implements Authenticator.
func (f *File) Authenticate(token string) (string, bool, bool) {
	if token == "" {
		return "", false, false
	}
	if f.admin != nil && Equal(token, *f.admin) {
		return "", true, true
	}
	if e, ok := f.find(token, API); ok {
		return e.Scope.Person, false, true
	}
	return "", false, false
}

// FeedScope returns what a calendar feed token may read.
func (f *File) FeedScope(token string) (Scope, bool) {
	e, ok := f.find(token, Feed)
	return e.Scope, ok
}

func (f *File) find(token string, kind Kind) (Entry, bool) {
	if token == "" {
		return Entry{}, false
	}
	entries, err := f.load()
	if err != nil {
		return Entry{}, false
	}
	h := Hash(token)
	var found Entry
	ok := false
	for _, e := range entries { // no early exit: the time taken says nothing
		if subtle.ConstantTimeCompare(h[:], e.hash[:]) == 1 && e.Kind == kind {
			found, ok = e, true
		}
	}
	return found, ok
}

// List returns the stored tokens (hashes stay inside).
func (f *File) List() ([]Entry, error) { return f.load() }

func readEntries(path string) ([]Entry, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return []Entry{}, nil
	}
	if err != nil {
		return nil, err
	}
	out := []Entry{}
	sc := bufio.NewScanner(bytes.NewReader(b))
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		e, err := parseEntry(line)
		if err != nil {
			return nil, fmt.Errorf("%s:%d: %w", path, n, err)
		}
		out = append(out, e)
	}
	return out, sc.Err()
}

func parseEntry(line string) (Entry, error) {
	f := strings.Fields(line)
	if len(f) != 5 {
		return Entry{}, errors.New("want ID KIND SCOPE CREATED SHA256")
	}
	e := Entry{ID: f[0], Kind: Kind(f[1])}
	if !ValidID(e.ID) {
		return Entry{}, errors.New("malformed id")
	}
	if e.Kind != API && e.Kind != Feed {
		return Entry{}, fmt.Errorf("unknown kind %q", clip(f[1]))
	}
	var ok bool
	if e.Scope, ok = parseScope(f[2]); !ok || (e.Kind == API && e.Scope.Person == "") {
		return Entry{}, errors.New("malformed scope (person:ID, or rotation:ID for a feed)")
	}
	var err error
	if e.Created, err = time.Parse(time.RFC3339, f[3]); err != nil {
		return Entry{}, errors.New("malformed creation time")
	}
	h, err := hex.DecodeString(f[4])
	if err != nil || len(h) != 32 {
		return Entry{}, errors.New("malformed hash")
	}
	copy(e.hash[:], h)
	return e, nil
}

func clip(s string) string {
	if len(s) > 20 {
		return s[:20] + "…"
	}
	return s
}

// Create adds a new token of kind for scope to the file at path and returns
// the token (shown once; only its hash is kept) and its id.
func Create(path string, kind Kind, scope Scope, now time.Time) (token, id string, err error) {
	if kind != API && kind != Feed {
		return "", "", fmt.Errorf("unknown token kind %q", kind)
	}
	if kind == API && (scope.Person == "" || scope.Rotation != "") {
		return "", "", errors.New("an API token belongs to one person")
	}
	if (scope.Person == "") == (scope.Rotation == "") {
		return "", "", errors.New("a feed token is for one person or one rotation")
	}
	if !ValidID(scope.Person + scope.Rotation) {
		return "", "", errors.New("malformed person or rotation id")
	}
	if _, err := readEntries(path); err != nil {
		return "", "", err
	}
	if token, err = Generate(); err != nil {
		return "", "", err
	}
	idb := make([]byte, 4)
	if _, err := rand.Read(idb); err != nil {
		return "", "", err
	}
	id = string(kind[0]) + hex.EncodeToString(idb)
	h := Hash(token)
	line := fmt.Sprintf("%s %s %s %s %s\n", id, kind, scope, now.UTC().Format(time.RFC3339), hex.EncodeToString(h[:]))
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return "", "", err
	}
	fh, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
	if err != nil {
		return "", "", err
	}
	if _, err := fh.WriteString(line); err != nil {
		fh.Close()
		return "", "", err
	}
	if err := fh.Sync(); err != nil {
		fh.Close()
		return "", "", err
	}
	return token, id, fh.Close()
}

// Revoke removes the token with id from the file at path.
func Revoke(path, id string) error {
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("no token %q", id)
	}
	if err != nil {
		return err
	}
	var keep []string
	found := false
	for line := range strings.SplitSeq(string(b), "\n") {
		if f := strings.Fields(line); len(f) > 0 && f[0] == id {
			found = true
			continue
		}
		if strings.TrimSpace(line) != "" {
			keep = append(keep, line)
		}
	}
	if !found {
		return fmt.Errorf("no token %q", id)
	}
	tmp := path + ".tmp"
	data := strings.Join(keep, "\n")
	if data != "" {
		data += "\n"
	}
	if err := os.WriteFile(tmp, []byte(data), 0o600); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

// Access is a route's auth decision: what a request must carry to be served.
// Every route Klaxon serves declares one, so none is open by accident.
type Access string

// The auth decisions a route can have.
const (
	// Public routes answer anyone (liveness, readiness): they reveal nothing.
	Public Access = "public"
	// WebhookToken routes need the Alertmanager webhook bearer token.
	WebhookToken Access = "webhook-token"
	// APIToken routes need the admin API token or a person's API token.
	APIToken Access = "api-token"
	// Signature routes are checked by the provider's request signature
	// (PagerDuty HMAC, Twilio X-Twilio-Signature) inside their handler.
	Signature Access = "signature"
	// FeedToken routes need a calendar feed token in the query (?token=).
	FeedToken Access = "feed-token"
	// MetricsToken routes need the metrics bearer token when one is set.
	MetricsToken Access = "metrics-token"
	// SignedLink routes are the web interface's signed links (/l/{token}):
	// the link token in the path is the credential, checked in the handler
	// (signature, expiry, a person on the rota; a CSRF token to act).
	SignedLink Access = "signed-link"
	// Session routes need a web session cookie (made by the sign-in form from
	// a person's API token) or a trusted proxy's header, checked in the
	// handler; a bearer token is not a session.
	Session Access = "session"
)

// Router mounts handlers with their auth decision.
type Router interface {
	Handle(pattern string, access Access, h http.Handler)
}
