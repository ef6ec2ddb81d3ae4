package harness

import (
	"context"
	"testing"
	"time"

	"maunium.net/go/mautrix/event"
)

func TestDendriteRegistersUsersAndRelaysMessages(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a real Dendrite homeserver")
	}
	d := StartDendrite(t)
	alice := d.CreateUser(t, "alice")
	bob := d.CreateUser(t, "bob")
	if want := "@alice:" + d.ServerName(); string(alice.UserID) != want {
		t.Fatalf("alice's user id = %s, want %s", alice.UserID, want)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	who, err := bob.Client.Whoami(ctx)
	if err != nil || who.UserID != bob.UserID {
		t.Fatalf("whoami as bob = %v, %v", who, err)
	}

	room := alice.CreateRoom(t, "harness", bob.UserID)
	bob.Join(t, room)
	sent := bob.Send(t, room, &event.MessageEventContent{MsgType: event.MsgText, Body: "hello from bob"})
	// Dendrite's sync API catches up with the room asynchronously.
	Eventually(t, 30*time.Second, func() (bool, string) {
		for _, e := range alice.Messages(t, room, 20) {
			if e.ID == sent && e.Sender == bob.UserID && e.Content.AsMessage().Body == "hello from bob" {
				return true, ""
			}
		}
		return false, "alice does not see bob's message " + string(sent)
	})

	bob.Logout(t)
	if _, err := bob.Client.Whoami(ctx); err == nil {
		t.Fatal("whoami succeeded after logout")
	}
	if d.Log() == "" {
		t.Error("dendrite log is empty; want its output captured")
	}
}

func TestRedactTokens(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{`level=info msg="Created account: alice (AccessToken: syt_secret123)"`, `level=info msg="Created account: alice (AccessToken: [redacted])"`},
		{"no token here", "no token here"},
		{"AccessToken: unterminated", "AccessToken: unterminated"},
	} {
		if got := redactTokens(tc.in); got != tc.want {
			t.Errorf("redactTokens(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}
