// Package matrix pages people in a Matrix room through maunium.net/go/mautrix
// (unencrypted rooms only, no cgo) and reads their acknowledgements back.
//
// A page posts one message in the alert room that mentions the person (pill
// link and m.mentions) and says what is wrong and how to answer. The page's
// outbox id is the transaction id, so a retry never posts twice. Later pages
// for the same incident are posted in the alert message's thread, mentioning
// the next person; acknowledgements, escalations and resolutions are posted in
// that thread too and the alert message is edited to show its current state.
//
// Run syncs with the homeserver and turns replies ("ack", "1", "escalate",
// "2", "resolve") and reactions (✅, 👍) to Klaxon's messages into
// notifiers.Responses. The sync position is persisted after each batch, so
// answers sent while Klaxon was down are read after a restart, exactly once.
package matrix

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"regexp"
	"sync"
	"time"

	"github.com/rs/zerolog"
	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"

	"github.com/klaxon-oncall/klaxon/notifiers"
)

// Notifier is the Matrix channel. It is safe for concurrent use; Run must be
// called at most once at a time.
type Notifier struct {
	cfg   Config
	cli   *mautrix.Client
	user  id.UserID
	log   *slog.Logger
	now   func() time.Time
	state *store

	roomMu sync.Mutex
	room   id.RoomID // resolved alert room, "" until resolved
	canary id.RoomID // resolved canary room (Config.CanaryRoom), "" until resolved

	incMu   sync.Mutex
	incLock map[uint64]*incidentLock

	// after waits before a retry in Run; replaceable in tests.
	after func(time.Duration) <-chan time.Time

	// tick paces the sync watch (see watchSync); replaceable in tests.
	tick func(time.Duration) <-chan time.Time
	// deadline times a canary's wait for its notice; replaceable in tests.
	deadline func(time.Duration) <-chan time.Time
	// conf tracks pages waiting to be seen back (see ConfirmWithin).
	conf confirmer
	// observer is the observer account's client, nil without one.
	observer *mautrix.Client
}

// New validates cfg and returns a Notifier. It makes no network calls.
func New(cfg Config) (*Notifier, error) {
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	if cfg.State == nil {
		return nil, errors.New("matrix: a StateStore is required")
	}
	cli, err := mautrix.NewClient(cfg.Homeserver, id.UserID(cfg.UserID), cfg.AccessToken)
	if err != nil {
		return nil, fmt.Errorf("matrix: homeserver %q: %w", cfg.Homeserver, err)
	}
	if cfg.HTTPClient != nil {
		cli.Client = cfg.HTTPClient
	} else {
		cli.Client = defaultHTTPClient()
	}
	// The engine needs a prompt answer: no retries or sleeps inside mautrix
	// (its defaults would back off on 429 and 502-504). Our callers retry.
	cli.DefaultHTTPRetries = 0
	cli.IgnoreRateLimit = true
	cli.MaxHTTPBackoff = time.Second
	// mautrix logs requests; it must stay quiet so nothing sensitive leaks.
	cli.Log = zerolog.Nop()
	cli.Store = syncStore{cfg.State}
	cli.UserAgent = "klaxon (+https://github.com/klaxon-oncall/klaxon) " + mautrix.DefaultUserAgent
	cli.ResponseSizeLimit = 32 << 20

	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	now := cfg.Now
	if now == nil {
		now = time.Now
	}
	n := &Notifier{
		cfg:      cfg,
		cli:      cli,
		user:     id.UserID(cfg.UserID),
		log:      log.With("channel", "matrix"),
		now:      now,
		state:    &store{s: cfg.State},
		incLock:  map[uint64]*incidentLock{},
		after:    time.After,
		tick:     time.After,
		deadline: time.After,
		conf:     confirmer{waiting: map[id.EventID]waitingPage{}, echoed: map[id.EventID]time.Time{}},
	}
	if n.observer, err = newObserver(cfg, cli); err != nil {
		return nil, err
	}
	if cfg.Room[0] == '!' {
		n.room = id.RoomID(cfg.Room)
	}
	if cfg.CanaryRoom != "" && cfg.CanaryRoom[0] == '!' {
		n.canary = id.RoomID(cfg.CanaryRoom)
	}
	return n, nil
}

