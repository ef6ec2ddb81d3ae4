package twilio

import (
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/klaxon-oncall/klaxon/notifiers"
)

// DefaultAPIURL is Twilio's own REST API endpoint.
const DefaultAPIURL = "https://api.twilio.com"

// DefaultMinBalance is the self-test's balance threshold when Config.MinBalance is 0.
const DefaultMinBalance = 5.0

// DefaultTimeout bounds every Twilio API call when Config.HTTPClient is nil.
const DefaultTimeout = 10 * time.Second

// Config configures the Twilio phone and SMS channels.
type Config struct {
	// AccountSID is the Twilio account (AC followed by 32 hex digits).
	AccountSID string
	// AuthToken is the account's auth token; it signs callbacks too.
	AuthToken string
	// AuthTokenFile, when AuthToken is empty, names a file holding the token.
	AuthTokenFile string
	// From is the E.164 number calls (and texts, unless MessagingServiceSID
	// is set) come from. Calls need it.
	From string
	// MessagingServiceSID (MG...) sends texts from a messaging service's pool.
	MessagingServiceSID string
	// PublicURL is where Twilio reaches Klaxon, e.g. https://klaxon.example.org;
	// callbacks are PublicURL + "/webhook/twilio/{voice,gather,status,sms,sms-status}".
	PublicURL string
	// Voice and Language are optional <Say> attributes, e.g. "Polly.Amy", "en-GB".
	Voice, Language string
	// MachineDetection is "DetectMessageEnd" (default: a short voicemail is
	// left after the beep) or "Enable" (hang up on a machine at once).
	MachineDetection string
	// RingTimeout is how long a call rings before Twilio gives up (default 45s).
	RingTimeout time.Duration
	// APIURL is Twilio's REST endpoint (default DefaultAPIURL): a regional edge,
	// an egress proxy, or a fake in tests.
	APIURL string
	// HTTPClient carries API calls; its Timeout bounds each one. nil: a client
	// with DefaultTimeout. Its Transport is wrapped, never modified.
	HTTPClient *http.Client
	// MinBalance is the self-test's threshold in the account's currency
	// (default DefaultMinBalance; negative disables the check).
	MinBalance float64
	// Responder takes keypresses and SMS replies (the escalation engine).
	Responder notifiers.Responder
	// Reporter takes call and message delivery reports (the escalation engine).
	Reporter notifiers.Reporter
	// Logger logs callbacks and failures; nil discards.
	Logger *slog.Logger
	// Now is the clock; nil means time.Now.
	Now func() time.Time
	// State keeps SMS reply routing, call scripts and callback idempotency
	// durably. nil means an in-memory store (lost on restart; a warning is logged).
	State notifiers.StateStore
	// SMSConfirmWithin is how long a text may go without Twilio's
	// "delivered" status callback before the engine counts the page
	// unconfirmed (0: DefaultSMSConfirmWithin; negative: no confirmation,
	// for destinations whose carriers send no delivery receipts).
	SMSConfirmWithin time.Duration
	// CanaryTo is the number the SMS canary texts (E.164, not From): a
	// second number of the account whose messaging webhook is Klaxon's
	// /webhook/twilio/sms, or a phone that forwards texts back to From.
	// Twilio cannot text a number from itself. Empty: no SMS canary.
	CanaryTo string
}

// DefaultSMSConfirmWithin is how long a text may wait for its delivery receipt.
const DefaultSMSConfirmWithin = 2 * time.Minute

// setSMSConfirmWithin parses a confirmation deadline: a duration, or "off".
func (c *Config) setSMSConfirmWithin(v string) error {
	v = strings.TrimSpace(v)
	if strings.EqualFold(v, "off") {
		c.SMSConfirmWithin = -1
		return nil
	}
	d, err := time.ParseDuration(v)
	if err != nil || d <= 0 {
		return fmt.Errorf("%q is not a positive duration like 2m, or off", v)
	}
	c.SMSConfirmWithin = d
	return nil
}

