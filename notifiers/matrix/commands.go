package matrix

import (
	"strings"

	"github.com/klaxon-oncall/klaxon/notifiers"
)

// maxCommandBytes bounds the message bodies considered as commands; anything
// longer is conversation, not an answer.
const maxCommandBytes = 4096

// commands maps a reply's text to the action it asks for.
var commands = map[string]notifiers.Action{
	"ack":         notifiers.Ack,
	"acknowledge": notifiers.Ack,
	"1":           notifiers.Ack,
	"escalate":    notifiers.Escalate,
	"2":           notifiers.Escalate,
	"resolve":     notifiers.Resolve,
	"unack":       notifiers.Unack,
}

// parseCommand reads a reply body: the reply fallback ("> ..." quote lines
// and the blank line after them) is dropped, the rest trimmed, lower-cased
// and stripped of trailing "." or "!". Only a bare command counts: "ack"
// inside a sentence is conversation.
func parseCommand(body string) (notifiers.Action, bool) {
	if len(body) > maxCommandBytes {
		return "", false
	}
	lines := strings.Split(strings.ReplaceAll(body, "\r\n", "\n"), "\n")
	for len(lines) > 0 && strings.HasPrefix(lines[0], ">") {
		lines = lines[1:]
	}
	s := strings.ToLower(strings.TrimSpace(strings.Join(lines, "\n")))
	s = strings.TrimRight(s, ".! ")
	a, ok := commands[s]
	return a, ok
}

// parseReaction maps a reaction key to an action: ✅ and 👍 acknowledge,
// with or without the emoji variation selector or a skin-tone modifier.
func parseReaction(key string) (notifiers.Action, bool) {
	if len(key) > 64 {
		return "", false
	}
	k := strings.Map(func(r rune) rune {
		if r == '\uFE0F' || r == '\uFE0E' || (r >= 0x1F3FB && r <= 0x1F3FF) {
			return -1
		}
		return r
	}, strings.TrimSpace(key))
	switch k {
	case "✅", "👍", "✔":
		return notifiers.Ack, true
	}
	return "", false
}
