package matrix

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"

	"maunium.net/go/mautrix/id"

	"github.com/klaxon-oncall/klaxon/notifiers"
)

// Environment variables read by ConfigFromEnv. The rota never holds Matrix
// credentials: they come from flags or the environment only.
const (
	EnvHomeserver      = "KLAXON_MATRIX_HOMESERVER"
	EnvUserID          = "KLAXON_MATRIX_USER_ID"
	EnvAccessToken     = "KLAXON_MATRIX_ACCESS_TOKEN"
	EnvAccessTokenFile = "KLAXON_MATRIX_ACCESS_TOKEN_FILE"
	EnvRoom            = "KLAXON_MATRIX_ROOM"
	EnvDirectMessages  = "KLAXON_MATRIX_DIRECT_MESSAGES"
	// EnvConfirmWithin is how long a page may take to come back through
	// /sync (a Go duration, default 30s; "0" turns confirmation off).
	EnvConfirmWithin = "KLAXON_MATRIX_CONFIRM_WITHIN"
	// The observer account: a second account in the alert room whose
	// /sync must see each page (only this proves the homeserver relays to
	// other clients). Its token comes from the environment or a file named
	// in the environment, never from a flag.
	EnvObserverUserID          = "KLAXON_MATRIX_OBSERVER_USER_ID"
	EnvObserverAccessToken     = "KLAXON_MATRIX_OBSERVER_ACCESS_TOKEN"
	EnvObserverAccessTokenFile = "KLAXON_MATRIX_OBSERVER_ACCESS_TOKEN_FILE"
	// EnvCanaryRoom is the room canaries are posted to (a room id or an
	// alias; default: the alert room).
	EnvCanaryRoom = "KLAXON_MATRIX_CANARY_ROOM"
)

// maxTokenFile bounds the size of an access-token file: a token is a few
// hundred bytes; anything larger is a misconfiguration.
const maxTokenFile = 64 << 10

// Config configures the Matrix notifier.
type Config struct {
	// Homeserver is the client API base URL, e.g. https://matrix.example.org.
	Homeserver string
	// UserID is the bot's user id, e.g. @klaxon:example.org.
	UserID string
	// AccessToken is the bot's access token. It never appears in logs or errors.
	AccessToken string
	// Room is the alert room, as a room id (!id:server) or an alias
	// (#alias:server) resolved once on first use.
	Room string
	// DirectMessages also sends each page to a direct-message room with the
	// paged person, created once and remembered in State.
	DirectMessages bool
	// HTTPClient is used for every request. Nil means a client with sane
	// connection timeouts; per-request deadlines come from contexts.
	HTTPClient *http.Client
	// Responder takes acknowledgements read from the room. Required for Run.
	Responder notifiers.Responder
	// State durably holds the sync position, event id → incident/page and
	// incident → root event id. Required.
	State notifiers.StateStore
	// Logger receives operational logs. Nil discards them.
	Logger *slog.Logger
	// Now is the clock; nil means time.Now.
	Now func() time.Time
	// SyncTimeout is the long-poll timeout of each /sync; zero means 30s.
	SyncTimeout time.Duration
	// ConfirmWithin is how long a page may take to come back through
	// /sync (the bot's own, or the observer's) before it counts as not
	// delivered; zero means DefaultConfirmWithin, negative turns
	// confirmation off.
	ConfirmWithin time.Duration
	// Reporter takes the Delivered report of each page seen back. Without
	// one, the channel confirms nothing.
	Reporter notifiers.Reporter
	// SyncStalled, if set, learns of a /sync that failed or stalled past
	// the confirmation deadline (beyond its own long-poll time), once per
	// deadline while it lasts: pages cannot be seen back, and replies
	// cannot come back. cmd/klaxon feeds it to the self-tests.
	SyncStalled func(reason string)
	// ObserverUserID and ObserverAccessToken name an optional second
	// account in the alert room whose /sync must see each page. The token
	// never appears in logs or errors.
	ObserverUserID      string
	ObserverAccessToken string
	// CanaryRoom is the room Canary posts its m.notice to, as a room id or
	// an alias resolved once on first use; "" means the alert room. The
	// bot, and the observer if there is one, must be joined to it.
	CanaryRoom string
}