var (
	accountSIDRe = regexp.MustCompile(`^AC[0-9a-fA-F]{32}$`)
	serviceSIDRe = regexp.MustCompile(`^MG[0-9a-fA-F]{32}$`)
	e164Re       = regexp.MustCompile(`^\+[1-9][0-9]{1,14}$`)
	alnumRe      = regexp.MustCompile(`^[a-zA-Z0-9]+$`)
)

// RegisterFlags binds the configuration to command-line flags named
// -twilio-*, with defaults taken from the current field values (see LoadEnv).
func (c *Config) RegisterFlags(fs *flag.FlagSet) {
	fs.StringVar(&c.AccountSID, "twilio-account-sid", c.AccountSID, "Twilio account SID (env KLAXON_TWILIO_ACCOUNT_SID)")
	fs.StringVar(&c.AuthTokenFile, "twilio-auth-token-file", c.AuthTokenFile, "file holding the Twilio auth token (env KLAXON_TWILIO_AUTH_TOKEN_FILE; or set KLAXON_TWILIO_AUTH_TOKEN)")
	fs.StringVar(&c.From, "twilio-from", c.From, "E.164 number calls and texts come from (env KLAXON_TWILIO_FROM)")
	fs.StringVar(&c.MessagingServiceSID, "twilio-messaging-service-sid", c.MessagingServiceSID, "messaging service for texts (env KLAXON_TWILIO_MESSAGING_SERVICE_SID)")
	fs.StringVar(&c.PublicURL, "twilio-public-url", c.PublicURL, "public base URL Twilio calls back (env KLAXON_TWILIO_PUBLIC_URL)")
	fs.StringVar(&c.Voice, "twilio-voice", c.Voice, "voice for spoken alerts, e.g. Polly.Amy (env KLAXON_TWILIO_VOICE)")
	fs.StringVar(&c.Language, "twilio-language", c.Language, "language for spoken alerts, e.g. en-GB (env KLAXON_TWILIO_LANGUAGE)")
	fs.StringVar(&c.APIURL, "twilio-api-url", c.APIURL, "Twilio REST API base URL (env KLAXON_TWILIO_API_URL)")
	fs.Float64Var(&c.MinBalance, "twilio-min-balance", c.MinBalance, "self-test alarm threshold for the account balance (env KLAXON_TWILIO_MIN_BALANCE)")
	fs.Func("twilio-sms-confirm-within", "how long a text may wait for Twilio's delivered receipt before the page is unconfirmed, or off (default 2m; env KLAXON_TWILIO_SMS_CONFIRM_WITHIN)", c.setSMSConfirmWithin)
	fs.StringVar(&c.CanaryTo, "twilio-canary-to", c.CanaryTo, "number the SMS canary texts; its texts must come back to the SMS webhook (env KLAXON_TWILIO_CANARY_TO)")
}

// LoadEnv fills empty fields from the environment variables named in
// RegisterFlags' help, using getenv (os.Getenv when nil).
func (c *Config) LoadEnv(getenv func(string) string) error {
	if getenv == nil {
		getenv = os.Getenv
	}
	set := func(dst *string, key string) {
		if *dst == "" {
			*dst = strings.TrimSpace(getenv(key))
		}
	}
	set(&c.AccountSID, "KLAXON_TWILIO_ACCOUNT_SID")
	set(&c.AuthToken, "KLAXON_TWILIO_AUTH_TOKEN")
	set(&c.AuthTokenFile, "KLAXON_TWILIO_AUTH_TOKEN_FILE")
	set(&c.From, "KLAXON_TWILIO_FROM")
	set(&c.MessagingServiceSID, "KLAXON_TWILIO_MESSAGING_SERVICE_SID")
	set(&c.PublicURL, "KLAXON_TWILIO_PUBLIC_URL")
	set(&c.Voice, "KLAXON_TWILIO_VOICE")
	set(&c.Language, "KLAXON_TWILIO_LANGUAGE")
	set(&c.APIURL, "KLAXON_TWILIO_API_URL")
	set(&c.CanaryTo, "KLAXON_TWILIO_CANARY_TO")
	if v := strings.TrimSpace(getenv("KLAXON_TWILIO_SMS_CONFIRM_WITHIN")); v != "" && c.SMSConfirmWithin == 0 {
		if err := c.setSMSConfirmWithin(v); err != nil {
			return fmt.Errorf("KLAXON_TWILIO_SMS_CONFIRM_WITHIN: %w", err)
		}
	}
	if v := strings.TrimSpace(getenv("KLAXON_TWILIO_MIN_BALANCE")); v != "" && c.MinBalance == 0 {
		f, err := strconv.ParseFloat(v, 64)
		if err != nil {
			return fmt.Errorf("KLAXON_TWILIO_MIN_BALANCE: %q is not a number", v)
		}
		c.MinBalance = f
	}
	return nil
}

