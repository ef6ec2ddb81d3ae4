package harness

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"
	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"

	"github.com/klaxon-oncall/klaxon/internal/testtools"
)

// Dendrite tool packages, declared in tools/dendrite/go.mod.
const (
	dendritePkg         = "github.com/matrix-org/dendrite/cmd/dendrite"
	dendriteKeysPkg     = "github.com/matrix-org/dendrite/cmd/generate-keys"
	dendriteConfigPkg   = "github.com/matrix-org/dendrite/cmd/generate-config"
	dendriteAccountPkg  = "github.com/matrix-org/dendrite/cmd/create-account"
	dendriteServerName  = "localhost"
	dendriteStartBudget = 2 * time.Minute
	dendriteStopBudget  = 15 * time.Second
	// DendritePassword is the password of every account CreateUser makes.
	DendritePassword = "klaxon-test-password-1"
)

// Dendrite is a real Matrix homeserver (Dendrite, SQLite storage) running as
// a subprocess on 127.0.0.1 for end-to-end tests. Federation is disabled,
// rate limiting is off and registration uses a random shared secret.
type Dendrite struct {
	url           string
	dir           string
	config        string
	createAccount string

	cmd    *exec.Cmd
	log    *dendriteLog
	exited chan struct{}
	err    error // the process's exit error, valid after exited is closed
}

// dendriteLog collects the server's output for printing on failure.
type dendriteLog struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (l *dendriteLog) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.Write(p)
}

func (l *dendriteLog) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.String()
}

// StartDendrite builds (from the Go build cache after the first time) and
// starts Dendrite in a temporary directory, waits until its client API
// answers, and stops it when tb ends, printing its log if tb failed. The
// first build takes minutes; share one server per test package.
func StartDendrite(tb testing.TB) *Dendrite {
	tb.Helper()
	bin := testtools.Tool(tb, "dendrite", dendritePkg)
	keys := testtools.Tool(tb, "dendrite", dendriteKeysPkg)
	gencfg := testtools.Tool(tb, "dendrite", dendriteConfigPkg)
	d := &Dendrite{
		dir:           tb.TempDir(),
		createAccount: testtools.Tool(tb, "dendrite", dendriteAccountPkg),
	}
	if err := d.writeConfig(keys, gencfg); err != nil {
		tb.Fatalf("dendrite: %v", err)
	}
	var err error
	for attempt := 0; attempt < 3; attempt++ {
		if err = d.start(bin); err == nil {
			break
		}
		// Another process may have taken the port between our probe and
		// Dendrite's bind: try a fresh one.
		if !strings.Contains(d.log.String(), "address already in use") {
			break
		}
	}
	if err != nil {
		tb.Fatalf("dendrite: %v\n--- dendrite log ---\n%s", err, d.log.String())
	}
	tb.Cleanup(func() {
		d.stop()
		if tb.Failed() {
			tb.Logf("--- dendrite log ---\n%s", d.log.String())
		}
	})
	return d
}

// writeConfig generates the signing key and a config tuned for tests.
func (d *Dendrite) writeConfig(keysBin, configBin string) error {
	key := filepath.Join(d.dir, "matrix_key.pem")
	if out, err := exec.Command(keysBin, "-private-key", key).CombinedOutput(); err != nil {
		return fmt.Errorf("generate-keys: %v\n%s", err, out)
	}
	out, err := exec.Command(configBin, "-ci", "-dir", d.dir, "-server", dendriteServerName).Output()
	if err != nil {
		return fmt.Errorf("generate-config: %v", err)
	}
	var cfg map[string]any
	if err := yaml.Unmarshal(out, &cfg); err != nil {
		return fmt.Errorf("generate-config output: %v", err)
	}
	secret := make([]byte, 16)
	if _, err := rand.Read(secret); err != nil {
		return err
	}
	set := func(path string, v any) error {
		parts := strings.Split(path, ".")
		m := cfg
		for _, p := range parts[:len(parts)-1] {
			next, ok := m[p].(map[string]any)
			if !ok {
				return fmt.Errorf("generated config has no %s", path)
			}
			m = next
		}
		m[parts[len(parts)-1]] = v
		return nil
	}
	for path, v := range map[string]any{
		"global.private_key":                    key,
		"global.disable_federation":             true,
		"global.jetstream.in_memory":            true,
		"global.jetstream.storage_path":         d.dir,
		"global.presence.enable_inbound":        false,
		"global.presence.enable_outbound":       false,
		"client_api.registration_shared_secret": hex.EncodeToString(secret),
		"client_api.rate_limiting.enabled":      false,
		// Accounts come from shared-secret registration only.
		"client_api.registration_disabled":                          true,
		"client_api.open_registration_without_verification_enabled": false,
		"sync_api.search.enabled":                                   false,
	} {
		if err := set(path, v); err != nil {
			return err
		}
	}
	cfg["logging"] = []any{map[string]any{"type": "std", "level": "info"}}
	b, err := yaml.Marshal(cfg)
	if err != nil {
		return err
	}
	d.config = filepath.Join(d.dir, "dendrite.yaml")
	return os.WriteFile(d.config, b, 0o600)
}

