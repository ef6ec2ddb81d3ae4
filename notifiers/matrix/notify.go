package matrix

import (
	"context"
	"errors"
	"fmt"
	"slices"

	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"

	"github.com/klaxon-oncall/klaxon/notifiers"
)

// Notify delivers p:
//
//   - KindPage, first page of an incident: the alert message in the alert room
//     (transaction id = p.ID). Later pages of the same incident are posted in
//     the alert message's thread, mentioning the next person, and the alert
//     message is edited to list who has been paged. (A thread keeps one
//     incident in one place in the room; mentions in threads notify as usual.)
//     With DirectMessages the person also gets the page in a direct room.
//   - KindAcknowledged, KindUnacknowledged, KindEscalated, KindResolved: a
//     reply in the alert message's thread and an edit of the alert message
//     showing the new state. Without an alert message there is nothing to do.
//   - KindNotice: a reply in the thread, or a message of its own when the
//     incident has no alert message.
//   - KindMessage (no incident): a direct message to the person with
//     DirectMessages, otherwise a message in the alert room mentioning them.
//
// Every send's transaction id derives from p.ID, so retries never double-post.
// Errors are classified with notifiers.Permanent / notifiers.Temporary.
func (n *Notifier) Notify(ctx context.Context, p notifiers.Page) (notifiers.Receipt, error) {
	if p.ID == "" {
		return notifiers.Receipt{}, notifiers.Permanent("", errors.New("matrix: page has no id"))
	}
	if p.Kind == notifiers.KindMessage {
		return n.message(ctx, p)
	}
	room, err := n.alertRoom(ctx)
	if err != nil {
		return notifiers.Receipt{}, err
	}
	defer n.lockIncident(p.Incident)()
	rec, err := n.state.incident(ctx, p.Incident)
	if err != nil {
		return notifiers.Receipt{}, notifiers.Temporary("", 0, err)
	}
	switch p.Kind {
	case notifiers.KindPage:
		if rec == nil {
			return n.postRoot(ctx, room, p)
		}
		return n.pageInThread(ctx, rec, p)
	case notifiers.KindAcknowledged, notifiers.KindUnacknowledged, notifiers.KindEscalated, notifiers.KindResolved:
		if rec == nil {
			return notifiers.Receipt{Detail: "no Matrix message for this incident"}, nil
		}
		return n.update(ctx, rec, p)
	case notifiers.KindNotice:
		if rec == nil {
			return n.postRoot(ctx, room, p)
		}
		return n.update(ctx, rec, p)
	}
	return notifiers.Receipt{}, notifiers.Permanent("", fmt.Errorf("matrix: unknown page kind %q", p.Kind))
}

// postRoot posts the incident's alert message and remembers it.
func (n *Notifier) postRoot(ctx context.Context, room id.RoomID, p notifiers.Page) (notifiers.Receipt, error) {
	small, extra := compactPage(p)
	content := renderPage(small, "", nil, extra)
	ev, err := n.send(ctx, room, event.EventMessage, content, txnID(p.ID, ""))
	if err != nil {
		return notifiers.Receipt{}, n.fail("send page", err)
	}
	rec := &incidentRecord{Room: room, Root: ev, Page: small, Extra: extra}
	if p.Kind == notifiers.KindPage {
		rec.Paged = []string{recipientName(p.Recipient)}
	}
	if err := n.remember(ctx, ev, eventRef{Room: room, Root: ev, Incident: p.Incident, PageID: p.ID}); err != nil {
		return notifiers.Receipt{}, err
	}
	if err := n.state.putIncident(ctx, p.Incident, rec); err != nil {
		return notifiers.Receipt{}, notifiers.Temporary("", 0, err)
	}
	detail := "posted in the alert room"
	if p.Kind == notifiers.KindPage {
		detail = n.directMessage(ctx, p, detail)
		if len(content.Mentions.UserIDs) == 0 {
			detail += " (no Matrix id for the person: not mentioned)"
		}
	}
	n.expect(ev, p)
	return notifiers.Receipt{ProviderID: string(ev), Detail: detail}, nil
}

