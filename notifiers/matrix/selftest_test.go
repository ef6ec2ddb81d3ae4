package matrix

import (
	"context"
	"strings"
	"testing"

	"github.com/klaxon-oncall/klaxon/notifiers"
)

func TestSelfTest(t *testing.T) {
	tests := []struct {
		name   string
		setup  func(f *fakeHS)
		status notifiers.Status
		reason string
	}{
		{"healthy", func(f *fakeHS) {}, notifiers.Up, "can post"},
		{"revoked token", func(f *fakeHS) { f.token = "another" }, notifiers.Down, "access token was rejected (M_UNKNOWN_TOKEN)"},
		{"token of another user", func(f *fakeHS) { f.whoami = "@someone:example.org" }, notifiers.Down, "belongs to @someone:example.org"},
		{"not joined", func(f *fakeHS) { f.joined = []string{"!other:example.org"} }, notifiers.Down, "not joined to the alert room"},
		{"may not send", func(f *fakeHS) {
			f.power["events"] = map[string]any{"m.room.message": 100}
		}, notifiers.Down, "may not send m.room.message"},
		{"may not react", func(f *fakeHS) {
			f.power["users"] = map[string]any{}
			f.power["events"] = map[string]any{"m.reaction": 10}
		}, notifiers.Down, "may not send m.reaction"},
		{"homeserver down", func(f *fakeHS) {
			f.failNext("/account/whoami", 502, "bad gateway")
		}, notifiers.Down, "checking the access token failed"},
		{"deactivated", func(f *fakeHS) {
			f.failNext("/account/whoami", 403, `{"errcode":"M_USER_DEACTIVATED","error":"gone"}`)
		}, notifiers.Down, "deactivated"},
		{"power levels unreadable", func(f *fakeHS) {
			f.failNext("/rooms/", 403, `{"errcode":"M_FORBIDDEN","error":"not in room"}`)
		}, notifiers.Down, "power levels"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f := newFakeHS(t)
			tc.setup(f)
			n, _, _, _ := newTestNotifier(t, f, nil)
			h := n.SelfTest(context.Background())
			if h.Status != tc.status || !strings.Contains(h.Reason, tc.reason) {
				t.Errorf("SelfTest = %+v, want %s with %q", h, tc.status, tc.reason)
			}
			if strings.Contains(h.Reason, testToken) {
				t.Errorf("reason leaks the token: %s", h.Reason)
			}
		})
	}
}

func TestSelfTestResolvesAlias(t *testing.T) {
	f := newFakeHS(t)
	n, _, _, _ := newTestNotifier(t, f, func(c *Config) { c.Room = "#alerts:example.org" })
	if h := n.SelfTest(context.Background()); h.Status != notifiers.Down || !strings.Contains(h.Reason, "#alerts:example.org") {
		t.Errorf("SelfTest with an unknown alias = %+v", h)
	}
	f.aliases["#alerts:example.org"] = testRoom
	if h := n.SelfTest(context.Background()); h.Status != notifiers.Up {
		t.Errorf("SelfTest = %+v, want up", h)
	}
}