// start launches Dendrite on a free loopback port and waits until it serves.
func (d *Dendrite) start(bin string) error {
	port, err := freePort()
	if err != nil {
		return err
	}
	addr := net.JoinHostPort("127.0.0.1", port)
	d.url = "http://" + addr
	d.log = &dendriteLog{}
	d.exited = make(chan struct{})
	d.cmd = exec.Command(bin, "-config", d.config, "-http-bind-address", addr)
	d.cmd.Dir = d.dir
	d.cmd.Stdout, d.cmd.Stderr = d.log, d.log
	if err := d.cmd.Start(); err != nil {
		return fmt.Errorf("starting %s: %v", bin, err)
	}
	go func() {
		d.err = d.cmd.Wait()
		close(d.exited)
	}()
	if err := d.waitReady(); err != nil {
		d.stop()
		return err
	}
	return nil
}

// waitReady polls /_matrix/client/versions until it answers 200, the process
// exits, or the start budget runs out.
func (d *Dendrite) waitReady() error {
	ctx, cancel := context.WithTimeout(context.Background(), dendriteStartBudget)
	defer cancel()
	client := &http.Client{Timeout: 2 * time.Second}
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, d.url+"/_matrix/client/versions", nil)
		if resp, err := client.Do(req); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		select {
		case <-d.exited:
			return fmt.Errorf("dendrite exited before serving: %v", d.err)
		case <-ctx.Done():
			return fmt.Errorf("dendrite did not serve %s within %s", d.url, dendriteStartBudget)
		case <-tick.C:
		}
	}
}

// stop sends SIGTERM and kills the process if it has not exited in time.
func (d *Dendrite) stop() {
	if d.cmd == nil || d.cmd.Process == nil {
		return
	}
	select {
	case <-d.exited:
		return
	default:
	}
	_ = d.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-d.exited:
	case <-time.After(dendriteStopBudget):
		_ = d.cmd.Process.Kill()
		<-d.exited
	}
}

func freePort() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer l.Close()
	_, port, err := net.SplitHostPort(l.Addr().String())
	return port, err
}

// URL is the homeserver's client API base URL, http://127.0.0.1:<port>.
func (d *Dendrite) URL() string { return d.url }

// ServerName is the homeserver's server name (the part after the colon in
// user ids).
func (d *Dendrite) ServerName() string { return dendriteServerName }

// Log returns what the server has written so far.
func (d *Dendrite) Log() string { return d.log.String() }

// DendriteUser is an account on a Dendrite test server with a logged-in client.
type DendriteUser struct {
	UserID      id.UserID
	AccessToken string
	// Client is a mautrix client logged in as the user, without retries.
	Client *mautrix.Client
}

// CreateUser registers localpart with the create-account tool (shared-secret
// registration) and logs in, returning a fresh access token.
func (d *Dendrite) CreateUser(tb testing.TB, localpart string) *DendriteUser {
	tb.Helper()
	cmd := exec.Command(d.createAccount, "-config", d.config, "-url", d.url, "-username", localpart, "-passwordstdin")
	cmd.Stdin = strings.NewReader(DendritePassword)
	if out, err := cmd.CombinedOutput(); err != nil {
		tb.Fatalf("create-account %s: %v\n%s", localpart, err, redactTokens(string(out)))
	}
	return d.Login(tb, localpart)
}

// redactTokens hides the access token create-account prints.
func redactTokens(s string) string {
	if i := strings.Index(s, "AccessToken: "); i >= 0 {
		if j := strings.IndexByte(s[i:], ')'); j > 0 {
			return s[:i] + "AccessToken: [redacted]" + s[i+j:]
		}
	}
	return s
}

