package matrix

import (
	"context"
	"errors"
	"fmt"
	"slices"

	"maunium.net/go/mautrix/event"

	"github.com/klaxon-oncall/klaxon/notifiers"
)

// SelfTest checks, without posting anything, that the access token is valid
// and belongs to the configured bot, that the bot is joined to the alert room
// and that the room's power levels let it send messages, edits and reactions.
func (n *Notifier) SelfTest(ctx context.Context) notifiers.Health {
	who, err := n.cli.Whoami(ctx)
	if err != nil {
		return n.unhealthy("checking the access token", err)
	}
	if who.UserID != n.user {
		return notifiers.Health{Status: notifiers.Down,
			Reason: fmt.Sprintf("matrix: the access token belongs to %s, not the configured bot %s", who.UserID, n.user)}
	}
	room, err := n.alertRoom(ctx)
	if err != nil {
		return n.unhealthy("resolving the alert room", err)
	}
	joined, err := n.cli.JoinedRooms(ctx)
	if err != nil {
		return n.unhealthy("listing joined rooms", err)
	}
	if !slices.Contains(joined.JoinedRooms, room) {
		return notifiers.Health{Status: notifiers.Down,
			Reason: fmt.Sprintf("matrix: the bot %s is not joined to the alert room %s", n.user, n.cfg.Room)}
	}
	var pl event.PowerLevelsEventContent
	if err := n.cli.StateEvent(ctx, room, event.StatePowerLevels, "", &pl); err != nil {
		return n.unhealthy("reading the alert room's power levels", err)
	}
	have := pl.GetUserLevel(n.user)
	for _, t := range []event.Type{event.EventMessage, event.EventReaction} {
		if need := pl.GetEventLevel(t); have < need {
			return notifiers.Health{Status: notifiers.Down,
				Reason: fmt.Sprintf("matrix: the bot %s may not send %s in the alert room %s (power level %d, needs %d)",
					n.user, t.Type, n.cfg.Room, have, need)}
		}
	}
	return notifiers.Health{Status: notifiers.Up, Reason: fmt.Sprintf("matrix: %s can post in %s", n.user, n.cfg.Room)}
}

// unhealthy turns a failed self-test call into a Down verdict worded for an
// alarm. Temporary failures (homeserver unreachable, 5xx) are Down as well:
// the channel cannot page right now.
func (n *Notifier) unhealthy(what string, err error) notifiers.Health {
	err = n.fail(what, err)
	var ne *notifiers.Error
	reason := err.Error()
	if errors.As(err, &ne) {
		switch ne.Code {
		case "M_UNKNOWN_TOKEN", "401":
			reason = "matrix: the bot's access token was rejected (" + ne.Code + "): it was revoked or logged out"
		case "M_USER_DEACTIVATED":
			reason = "matrix: the bot's account is deactivated"
		default:
			reason = "matrix: " + what + " failed: " + ne.Err.Error()
		}
	}
	return notifiers.Health{Status: notifiers.Down, Reason: reason}
}
