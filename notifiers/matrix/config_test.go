package matrix

import (
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestConfigFromEnv(t *testing.T) {
	dir := t.TempDir()
	tokFile := filepath.Join(dir, "token")
	if err := os.WriteFile(tokFile, []byte("  "+testToken+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	empty := filepath.Join(dir, "empty")
	os.WriteFile(empty, []byte("\n"), 0o600)
	big := filepath.Join(dir, "big")
	os.WriteFile(big, make([]byte, maxTokenFile+10), 0o600)
	base := map[string]string{
		EnvHomeserver: "https://matrix.example.org", EnvUserID: testBot, EnvRoom: "#alerts:example.org",
	}
	tests := []struct {
		name    string
		env     map[string]string
		wantErr string
		check   func(t *testing.T, c Config)
	}{
		{"token from env", map[string]string{EnvAccessToken: testToken}, "", func(t *testing.T, c Config) {
			if c.AccessToken != testToken || c.Homeserver != "https://matrix.example.org" || c.Room != "#alerts:example.org" {
				t.Errorf("config %+v", c)
			}
		}},
		{"token from file", map[string]string{EnvAccessTokenFile: tokFile, EnvDirectMessages: "true"}, "", func(t *testing.T, c Config) {
			if c.AccessToken != testToken || !c.DirectMessages {
				t.Errorf("token/dm not read from file/env")
			}
		}},
		{"both token sources", map[string]string{EnvAccessToken: testToken, EnvAccessTokenFile: tokFile}, "only one", nil},
		{"missing token file", map[string]string{EnvAccessTokenFile: filepath.Join(dir, "nope")}, "no such file", nil},
		{"empty token file", map[string]string{EnvAccessTokenFile: empty}, "is empty", nil},
		{"oversized token file", map[string]string{EnvAccessTokenFile: big}, "larger than", nil},
		{"no token", map[string]string{}, "access token is required", nil},
		{"bad boolean", map[string]string{EnvAccessToken: testToken, EnvDirectMessages: "maybe"}, "not a boolean", nil},
		{"bad homeserver", map[string]string{EnvAccessToken: testToken, EnvHomeserver: "matrix.example.org"}, "not an http(s) URL", nil},
		{"credentials in URL", map[string]string{EnvAccessToken: testToken, EnvHomeserver: "https://u:p@matrix.example.org"}, "credentials", nil},
		{"bad user id", map[string]string{EnvAccessToken: testToken, EnvUserID: "klaxon"}, "not a Matrix user id", nil},
		{"bad room", map[string]string{EnvAccessToken: testToken, EnvRoom: "alerts"}, "neither a room id", nil},
		{"confirmation deadline", map[string]string{EnvAccessToken: testToken, EnvConfirmWithin: "45s"}, "", func(t *testing.T, c Config) {
			if c.ConfirmWithin != 45*time.Second {
				t.Errorf("ConfirmWithin %s", c.ConfirmWithin)
			}
		}},
		{"confirmation off", map[string]string{EnvAccessToken: testToken, EnvConfirmWithin: "0"}, "", func(t *testing.T, c Config) {
			if c.ConfirmWithin >= 0 {
				t.Errorf("ConfirmWithin %s, want off", c.ConfirmWithin)
			}
		}},
		{"bad confirmation deadline", map[string]string{EnvAccessToken: testToken, EnvConfirmWithin: "soon"}, "not a duration", nil},
		{"observer token from file", map[string]string{EnvAccessToken: testToken, EnvObserverUserID: "@watcher:example.org", EnvObserverAccessTokenFile: tokFile}, "", func(t *testing.T, c Config) {
			if c.ObserverAccessToken != testToken || c.ObserverUserID != "@watcher:example.org" {
				t.Errorf("observer %q", c.ObserverUserID)
			}
		}},
		{"observer without token", map[string]string{EnvAccessToken: testToken, EnvObserverUserID: "@watcher:example.org"}, "needs " + EnvObserverAccessToken, nil},
		{"observer token without user", map[string]string{EnvAccessToken: testToken, EnvObserverAccessToken: "obs"}, "needs " + EnvObserverUserID, nil},
		{"observer is the bot", map[string]string{EnvAccessToken: testToken, EnvObserverUserID: testBot, EnvObserverAccessToken: "obs"}, "another account", nil},
		{"both observer token sources", map[string]string{EnvAccessToken: testToken, EnvObserverAccessToken: "obs", EnvObserverAccessTokenFile: tokFile}, "only one", nil},
		{"alias without server", map[string]string{EnvAccessToken: testToken, EnvRoom: "#alerts"}, "neither a room id", nil},
		{"room id v12", map[string]string{EnvAccessToken: testToken, EnvRoom: "!opaqueid"}, "", nil},
		{"token with white space", map[string]string{EnvAccessToken: "abc def"}, "white space", nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			env := map[string]string{}
			for k, v := range base {
				env[k] = v
			}
			for k, v := range tc.env {
				env[k] = v
			}
			c, err := ConfigFromEnv(func(k string) string { return env[k] })
			if tc.wantErr == "" && err != nil || tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)) {
				t.Fatalf("err = %v, want %q", err, tc.wantErr)
			}
			if err != nil && strings.Contains(err.Error(), testToken) {
				t.Errorf("error leaks the token: %v", err)
			}
			if tc.check != nil {
				tc.check(t, c)
			}
		})
	}
	c, err := ConfigFromEnv(func(string) string { return "" })
	if err != nil || c.Homeserver != "" {
		t.Errorf("unconfigured: %+v, %v; want zero and nil", c, err)
	}
}