// Login logs in as an existing account, returning a new device's token.
func (d *Dendrite) Login(tb testing.TB, localpart string) *DendriteUser {
	tb.Helper()
	cli, err := mautrix.NewClient(d.url, "", "")
	if err != nil {
		tb.Fatal(err)
	}
	cli.DefaultHTTPRetries = 0
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	resp, err := cli.Login(ctx, &mautrix.ReqLogin{
		Type:             mautrix.AuthTypePassword,
		Identifier:       mautrix.UserIdentifier{Type: mautrix.IdentifierTypeUser, User: localpart},
		Password:         DendritePassword,
		StoreCredentials: true,
	})
	if err != nil {
		tb.Fatalf("login %s: %v", localpart, err)
	}
	return &DendriteUser{UserID: resp.UserID, AccessToken: resp.AccessToken, Client: cli}
}

func dendriteCtx() (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.Background(), 30*time.Second)
}

// CreateRoom creates a private room, inviting the given users, and returns its id.
func (u *DendriteUser) CreateRoom(tb testing.TB, name string, invite ...id.UserID) id.RoomID {
	tb.Helper()
	ctx, cancel := dendriteCtx()
	defer cancel()
	resp, err := u.Client.CreateRoom(ctx, &mautrix.ReqCreateRoom{Name: name, Preset: "private_chat", Invite: invite})
	if err != nil {
		tb.Fatalf("%s creating room: %v", u.UserID, err)
	}
	return resp.RoomID
}

// Invite invites user to room.
func (u *DendriteUser) Invite(tb testing.TB, room id.RoomID, user id.UserID) {
	tb.Helper()
	ctx, cancel := dendriteCtx()
	defer cancel()
	if _, err := u.Client.InviteUser(ctx, room, &mautrix.ReqInviteUser{UserID: user}); err != nil {
		tb.Fatalf("%s inviting %s to %s: %v", u.UserID, user, room, err)
	}
}

// Join joins room (the user must be invited to a private room).
func (u *DendriteUser) Join(tb testing.TB, room id.RoomID) {
	tb.Helper()
	ctx, cancel := dendriteCtx()
	defer cancel()
	if _, err := u.Client.JoinRoomByID(ctx, room); err != nil {
		tb.Fatalf("%s joining %s: %v", u.UserID, room, err)
	}
}

// Send posts a message event with the given content and returns its id.
func (u *DendriteUser) Send(tb testing.TB, room id.RoomID, content any) id.EventID {
	tb.Helper()
	ctx, cancel := dendriteCtx()
	defer cancel()
	resp, err := u.Client.SendMessageEvent(ctx, room, event.EventMessage, content)
	if err != nil {
		tb.Fatalf("%s sending to %s: %v", u.UserID, room, err)
	}
	return resp.EventID
}

// React reacts to target with key and returns the reaction's event id.
func (u *DendriteUser) React(tb testing.TB, room id.RoomID, target id.EventID, key string) id.EventID {
	tb.Helper()
	ctx, cancel := dendriteCtx()
	defer cancel()
	resp, err := u.Client.SendReaction(ctx, room, target, key)
	if err != nil {
		tb.Fatalf("%s reacting in %s: %v", u.UserID, room, err)
	}
	return resp.EventID
}

// Logout invalidates the user's access token (as an operator revoking it would).
func (u *DendriteUser) Logout(tb testing.TB) {
	tb.Helper()
	ctx, cancel := dendriteCtx()
	defer cancel()
	if _, err := u.Client.Logout(ctx); err != nil {
		tb.Fatalf("%s logging out: %v", u.UserID, err)
	}
}

// Messages returns the room's latest message events, newest last, as u sees them.
func (u *DendriteUser) Messages(tb testing.TB, room id.RoomID, limit int) []*event.Event {
	tb.Helper()
	ctx, cancel := dendriteCtx()
	defer cancel()
	resp, err := u.Client.Messages(ctx, room, "", "", mautrix.DirectionBackward, nil, limit)
	if err != nil {
		tb.Fatalf("%s reading %s: %v", u.UserID, room, err)
	}
	out := make([]*event.Event, 0, len(resp.Chunk))
	for i := len(resp.Chunk) - 1; i >= 0; i-- {
		e := resp.Chunk[i]
		e.Type.Class = event.MessageEventType
		if err := e.Content.ParseRaw(e.Type); err != nil && !errors.Is(err, event.ErrContentAlreadyParsed) {
			continue
		}
		out = append(out, e)
	}
	return out
}
