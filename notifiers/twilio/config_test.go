package twilio

import (
	"flag"
	"github.com/klaxon-oncall/klaxon/notifiers/recorder"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func validConfig() Config {
	return Config{
		AccountSID: "AC0123456789abcdef0123456789abcdef",
		AuthToken:  testToken,
		From:       "+15005550006",
		PublicURL:  "https://klaxon.example.org/",
		Responder:  &recResponder{},
		Reporter:   &recorder.Reports{},
	}
}

func TestConfigValidation(t *testing.T) {
	tests := []struct {
		name string
		mod  func(*Config)
		want string // "" → valid
	}{
		{"valid", func(*Config) {}, ""},
		{"messaging service only", func(c *Config) { c.From = ""; c.MessagingServiceSID = "MG0123456789abcdef0123456789abcdef" }, ""},
		{"bad account SID", func(c *Config) { c.AccountSID = "AC123" }, "account SID"},
		{"no token", func(c *Config) { c.AuthToken = "" }, "auth token is required"},
		{"token with symbols", func(c *Config) { c.AuthToken = testToken + "!" }, "alphanumeric"},
		{"from not E.164", func(c *Config) { c.From = "555-0100" }, "not E.164"},
		{"bad service SID", func(c *Config) { c.MessagingServiceSID = "MGxyz" }, "messaging service SID"},
		{"no sender", func(c *Config) { c.From = "" }, "from-number or a messaging service"},
		{"no public URL", func(c *Config) { c.PublicURL = "" }, "public URL"},
		{"relative public URL", func(c *Config) { c.PublicURL = "/klaxon" }, "public URL"},
		{"public URL with query", func(c *Config) { c.PublicURL = "https://k.example.org/?a=b" }, "public URL"},
		{"API URL with credentials", func(c *Config) { c.APIURL = "https://user:pw@api.example.org" }, "API URL"},
		{"API URL not http", func(c *Config) { c.APIURL = "ftp://api.example.org" }, "API URL"},
		{"bad detection", func(c *Config) { c.MachineDetection = "Always" }, "machine detection"},
		{"ring timeout too short", func(c *Config) { c.RingTimeout = 1 }, "ring timeout"},
		{"no responder", func(c *Config) { c.Responder = nil }, "Responder"},
		{"no reporter", func(c *Config) { c.Reporter = nil }, "Reporter"},
		{"missing token file", func(c *Config) { c.AuthToken = ""; c.AuthTokenFile = "/nonexistent/token" }, "auth token file"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := validConfig()
			tc.mod(&c)
			tw, err := New(c)
			if tc.want == "" {
				if err != nil {
					t.Fatalf("New: %v", err)
				}
				if tw.cfg.PublicURL != "https://klaxon.example.org" || tw.cfg.APIURL != DefaultAPIURL || tw.cfg.MinBalance != DefaultMinBalance || tw.cfg.HTTPClient.Timeout != DefaultTimeout {
					t.Errorf("defaults not applied: %+v", tw.cfg)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err %v, want ~%q", err, tc.want)
			}
			noSecret(t, "config error", err.Error())
		})
	}
}

func TestAuthTokenFileAndEnv(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "token")
	if err := os.WriteFile(file, []byte(testToken+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	env := map[string]string{
		"KLAXON_TWILIO_ACCOUNT_SID":     "AC0123456789abcdef0123456789abcdef",
		"KLAXON_TWILIO_AUTH_TOKEN_FILE": file,
		"KLAXON_TWILIO_FROM":            "+15005550006",
		"KLAXON_TWILIO_PUBLIC_URL":      "https://klaxon.example.org",
		"KLAXON_TWILIO_VOICE":           "Polly.Amy",
		"KLAXON_TWILIO_LANGUAGE":        "en-GB",
		"KLAXON_TWILIO_MIN_BALANCE":     "12.5",
	}
	var c Config
	if err := c.LoadEnv(func(k string) string { return env[k] }); err != nil {
		t.Fatal(err)
	}
	fs := flag.NewFlagSet("klaxon", flag.ContinueOnError)
	c.RegisterFlags(fs)
	if err := fs.Parse([]string{"-twilio-language", "en-US"}); err != nil {
		t.Fatal(err)
	}
	c.Responder, c.Reporter = &recResponder{}, &recorder.Reports{}
	tw, err := New(c)
	if err != nil {
		t.Fatal(err)
	}
	if tw.cfg.AuthToken != testToken || tw.cfg.Voice != "Polly.Amy" || tw.cfg.Language != "en-US" || tw.cfg.MinBalance != 12.5 {
		t.Errorf("config %+v", tw.cfg)
	}
	bad := Config{}
	if err := bad.LoadEnv(func(k string) string { return map[string]string{"KLAXON_TWILIO_MIN_BALANCE": "lots"}[k] }); err == nil {
		t.Error("non-numeric TWILIO_MIN_BALANCE accepted")
	}
}

func TestVoiceAndLanguageReachTheCall(t *testing.T) {
	e := newEnv(t, func(c *Config) { c.Voice, c.Language = "Polly.Amy", "en-GB" })
	c := e.call(t, "p1")
	c.Answer()
	body := e.fake.LastCallback().Body
	if !strings.Contains(body, `voice="Polly.Amy"`) || !strings.Contains(body, `language="en-GB"`) {
		t.Errorf("TwiML lacks voice/language: %s", body)
	}
}
