package matrix

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"maunium.net/go/mautrix/event"

	"github.com/klaxon-oncall/klaxon/notifiers"
)

// FuzzMatrixEvent feeds arbitrary events, as a homeserver's sync would
// deliver them, to the answer reader, and their bodies to the command
// parser: neither may panic; an answer always names the Klaxon message it
// answers and a known action; a command is only ever a bare command word.
// Seeds are real event shapes (testdata/*.json: a rich reply, a thread
// fallback reply, a reaction with a skin tone, an edit).
func FuzzMatrixEvent(f *testing.F) {
	seeds, _ := filepath.Glob(filepath.Join("testdata", "*.json"))
	for _, p := range seeds {
		b, err := os.ReadFile(p)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add([]byte(`{"type":"m.room.message","content":{"body":"ack"}}`))
	f.Add([]byte(`{"type":"m.reaction","content":{"m.relates_to":null}}`))
	f.Fuzz(func(t *testing.T, raw []byte) {
		if a, ok := parseCommand(string(raw)); ok {
			if commands[normalizeForTest(string(raw))] != a {
				t.Fatalf("parseCommand(%q) = %s, which is not the bare command", raw, a)
			}
		}
		var evt event.Event
		if json.Unmarshal(raw, &evt) != nil {
			return
		}
		ans, ok := readAnswer(&evt)
		if !ok {
			return
		}
		if len(ans.targets) == 0 {
			t.Fatalf("an answer without a target from %q", raw)
		}
		for _, id := range ans.targets {
			if id == "" {
				t.Fatalf("an empty target from %q", raw)
			}
		}
		switch ans.action {
		case notifiers.Ack, notifiers.Escalate, notifiers.Resolve, notifiers.Unack:
		default:
			t.Fatalf("action %q from %q", ans.action, raw)
		}
	})
}

// normalizeForTest restates parseCommand's documented normalisation.
func normalizeForTest(body string) string {
	lines := strings.Split(strings.ReplaceAll(body, "\r\n", "\n"), "\n")
	for len(lines) > 0 && strings.HasPrefix(lines[0], ">") {
		lines = lines[1:]
	}
	return strings.TrimRight(strings.ToLower(strings.TrimSpace(strings.Join(lines, "\n"))), ".! ")
}

// TestSeedEventsAreRead: the fuzz seeds are real answers and read as such.
func TestSeedEventsAreRead(t *testing.T) {
	for file, want := range map[string]notifiers.Action{
		"reply_ack.json": notifiers.Ack, "thread_escalate.json": notifiers.Escalate, "reaction_ack.json": notifiers.Ack, "edit_ignored.json": "",
	} {
		b, err := os.ReadFile(filepath.Join("testdata", file))
		if err != nil {
			t.Fatal(err)
		}
		var evt event.Event
		if err := json.Unmarshal(b, &evt); err != nil {
			t.Fatal(err)
		}
		ans, ok := readAnswer(&evt)
		if ok != (want != "") || ans.action != want {
			t.Errorf("%s: %+v %v, want %q", file, ans, ok, want)
		}
	}
}