// pageInThread pages the next person in the thread of the alert message.
func (n *Notifier) pageInThread(ctx context.Context, rec *incidentRecord, p notifiers.Page) (notifiers.Receipt, error) {
	if rec.Page.ID == p.ID { // a retry of the page that made the alert message
		n.expect(rec.Root, p)
		return notifiers.Receipt{ProviderID: string(rec.Root), Detail: "posted in the alert room"}, nil
	}
	small, extra := compactPage(p)
	content := renderPage(small, "", nil, extra)
	content.RelatesTo = (&event.RelatesTo{}).SetThread(rec.Root, rec.Root)
	ev, err := n.send(ctx, rec.Room, event.EventMessage, content, txnID(p.ID, ""))
	if err != nil {
		return notifiers.Receipt{}, n.fail("send page", err)
	}
	if err := n.remember(ctx, ev, eventRef{Room: rec.Room, Root: rec.Root, Incident: p.Incident, PageID: p.ID}); err != nil {
		return notifiers.Receipt{}, err
	}
	if name := recipientName(p.Recipient); !slices.Contains(rec.Paged, name) {
		rec.Paged = append(rec.Paged, name)
	}
	if err := n.state.putIncident(ctx, p.Incident, rec); err != nil {
		return notifiers.Receipt{}, notifiers.Temporary("", 0, err)
	}
	detail := n.directMessage(ctx, p, "posted in the alert message's thread")
	// The page itself went out; a failed edit only leaves the summary stale.
	if err := n.editRoot(ctx, rec, p.ID); err != nil {
		n.log.Warn("editing alert message failed", "incident", p.Incident, "err", err)
	}
	n.expect(ev, p)
	return notifiers.Receipt{ProviderID: string(ev), Detail: detail}, nil
}

// update posts a state change in the thread and edits the alert message.
func (n *Notifier) update(ctx context.Context, rec *incidentRecord, p notifiers.Page) (notifiers.Receipt, error) {
	if p.Via == notifiers.Matrix {
		// The answer came from this thread and the bot confirmed it there:
		// only the alert message's state changes.
		if line, changed := statusLine(p); changed && line != rec.Status {
			rec.Status = line
			if err := n.state.putIncident(ctx, p.Incident, rec); err != nil {
				return notifiers.Receipt{}, notifiers.Temporary("", 0, err)
			}
			if err := n.editRoot(ctx, rec, p.ID); err != nil {
				return notifiers.Receipt{}, err
			}
		}
		return notifiers.Receipt{Detail: "alert message edited (the answer was confirmed in its thread)"}, nil
	}
	content := renderUpdate(p)
	content.RelatesTo = (&event.RelatesTo{}).SetThread(rec.Root, rec.Root)
	ev, err := n.send(ctx, rec.Room, event.EventMessage, content, txnID(p.ID, ""))
	if err != nil {
		return notifiers.Receipt{}, n.fail("send "+string(p.Kind), err)
	}
	line, changed := statusLine(p)
	if changed && line != rec.Status {
		rec.Status = line
		if err := n.state.putIncident(ctx, p.Incident, rec); err != nil {
			return notifiers.Receipt{}, notifiers.Temporary("", 0, err)
		}
	}
	if changed {
		// A retry re-sends the same edit under the same transaction id.
		if err := n.editRoot(ctx, rec, p.ID); err != nil {
			return notifiers.Receipt{}, err
		}
	}
	return notifiers.Receipt{ProviderID: string(ev), Detail: "posted in the alert message's thread"}, nil
}

// editRoot replaces the alert message's content with its current state.
func (n *Notifier) editRoot(ctx context.Context, rec *incidentRecord, pageID string) error {
	content := renderPage(rec.Page, rec.Status, rec.Paged, rec.Extra)
	content.SetEdit(rec.Root)
	if _, err := n.send(ctx, rec.Room, event.EventMessage, content, txnID(pageID, "edit")); err != nil {
		return n.fail("edit alert message", err)
	}
	return nil
}