func TestRegisterFlags(t *testing.T) {
	dir := t.TempDir()
	tokFile := filepath.Join(dir, "token")
	os.WriteFile(tokFile, []byte(testToken), 0o600)
	var c Config
	fs := flag.NewFlagSet("klaxon", flag.ContinueOnError)
	finish := c.RegisterFlags(fs, func(k string) string {
		return map[string]string{EnvHomeserver: "https://env.example.org", EnvRoom: testRoom}[k]
	})
	if err := fs.Parse([]string{"-matrix-user-id", testBot, "-matrix-access-token-file", tokFile}); err != nil {
		t.Fatal(err)
	}
	if err := finish(); err != nil {
		t.Fatal(err)
	}
	if c.Homeserver != "https://env.example.org" || c.UserID != testBot || c.AccessToken != testToken || c.Room != testRoom {
		t.Errorf("config %+v", c)
	}
	if fs.Lookup("matrix-access-token") != nil {
		t.Error("a flag takes the token itself: it would show in the process list")
	}
}

func TestNewValidates(t *testing.T) {
	if _, err := New(Config{}); err == nil {
		t.Error("New with an empty config succeeded")
	}
	if _, err := New(Config{Homeserver: "https://m.example.org", UserID: testBot, AccessToken: "t", Room: testRoom}); err == nil {
		t.Error("New without a StateStore succeeded")
	}
}

// The observer's token is never a flag: only the environment (or a file it
// names) gives it; the deadline is a flag.
func TestObserverTokenIsNoFlag(t *testing.T) {
	var c Config
	fs := flag.NewFlagSet("t", flag.ContinueOnError)
	env := map[string]string{EnvHomeserver: "https://matrix.example.org", EnvUserID: testBot, EnvRoom: testRoom,
		EnvAccessToken: testToken, EnvObserverUserID: "@watcher:example.org", EnvObserverAccessToken: "obs-token"}
	finish := c.RegisterFlags(fs, func(k string) string { return env[k] })
	fs.VisitAll(func(f *flag.Flag) {
		if strings.Contains(f.Name, "observer") && strings.Contains(f.Name, "token") {
			t.Errorf("flag -%s carries the observer's token", f.Name)
		}
	})
	if err := fs.Parse([]string{"-matrix-confirm-within", "10s"}); err != nil {
		t.Fatal(err)
	}
	if err := finish(); err != nil {
		t.Fatal(err)
	}
	if c.ObserverAccessToken != "obs-token" || c.ConfirmWithin != 10*time.Second {
		t.Fatalf("observer token %q, deadline %s", c.ObserverAccessToken, c.ConfirmWithin)
	}
}