// resolve validates the configuration and fills defaults. Error messages
// never quote the auth token.
func (c Config) resolve() (Config, error) {
	var errs []error
	if c.AuthToken == "" && c.AuthTokenFile != "" {
		b, err := os.ReadFile(c.AuthTokenFile)
		if err != nil {
			errs = append(errs, fmt.Errorf("auth token file: %w", err))
		}
		c.AuthToken = strings.TrimSpace(string(b))
	}
	if !accountSIDRe.MatchString(c.AccountSID) {
		errs = append(errs, errors.New("account SID must be AC followed by 32 hex digits"))
	}
	if c.AuthToken == "" {
		errs = append(errs, errors.New("auth token is required (or an auth token file)"))
	} else if !alnumRe.MatchString(c.AuthToken) {
		errs = append(errs, errors.New("auth token must be alphanumeric"))
	}
	if c.From != "" && !e164Re.MatchString(c.From) {
		errs = append(errs, fmt.Errorf("from-number %q is not E.164 (+ and up to 15 digits)", c.From))
	}
	if c.MessagingServiceSID != "" && !serviceSIDRe.MatchString(c.MessagingServiceSID) {
		errs = append(errs, fmt.Errorf("messaging service SID %q must be MG followed by 32 hex digits", c.MessagingServiceSID))
	}
	if c.From == "" && c.MessagingServiceSID == "" {
		errs = append(errs, errors.New("a from-number or a messaging service is required"))
	}
	c.PublicURL = strings.TrimRight(c.PublicURL, "/")
	if u, err := url.Parse(c.PublicURL); err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" || u.RawQuery != "" || u.Fragment != "" {
		errs = append(errs, fmt.Errorf("public URL %q must be an absolute http(s) URL without query", c.PublicURL))
	}
	if c.APIURL == "" {
		c.APIURL = DefaultAPIURL
	}
	c.APIURL = strings.TrimRight(c.APIURL, "/")
	if u, err := url.Parse(c.APIURL); err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" || u.User != nil {
		errs = append(errs, fmt.Errorf("API URL must be an absolute http(s) URL without credentials"))
	}
	switch c.MachineDetection {
	case "":
		c.MachineDetection = "DetectMessageEnd"
	case "Enable", "DetectMessageEnd":
	default:
		errs = append(errs, fmt.Errorf("machine detection %q must be Enable or DetectMessageEnd", c.MachineDetection))
	}
	if c.RingTimeout == 0 {
		c.RingTimeout = 45 * time.Second
	}
	if c.RingTimeout < 5*time.Second || c.RingTimeout > 600*time.Second {
		errs = append(errs, fmt.Errorf("ring timeout %s must be between 5s and 10m", c.RingTimeout))
	}
	if c.MinBalance == 0 {
		c.MinBalance = DefaultMinBalance
	}
	if c.SMSConfirmWithin == 0 {
		c.SMSConfirmWithin = DefaultSMSConfirmWithin
	}
	if c.CanaryTo != "" && (!e164Re.MatchString(c.CanaryTo) || c.CanaryTo == c.From) {
		errs = append(errs, fmt.Errorf("canary number %q must be E.164 and not the from-number (Twilio cannot text a number from itself)", c.CanaryTo))
	}
	if c.Responder == nil {
		errs = append(errs, errors.New("a Responder is required"))
	}
	if c.Reporter == nil {
		errs = append(errs, errors.New("a Reporter is required"))
	}
	if c.HTTPClient == nil {
		c.HTTPClient = &http.Client{Timeout: DefaultTimeout}
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	if err := errors.Join(errs...); err != nil {
		return c, fmt.Errorf("twilio config: %w", err)
	}
	return c, nil
}