// RegisterFlags binds the connection settings of c to flags on fs, with the
// environment (see the Env* constants) as defaults (getenv nil: os.Getenv).
// The token is read from the environment or from -matrix-access-token-file,
// never from a flag value, so it stays out of the process list. Call the
// returned finish after fs.Parse: it reads the token file and validates.
func (c *Config) RegisterFlags(fs *flag.FlagSet, getenv func(string) string) (finish func() error) {
	if getenv == nil {
		getenv = os.Getenv
	}
	fs.StringVar(&c.Homeserver, "matrix-homeserver", getenv(EnvHomeserver), "Matrix homeserver URL (env "+EnvHomeserver+")")
	fs.StringVar(&c.UserID, "matrix-user-id", getenv(EnvUserID), "Matrix bot user id (env "+EnvUserID+")")
	fs.StringVar(&c.Room, "matrix-room", getenv(EnvRoom), "Matrix alert room id or alias (env "+EnvRoom+")")
	dm, _ := strconv.ParseBool(getenv(EnvDirectMessages))
	fs.BoolVar(&c.DirectMessages, "matrix-direct-messages", dm, "also page people in a direct-message room (env "+EnvDirectMessages+")")
	within := DefaultConfirmWithin
	if v := getenv(EnvConfirmWithin); v != "" {
		if d, err := time.ParseDuration(v); err == nil {
			within = d
		}
	}
	fs.DurationVar(&c.ConfirmWithin, "matrix-confirm-within", within, "how long a page may take to come back through /sync before it counts as not delivered; 0 turns confirmation off (env "+EnvConfirmWithin+")")
	fs.StringVar(&c.ObserverUserID, "matrix-observer-user-id", getenv(EnvObserverUserID), "optional observer account that must see each page (env "+EnvObserverUserID+"; token from "+EnvObserverAccessToken+" or "+EnvObserverAccessTokenFile+")")
	fs.StringVar(&c.CanaryRoom, "matrix-canary-room", getenv(EnvCanaryRoom), "room id or alias the Matrix canary (--canary-matrix-interval) posts its m.notice to, seen back by the observer account if configured, else by the bot's own /sync; the bot and the observer must be joined to it; default: the alert room (env "+EnvCanaryRoom+")")
	tok := getenv(EnvAccessToken)
	file := fs.String("matrix-access-token-file", getenv(EnvAccessTokenFile), "file holding the Matrix bot access token (env "+EnvAccessTokenFile+"; or set "+EnvAccessToken+")")
	return func() error {
		c.AccessToken = tok
		if *file != "" {
			if tok != "" {
				return fmt.Errorf("set only one of %s and the access token file", EnvAccessToken)
			}
			t, err := ReadTokenFile(*file)
			if err != nil {
				return err
			}
			c.AccessToken = t
		}
		if v := getenv(EnvConfirmWithin); v != "" {
			if _, err := time.ParseDuration(v); err != nil {
				return fmt.Errorf("%s: %q is not a duration (e.g. 30s)", EnvConfirmWithin, v)
			}
		}
		if c.ConfirmWithin == 0 {
			c.ConfirmWithin = -1 // "0" on the command line turns it off
		}
		if err := c.observerFromEnv(getenv); err != nil {
			return err
		}
		return c.validate()
	}
}

// observerFromEnv reads the observer's token from the environment or the
// file it names (not both).
func (c *Config) observerFromEnv(getenv func(string) string) error {
	tok, file := getenv(EnvObserverAccessToken), getenv(EnvObserverAccessTokenFile)
	if tok != "" && file != "" {
		return fmt.Errorf("set only one of %s and %s", EnvObserverAccessToken, EnvObserverAccessTokenFile)
	}
	c.ObserverAccessToken = tok
	if file != "" {
		t, err := ReadTokenFile(file)
		if err != nil {
			return fmt.Errorf("observer: %w", err)
		}
		c.ObserverAccessToken = t
	}
	return nil
}

// ConfigFromEnv reads the connection settings from the environment through
// getenv (os.Getenv when nil). The token comes from KLAXON_MATRIX_ACCESS_TOKEN
// or the file named by KLAXON_MATRIX_ACCESS_TOKEN_FILE (not both).
// It returns a zero Config and nil when Matrix is not configured at all.
func ConfigFromEnv(getenv func(string) string) (Config, error) {
	if getenv == nil {
		getenv = os.Getenv
	}
	var c Config
	c.Homeserver = getenv(EnvHomeserver)
	c.UserID = getenv(EnvUserID)
	c.Room = getenv(EnvRoom)
	if v := getenv(EnvDirectMessages); v != "" {
		b, err := strconv.ParseBool(v)
		if err != nil {
			return Config{}, fmt.Errorf("%s: %q is not a boolean", EnvDirectMessages, v)
		}
		c.DirectMessages = b
	}
	tok, file := getenv(EnvAccessToken), getenv(EnvAccessTokenFile)
	if tok != "" && file != "" {
		return Config{}, fmt.Errorf("set only one of %s and %s", EnvAccessToken, EnvAccessTokenFile)
	}
	c.AccessToken = tok
	if file != "" {
		t, err := ReadTokenFile(file)
		if err != nil {
			return Config{}, err
		}
		c.AccessToken = t
	}
	if c.Homeserver == "" && c.UserID == "" && c.Room == "" && c.AccessToken == "" {
		return Config{}, nil
	}
	if v := getenv(EnvConfirmWithin); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil {
			return Config{}, fmt.Errorf("%s: %q is not a duration (e.g. 30s)", EnvConfirmWithin, v)
		}
		if c.ConfirmWithin = d; d == 0 {
			c.ConfirmWithin = -1
		}
	}
	c.ObserverUserID = getenv(EnvObserverUserID)
	c.CanaryRoom = getenv(EnvCanaryRoom)
	if err := c.observerFromEnv(getenv); err != nil {
		return Config{}, err
	}
	return c, c.validate()
}