// defaultHTTPClient bounds connection setup and idle time. It has no overall
// timeout: each request's deadline comes from its context (a /sync long-poll
// legitimately takes the sync timeout).
func defaultHTTPClient() *http.Client {
	return &http.Client{
		Transport: &http.Transport{
			Proxy:                 http.ProxyFromEnvironment,
			DialContext:           (&net.Dialer{Timeout: 10 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
			TLSHandshakeTimeout:   10 * time.Second,
			ResponseHeaderTimeout: 90 * time.Second,
			IdleConnTimeout:       90 * time.Second,
			MaxIdleConnsPerHost:   4,
			ForceAttemptHTTP2:     true,
		},
		// A homeserver has no business redirecting API calls elsewhere: do
		// not follow, so the Authorization header never travels on.
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
}

// Channel returns notifiers.Matrix.
func (n *Notifier) Channel() notifiers.Channel { return notifiers.Matrix }

// fail classifies err and makes sure the token is not in it.
func (n *Notifier) fail(op string, err error) error {
	return scrub(classify(op, err), n.cfg.AccessToken)
}

// alertRoom returns the alert room id, resolving an alias on first use.
func (n *Notifier) alertRoom(ctx context.Context) (id.RoomID, error) {
	n.roomMu.Lock()
	defer n.roomMu.Unlock()
	if n.room != "" {
		return n.room, nil
	}
	res, err := n.cli.ResolveAlias(ctx, id.RoomAlias(n.cfg.Room))
	if err != nil {
		var he mautrix.HTTPError
		if errors.As(err, &he) && he.RespError != nil && he.RespError.ErrCode == "M_NOT_FOUND" {
			return "", notifiers.Permanent("M_NOT_FOUND", fmt.Errorf("matrix: alert room alias %s does not exist", n.cfg.Room))
		}
		return "", n.fail("resolve alias "+n.cfg.Room, err)
	}
	if res == nil || res.RoomID == "" || res.RoomID[0] != '!' {
		return "", notifiers.Temporary("", 0, fmt.Errorf("matrix: alias %s resolved to no room", n.cfg.Room))
	}
	n.room = res.RoomID
	return n.room, nil
}

// incidentLock serialises sends for one incident; refs counts holders and
// waiters so the entry is dropped when unused.
type incidentLock struct {
	mu   sync.Mutex
	refs int
}

// lockIncident serialises updates to one incident's record and returns the
// unlock function.
func (n *Notifier) lockIncident(inc uint64) func() {
	n.incMu.Lock()
	l, ok := n.incLock[inc]
	if !ok {
		l = &incidentLock{}
		n.incLock[inc] = l
	}
	l.refs++
	n.incMu.Unlock()
	l.mu.Lock()
	return func() {
		l.mu.Unlock()
		n.incMu.Lock()
		if l.refs--; l.refs == 0 {
			delete(n.incLock, inc)
		}
		n.incMu.Unlock()
	}
}

var txnSafe = regexp.MustCompile(`^[A-Za-z0-9._~-]{1,64}$`)

// txnID derives a transaction id from an outbox id and a purpose suffix.
// The bare outbox id is used when it is URL-safe, as the alert message's
// transaction id; anything else is hashed.
func txnID(pageID, suffix string) string {
	s := pageID
	if suffix != "" {
		s += "." + suffix
	}
	if txnSafe.MatchString(s) {
		return s
	}
	sum := sha256.Sum256([]byte(s))
	return "klx-" + hex.EncodeToString(sum[:16])
}

// send posts content with the given transaction id.
func (n *Notifier) send(ctx context.Context, room id.RoomID, typ event.Type, content any, txn string) (id.EventID, error) {
	resp, err := n.cli.SendMessageEvent(ctx, room, typ, content, mautrix.ReqSendEvent{TransactionID: txn})
	if err != nil {
		return "", err
	}
	if resp == nil || resp.EventID == "" {
		return "", errors.New("homeserver returned no event id")
	}
	return resp.EventID, nil
}
