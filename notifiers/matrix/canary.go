package matrix

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"

	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"

	"github.com/klaxon-oncall/klaxon/notifiers"
)

// Canary implements canary.Prober: it posts an m.notice "Klaxon canary
// <random token>" to the canary room (Config.CanaryRoom, default the alert
// room) and waits, for the confirmation deadline (ConfirmWithin, default
// 30s, also when page confirmation is off), for the notice to come back
// through the observer account's /sync when one is configured (only that
// proves the homeserver relays to other clients), or else through the bot's
// own /sync. Run must be running: it is what syncs.
//
// Not seen within the deadline: confirmed false, with the reason in words.
// A send that fails (temporary, or the account may not post: as Notify
// classifies it), an unresolvable canary room, or ctx ending: err, which
// feeds no health (the self-test covers the account).
//
// The notice mentions nobody (empty m.mentions), and m.notice is what
// clients' default push rules keep silent: it notifies no one.
func (n *Notifier) Canary(ctx context.Context) (confirmed bool, reason string, err error) {
	room, err := n.canaryRoom(ctx)
	if err != nil {
		return false, "", err
	}
	var raw [12]byte
	if _, err := rand.Read(raw[:]); err != nil {
		return false, "", fmt.Errorf("matrix canary: %w", err)
	}
	token := hex.EncodeToString(raw[:])
	within := n.waitWithin()

	c := &n.conf
	c.mu.Lock()
	c.canaries++ // from now on, an echo that beats the send's answer is kept
	c.mu.Unlock()
	defer func() {
		c.mu.Lock()
		c.canaries--
		c.mu.Unlock()
	}()

	content := &event.MessageEventContent{MsgType: event.MsgNotice, Body: "Klaxon canary " + token, Mentions: &event.Mentions{}}
	ev, err := n.send(ctx, room, event.EventMessage, content, "klx-canary-"+token)
	if err != nil {
		return false, "", n.fail("send canary", err)
	}
	done := make(chan struct{})
	c.mu.Lock()
	_, echoed := c.echoed[ev]
	if echoed {
		delete(c.echoed, ev)
	} else {
		c.waiting[ev] = waitingPage{since: n.now(), canary: done, room: room}
	}
	c.mu.Unlock()
	if echoed {
		return true, n.canarySeen(room), nil
	}
	defer func() {
		c.mu.Lock()
		delete(c.waiting, ev)
		c.mu.Unlock()
	}()
	select {
	case <-done:
		return true, n.canarySeen(room), nil
	case <-n.deadline(within):
		by := ""
		if n.observer != nil {
			by = " by the observer account"
		}
		return false, fmt.Sprintf("canary posted to %s but not seen back%s within %s: the homeserver may not be delivering", room, by, within), nil
	case <-ctx.Done():
		return false, "", fmt.Errorf("matrix canary posted to %s: %w before it was seen back", room, ctx.Err())
	}
}

func (n *Notifier) canarySeen(room id.RoomID) string {
	if n.observer != nil {
		return fmt.Sprintf("canary seen in %s by the observer account", room)
	}
	return fmt.Sprintf("canary seen back in %s's timeline", room)
}

// canaryRoom returns the canary room id (the alert room without
// Config.CanaryRoom), resolving an alias on first use.
func (n *Notifier) canaryRoom(ctx context.Context) (id.RoomID, error) {
	if n.cfg.CanaryRoom == "" {
		return n.alertRoom(ctx)
	}
	n.roomMu.Lock()
	defer n.roomMu.Unlock()
	if n.canary != "" {
		return n.canary, nil
	}
	res, err := n.cli.ResolveAlias(ctx, id.RoomAlias(n.cfg.CanaryRoom))
	if err != nil {
		return "", n.fail("resolve canary room alias "+n.cfg.CanaryRoom, err)
	}
	if res == nil || res.RoomID == "" || res.RoomID[0] != '!' {
		return "", notifiers.Temporary("", 0, errors.New("matrix: canary room alias "+n.cfg.CanaryRoom+" resolved to no room"))
	}
	n.canary = res.RoomID
	return n.canary, nil
}

// canaryRoomID is the resolved canary room, "" when there is none of its
// own or it is not resolved yet.
func (n *Notifier) canaryRoomID() id.RoomID {
	n.roomMu.Lock()
	defer n.roomMu.Unlock()
	return n.canary
}

// confirmRooms resolves the rooms whose timelines confirm: the alert room,
// and the canary room if it is another. A canary room that cannot be
// resolved is left out (the canary reports that itself) so pages are still
// confirmed; complete is then false, and the caller tries again later.
func (n *Notifier) confirmRooms(ctx context.Context) (rooms []id.RoomID, complete bool, err error) {
	room, err := n.alertRoom(ctx)
	if err != nil {
		return nil, false, err
	}
	rooms = []id.RoomID{room}
	if n.cfg.CanaryRoom == "" {
		return rooms, true, nil
	}
	cr, err := n.canaryRoom(ctx)
	if err != nil {
		n.log.Warn("resolving the canary room failed", "room", n.cfg.CanaryRoom, "err", err)
		return rooms, false, nil
	}
	if cr != room {
		rooms = append(rooms, cr)
	}
	return rooms, true, nil
}
