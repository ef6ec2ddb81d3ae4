package auth

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"time"
)

// State is the store's generic key-value state (what notifiers.StateStore
// and notifiers.StateSweeper offer; both the bbolt and the etcd store
// implement it). Tokens and sessions live there, so every replica sharing
// the store sees one set, and a revoke is seen by all at once.
type State interface {
	GetState(ctx context.Context, bucket, key string) ([]byte, error)
	PutState(ctx context.Context, bucket, key string, value []byte) error
	SweepState(ctx context.Context, bucket string, keep func(key string, value []byte) bool) error
}

// The state buckets tokens and sessions are kept in. Keys are the hex
// SHA-256 of the secret (token or session cookie), so reading the store
// does not let anyone act.
const (
	TokensBucket   = "auth-tokens"
	SessionsBucket = "auth-sessions"
)

// Store keeps named tokens and web sessions in the store's state. Every
// check reads the store (no cache): a revoke or a sign-out elsewhere takes
// effect on the next request, on every replica.
type Store struct {
	st      State
	admin   *[32]byte
	timeout time.Duration
}

// NewStore keeps tokens and sessions in st. adminToken, if not empty, is
// the shared admin API token (configured, never stored).
func NewStore(st State, adminToken string) *Store {
	s := &Store{st: st, timeout: 5 * time.Second}
	if adminToken != "" {
		h := Hash(adminToken)
		s.admin = &h
	}
	return s
}

// record is a stored token.
type record struct {
	ID      string    `json:"id"`
	Kind    Kind      `json:"kind"`
	Scope   Scope     `json:"scope"`
	Created time.Time `json:"created"`
}

func hashKey(secret string) string { h := Hash(secret); return hex.EncodeToString(h[:]) }

// lookup returns the stored token whose secret is token.
func (s *Store) lookup(ctx context.Context, token string) (record, bool, error) {
	if token == "" || len(token) > 512 {
		return record{}, false, nil
	}
	return s.byKey(ctx, hashKey(token))
}

func (s *Store) byKey(ctx context.Context, key string) (record, bool, error) {
	b, err := s.st.GetState(ctx, TokensBucket, key)
	if err != nil || b == nil {
		return record{}, false, err
	}
	var r record
	if err := json.Unmarshal(b, &r); err != nil {
		return record{}, false, fmt.Errorf("token record %.12s…: %w", key, err)
	}
	return r, true, nil
}

func (s *Store) ctx() (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.Background(), s.timeout)
}

// Authenticate implements Authenticator. A store that cannot be read
// accepts no person token (the admin token still works).
func (s *Store) Authenticate(token string) (string, bool, bool) {
	if token == "" {
		return "", false, false
	}
	if s.admin != nil && Equal(token, *s.admin) {
		return "", true, true
	}
	ctx, cancel := s.ctx()
	defer cancel()
	r, ok, err := s.lookup(ctx, token)
	if err != nil || !ok || r.Kind != API {
		return "", false, false
	}
	return r.Scope.Person, false, true
}

// FeedScope returns what a calendar feed token may read.
func (s *Store) FeedScope(token string) (Scope, bool) {
	ctx, cancel := s.ctx()
	defer cancel()
	r, ok, err := s.lookup(ctx, token)
	if err != nil || !ok || r.Kind != Feed {
		return Scope{}, false
	}
	return r.Scope, true
}

