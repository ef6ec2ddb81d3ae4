package matrix

import (
	"context"
	"errors"
	"fmt"
	"slices"

	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"

	"github.com/klaxon-oncall/klaxon/notifiers"
)

// answer is a person's reply or reaction to one of Klaxon's messages.
type answer struct {
	targets []id.EventID // candidate Klaxon messages answered, best first
	action  notifiers.Action
}

// readAnswer extracts the answer carried by evt, if any: a reply to or a
// thread message under a Klaxon message whose text is a command, or a ✅/👍
// reaction to a Klaxon message. Edits are ignored: the original was read.
func readAnswer(evt *event.Event) (answer, bool) {
	evt.Type.Class = event.MessageEventType
	if err := evt.Content.ParseRaw(evt.Type); err != nil && !errors.Is(err, event.ErrContentAlreadyParsed) {
		return answer{}, false
	}
	switch evt.Type {
	case event.EventMessage:
		msg := evt.Content.AsMessage()
		if msg.RelatesTo == nil || msg.RelatesTo.GetReplaceID() != "" || msg.NewContent != nil {
			return answer{}, false
		}
		if msg.MsgType != event.MsgText && msg.MsgType != event.MsgNotice && msg.MsgType != event.MsgEmote {
			return answer{}, false
		}
		// Prefer the message explicitly replied to (the exact page
		// answered), then the thread root, then a thread's fallback reply
		// (which merely points at the thread's latest message).
		var targets []id.EventID
		for _, t := range []id.EventID{
			msg.RelatesTo.GetNonFallbackReplyTo(),
			msg.RelatesTo.GetThreadParent(),
			msg.RelatesTo.GetReplyTo(),
		} {
			if t != "" && !slices.Contains(targets, t) {
				targets = append(targets, t)
			}
		}
		if len(targets) == 0 {
			return answer{}, false
		}
		a, ok := parseCommand(msg.Body)
		return answer{targets: targets, action: a}, ok
	case event.EventReaction:
		rel := evt.Content.AsReaction().RelatesTo
		target := rel.GetAnnotationID()
		if target == "" {
			return answer{}, false
		}
		a, ok := parseReaction(rel.GetAnnotationKey())
		return answer{targets: []id.EventID{target}, action: a}, ok
	}
	return answer{}, false
}

// handleEvent turns an answer in evt into a Response and confirms the
// outcome in the thread. It returns an error only when the event should be
// tried again (state store or Responder failures); the caller then does not
// advance the sync position.
func (n *Notifier) handleEvent(ctx context.Context, r *syncRun, room id.RoomID, evt *event.Event) error {
	if evt.Sender == n.user || evt.ID == "" {
		return nil
	}
	evt.RoomID = room
	ans, ok := readAnswer(evt)
	if !ok {
		return nil
	}
	done, err := n.state.wasProcessed(ctx, evt.ID)
	if err != nil || done {
		return err
	}
	var ref *eventRef
	for _, t := range ans.targets {
		if ref, err = n.state.event(ctx, t); err != nil {
			return err
		}
		if ref != nil {
			break
		}
	}
	if ref == nil {
		return nil // an answer to something Klaxon did not post
	}
	if ref.Room != room {
		n.log.Warn("ignoring an answer that names a Klaxon message from another room",
			"room", room, "sender", evt.Sender, "event", evt.ID)
		return nil
	}
	log := n.log.With("incident", ref.Incident, "sender", evt.Sender, "event", evt.ID, "action", ans.action)
	out, err := n.cfg.Responder.Respond(ctx, notifiers.Response{
		Action:   ans.action,
		Incident: ref.Incident,
		PageID:   ref.PageID,
		Channel:  notifiers.Matrix,
		From:     string(evt.Sender),
		At:       n.now(),
	})
	var reply string
	switch {
	case errors.Is(err, notifiers.ErrNotOnRota):
		log.Info("answer refused: sender is not on the rota")
		reply = notifiers.ErrNotOnRota.Error() + "."
	case errors.Is(err, notifiers.ErrUnknownIncident):
		reply = fmt.Sprintf("Klaxon has no incident #%d any more; nothing was changed.", ref.Incident)
	case err != nil:
		r.failures[evt.ID]++
		if r.failures[evt.ID] < maxResponseFailures {
			return fmt.Errorf("matrix: responding to %s: %w", evt.ID, err)
		}
		log.Error("giving up on an answer", "err", err)
		reply = fmt.Sprintf("Klaxon could not record your %s for incident #%d. Please use another channel.", ans.action, ref.Incident)
	default:
		log.Info("answer taken", "applied", out.Applied)
		reply = out.Message
		if reply == "" {
			reply = defaultOutcome(ans.action, ref.Incident, out)
		}
	}
	delete(r.failures, evt.ID)
	// Confirm in the thread, replying to the person's message. The
	// transaction id derives from their event id: handling it again after a
	// crash does not post twice.
	content := renderText(reply)
	content.RelatesTo = (&event.RelatesTo{}).SetThread(ref.Root, evt.ID)
	if evt.Type == event.EventReaction {
		content.RelatesTo = (&event.RelatesTo{}).SetThread(ref.Root, ref.Root)
	}
	if _, err := n.send(ctx, room, event.EventMessage, content, txnID(string(evt.ID), "answer")); err != nil {
		// The answer is recorded; the confirmation is a courtesy.
		log.Warn("posting the confirmation failed", "err", n.fail("confirm", err))
	}
	return n.state.markProcessed(ctx, evt.ID)
}

// defaultOutcome words a confirmation when the Responder gave no message.
func defaultOutcome(a notifiers.Action, inc uint64, out notifiers.Outcome) string {
	if !out.Applied {
		return fmt.Sprintf("Incident #%d: nothing changed (%s).", inc, a)
	}
	by := ""
	if out.By != "" {
		by = " by " + out.By
	}
	switch a {
	case notifiers.Ack:
		return fmt.Sprintf("Incident #%d acknowledged%s (via Matrix).", inc, by)
	case notifiers.Escalate:
		return fmt.Sprintf("Incident #%d escalated%s (via Matrix).", inc, by)
	case notifiers.Resolve:
		return fmt.Sprintf("Incident #%d resolved%s (via Matrix).", inc, by)
	case notifiers.Unack:
		return fmt.Sprintf("Incident #%d unacknowledged%s (via Matrix).", inc, by)
	}
	return fmt.Sprintf("Incident #%d: %s%s.", inc, a, by)
}