// ReadTokenFile reads an access token from path, trimming surrounding white
// space. The error names the file, never its content.
func ReadTokenFile(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", fmt.Errorf("matrix access token file: %w", err)
	}
	defer f.Close()
	buf, err := io.ReadAll(io.LimitReader(f, maxTokenFile+1))
	if err != nil {
		return "", fmt.Errorf("matrix access token file %s: %w", path, err)
	}
	if len(buf) > maxTokenFile {
		return "", fmt.Errorf("matrix access token file %s: larger than %d bytes", path, maxTokenFile)
	}
	tok := strings.TrimSpace(string(buf))
	if tok == "" {
		return "", fmt.Errorf("matrix access token file %s is empty", path)
	}
	if strings.ContainsAny(tok, " \t\r\n") {
		return "", fmt.Errorf("matrix access token file %s: token contains white space", path)
	}
	return tok, nil
}

// validate checks the connection settings; messages never include the token.
func (c Config) validate() error {
	var errs []error
	u, err := url.Parse(c.Homeserver)
	switch {
	case c.Homeserver == "":
		errs = append(errs, errors.New("matrix: homeserver URL is required"))
	case err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "":
		errs = append(errs, fmt.Errorf("matrix: homeserver %q is not an http(s) URL", c.Homeserver))
	case u.User != nil:
		errs = append(errs, errors.New("matrix: homeserver URL must not contain credentials"))
	}
	if _, _, err := id.UserID(c.UserID).Parse(); err != nil || !strings.HasPrefix(c.UserID, "@") {
		errs = append(errs, fmt.Errorf("matrix: bot user id %q is not a Matrix user id (@name:server)", c.UserID))
	}
	if c.AccessToken == "" {
		errs = append(errs, errors.New("matrix: access token is required"))
	} else if strings.ContainsAny(c.AccessToken, " \t\r\n") {
		errs = append(errs, errors.New("matrix: access token contains white space"))
	}
	switch {
	case c.ObserverAccessToken != "" && c.ObserverUserID == "":
		errs = append(errs, fmt.Errorf("matrix: an observer token needs %s", EnvObserverUserID))
	case c.ObserverUserID != "" && c.ObserverAccessToken == "":
		errs = append(errs, fmt.Errorf("matrix: observer %q needs %s or %s", c.ObserverUserID, EnvObserverAccessToken, EnvObserverAccessTokenFile))
	case c.ObserverUserID != "" && c.ObserverUserID == c.UserID:
		errs = append(errs, errors.New("matrix: the observer must be another account than the bot (the bot's own sync is checked anyway)"))
	case strings.ContainsAny(c.ObserverAccessToken, " \t\r\n"):
		errs = append(errs, errors.New("matrix: observer access token contains white space"))
	}
	switch {
	case c.Room == "":
		errs = append(errs, errors.New("matrix: alert room is required"))
	case !validRoomRef(c.Room):
		errs = append(errs, fmt.Errorf("matrix: alert room %q is neither a room id (!id:server) nor an alias (#alias:server)", c.Room))
	}
	if c.CanaryRoom != "" && !validRoomRef(c.CanaryRoom) {
		errs = append(errs, fmt.Errorf("matrix: canary room %q is neither a room id (!id:server) nor an alias (#alias:server)", c.CanaryRoom))
	}
	return errors.Join(errs...)
}

// validRoomRef reports whether s looks like a room id (!opaque:server, or
// !opaque in room version 12) or an alias (#alias:server).
func validRoomRef(s string) bool {
	if len(s) < 2 || len(s) > 255 || strings.ContainsAny(s, " \t\r\n/") {
		return false
	}
	switch s[0] {
	case '!':
		return true
	case '#':
		i := strings.IndexByte(s, ':')
		return i > 1 && i < len(s)-1
	}
	return false
}