// Create stores a new token of kind for scope and returns it (shown once;
// only its hash is kept) and its id.
func (s *Store) Create(ctx context.Context, kind Kind, scope Scope, now time.Time) (token, id string, err error) {
	if err := checkNew(kind, scope); err != nil {
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
	b, _ := json.Marshal(record{ID: id, Kind: kind, Scope: scope, Created: now.UTC().Truncate(time.Second)})
	if err := s.st.PutState(ctx, TokensBucket, hashKey(token), b); err != nil {
		return "", "", fmt.Errorf("storing the token: %w", err)
	}
	return token, id, nil
}

func checkNew(kind Kind, scope Scope) error {
	if kind != API && kind != Feed {
		return fmt.Errorf("unknown token kind %q", clip(string(kind)))
	}
	if kind == API && (scope.Person == "" || scope.Rotation != "") {
		return errors.New("an API token belongs to one person")
	}
	if (scope.Person == "") == (scope.Rotation == "") {
		return errors.New("a feed token is for one person or one rotation")
	}
	if !ValidID(scope.Person + scope.Rotation) {
		return errors.New("malformed person or rotation id")
	}
	return nil
}

// List returns the stored tokens, by creation time (hashes stay inside).
func (s *Store) List(ctx context.Context) ([]Entry, error) {
	out := []Entry{}
	err := s.st.SweepState(ctx, TokensBucket, func(_ string, v []byte) bool {
		var r record
		if json.Unmarshal(v, &r) == nil {
			out = append(out, Entry{ID: r.ID, Kind: r.Kind, Scope: r.Scope, Created: r.Created})
		}
		return true
	})
	sort.Slice(out, func(i, j int) bool {
		return out[i].Created.Before(out[j].Created) || (out[i].Created.Equal(out[j].Created) && out[i].ID < out[j].ID)
	})
	return out, err
}

// ErrNoToken is Revoke's answer for an id no stored token has.
var ErrNoToken = errors.New("no such token")

// ErrNoSession is EndSessionID's answer for an id no session has.
var ErrNoSession = errors.New("no such session")

// Revoke deletes the token with id and ends the web sessions it opened. It
// returns the token's entry.
func (s *Store) Revoke(ctx context.Context, id string) (Entry, error) {
	var gone *Entry
	var key string
	err := s.st.SweepState(ctx, TokensBucket, func(k string, v []byte) bool {
		var r record
		if json.Unmarshal(v, &r) != nil || r.ID != id {
			return true
		}
		gone, key = &Entry{ID: r.ID, Kind: r.Kind, Scope: r.Scope, Created: r.Created}, k
		return false
	})
	if err != nil {
		return Entry{}, err
	}
	if gone == nil {
		return Entry{}, fmt.Errorf("%w %q", ErrNoToken, clip(id))
	}
	_, err = s.EndSessions(ctx, func(ss WebSession) bool { return ss.tokenKey == key })
	return *gone, err
}

// Import copies the tokens of a token file (the DATA/tokens of earlier
// versions) into the store, hashes as they are, and returns how many.
// Importing twice stores the same records again.
func (s *Store) Import(ctx context.Context, path string) (int, error) {
	entries, err := readEntries(path)
	if err != nil {
		return 0, err
	}
	for _, e := range entries {
		b, _ := json.Marshal(record{ID: e.ID, Kind: e.Kind, Scope: e.Scope, Created: e.Created})
		if err := s.st.PutState(ctx, TokensBucket, hex.EncodeToString(e.hash[:]), b); err != nil {
			return 0, fmt.Errorf("storing token %s: %w", e.ID, err)
		}
	}
	return len(entries), nil
}

// WebSession is one web sign-in: made from a person's API token, it lasts
// until it expires, the person signs out, the token is revoked, or the
// person leaves the rota, whichever comes first.
type WebSession struct {
	ID      string    `json:"id"` // short public name, for listing and ending
	Person  string    `json:"person"`
	TokenID string    `json:"token"` // the id of the token it was made from
	Created time.Time `json:"created"`
	Expires time.Time `json:"expires"`
	// tokenKey is the store key of the token it was made from: a session
	// whose token is gone is no session.
	tokenKey string
}

type sessionRecord struct {
	WebSession
	TokenKey string `json:"tokenKey"`
}

func decodeSession(v []byte) (WebSession, bool) {
	var r sessionRecord
	if json.Unmarshal(v, &r) != nil {
		return WebSession{}, false
	}
	r.WebSession.tokenKey = r.TokenKey
	return r.WebSession, true
}

// StartSession exchanges a person's API token for a new session lasting
// ttl from now and returns the session's secret (the cookie's value). ok
// is false for a token that is not a person's API token.
func (s *Store) StartSession(ctx context.Context, token string, now time.Time, ttl time.Duration) (secret string, ss WebSession, ok bool, err error) {
	r, found, err := s.lookup(ctx, token)
	if err != nil || !found || r.Kind != API || r.Scope.Person == "" {
		return "", WebSession{}, false, err
	}
	raw := make([]byte, TokenBytes)
	if _, err := rand.Read(raw); err != nil {
		return "", WebSession{}, false, err
	}
	secret = base64.RawURLEncoding.EncodeToString(raw)
	ss = WebSession{ID: "s" + hex.EncodeToString(raw[:4]), Person: r.Scope.Person, TokenID: r.ID,
		Created: now.UTC().Truncate(time.Second), Expires: now.Add(ttl).UTC()}
	b, _ := json.Marshal(sessionRecord{WebSession: ss, TokenKey: hashKey(token)})
	if err := s.st.PutState(ctx, SessionsBucket, hashKey(secret), b); err != nil {
		return "", WebSession{}, false, fmt.Errorf("storing the session: %w", err)
	}
	return secret, ss, true, nil
}

// CheckSession returns the session whose secret is given, if it is
// unexpired at now and the token it was made from still exists. An
// expired session, or one whose token is gone, is deleted.
func (s *Store) CheckSession(ctx context.Context, secret string, now time.Time) (WebSession, bool, error) {
	if secret == "" || len(secret) > 128 {
		return WebSession{}, false, nil
	}
	key := hashKey(secret)
	v, err := s.st.GetState(ctx, SessionsBucket, key)
	if err != nil || v == nil {
		return WebSession{}, false, err
	}
	ss, ok := decodeSession(v)
	if ok && now.Before(ss.Expires) {
		r, found, err := s.byKey(ctx, ss.tokenKey)
		if err != nil {
			return WebSession{}, false, err
		}
		if found && r.Kind == API && r.Scope.Person == ss.Person {
			return ss, true, nil
		}
	}
	return WebSession{}, false, s.st.PutState(ctx, SessionsBucket, key, nil)
}

// EndSession ends the session whose secret is given (signing out).
func (s *Store) EndSession(ctx context.Context, secret string) error {
	if secret == "" || len(secret) > 128 {
		return nil
	}
	return s.st.PutState(ctx, SessionsBucket, hashKey(secret), nil)
}

// EndSessions ends every session end returns true for (and every expired
// or unreadable one) and returns how many were ended by end.
func (s *Store) EndSessions(ctx context.Context, end func(WebSession) bool) (int, error) {
	n := 0
	now := time.Now()
	err := s.st.SweepState(ctx, SessionsBucket, func(_ string, v []byte) bool {
		ss, ok := decodeSession(v)
		if !ok || !now.Before(ss.Expires) {
			return false
		}
		if end(ss) {
			n++
			return false
		}
		return true
	})
	return n, err
}

// EndSessionID ends the session with id.
func (s *Store) EndSessionID(ctx context.Context, id string) (WebSession, error) {
	var gone *WebSession
	_, err := s.EndSessions(ctx, func(ss WebSession) bool {
		if ss.ID == id {
			gone = &ss
			return true
		}
		return false
	})
	if err == nil && gone == nil {
		err = fmt.Errorf("%w %q", ErrNoSession, clip(id))
	}
	if err != nil {
		return WebSession{}, err
	}
	return *gone, nil
}

// Sessions lists the sessions unexpired at now, oldest first.
func (s *Store) Sessions(ctx context.Context, now time.Time) ([]WebSession, error) {
	out := []WebSession{}
	err := s.st.SweepState(ctx, SessionsBucket, func(_ string, v []byte) bool {
		ss, ok := decodeSession(v)
		if !ok || !now.Before(ss.Expires) {
			return false
		}
		out = append(out, ss)
		return true
	})
	sort.Slice(out, func(i, j int) bool {
		return out[i].Created.Before(out[j].Created) || (out[i].Created.Equal(out[j].Created) && out[i].ID < out[j].ID)
	})
	return out, err
}