// remember records that ev, posted by Klaxon, may be answered.
func (n *Notifier) remember(ctx context.Context, ev id.EventID, ref eventRef) error {
	if err := n.state.putEvent(ctx, ev, ref); err != nil {
		return notifiers.Temporary("", 0, err)
	}
	return nil
}

// directMessage also sends p to the person's direct room when configured.
// Failures are logged and noted in the receipt: the alert room got the page.
func (n *Notifier) directMessage(ctx context.Context, p notifiers.Page, detail string) string {
	user := id.UserID(p.Recipient.MatrixID)
	if !n.cfg.DirectMessages || !validUserID(user) || user == n.user {
		return detail
	}
	small, extra := compactPage(p)
	room, err := n.dmRoom(ctx, user)
	if err == nil {
		var ev id.EventID
		ev, err = n.send(ctx, room, event.EventMessage, renderPage(small, "", nil, extra), txnID(p.ID, "dm"))
		if err == nil {
			err = n.remember(ctx, ev, eventRef{Room: room, Root: ev, Incident: p.Incident, PageID: p.ID})
		}
	}
	if err != nil {
		err = n.fail("direct message", err)
		n.log.Warn("direct message failed", "incident", p.Incident, "user", user, "err", err)
		return detail + "; direct message failed: " + err.Error()
	}
	return detail + " and as a direct message"
}

// dmRoom returns the direct room with user, creating it once.
func (n *Notifier) dmRoom(ctx context.Context, user id.UserID) (id.RoomID, error) {
	room, err := n.state.dmRoom(ctx, user)
	if err != nil || room != "" {
		return room, err
	}
	resp, err := n.cli.CreateRoom(ctx, &mautrix.ReqCreateRoom{
		Invite:   []id.UserID{user},
		IsDirect: true,
		Preset:   "trusted_private_chat",
		Name:     "Klaxon pages",
		Topic:    "Pages from Klaxon. Reply ack or 1 to acknowledge.",
	})
	if err != nil {
		return "", err
	}
	if err := n.state.putDMRoom(ctx, user, resp.RoomID); err != nil {
		return "", err
	}
	return resp.RoomID, nil
}

// message sends a message outside any incident to one person: in their
// direct room when DirectMessages is on, else in the alert room with a
// mention. A person without a Matrix id cannot get one (permanent).
func (n *Notifier) message(ctx context.Context, p notifiers.Page) (notifiers.Receipt, error) {
	user := id.UserID(p.Recipient.MatrixID)
	if !validUserID(user) {
		return notifiers.Receipt{}, notifiers.Permanent("", fmt.Errorf("matrix: %s has no valid Matrix id", recipientName(p.Recipient)))
	}
	if n.cfg.DirectMessages && user != n.user {
		room, err := n.dmRoom(ctx, user)
		if err != nil {
			return notifiers.Receipt{}, n.fail("direct message", err)
		}
		var b textBuilder
		b.text(p.Text)
		ev, err := n.send(ctx, room, event.EventMessage, b.content(nil), txnID(p.ID, "dm"))
		if err != nil {
			return notifiers.Receipt{}, n.fail("direct message", err)
		}
		return notifiers.Receipt{ProviderID: string(ev), Detail: "sent as a direct message"}, nil
	}
	room, err := n.alertRoom(ctx)
	if err != nil {
		return notifiers.Receipt{}, err
	}
	var b textBuilder
	b.pill(user, p.Recipient.Name)
	b.text(": " + p.Text)
	ev, err := n.send(ctx, room, event.EventMessage, b.content([]id.UserID{user}), txnID(p.ID, ""))
	if err != nil {
		return notifiers.Receipt{}, n.fail("send message", err)
	}
	return notifiers.Receipt{ProviderID: string(ev), Detail: "posted in the alert room with a mention"}, nil
}
