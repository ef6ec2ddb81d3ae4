package escalation

import (
	"context"
	"errors"
	"time"

	"github.com/klaxon-oncall/klaxon/notifiers"
)

// Tx is one transaction of a Store (see Store.Write): its reads see the
// store as it stands, with the transaction's own writes, and its writes are
// committed together or not at all. A store offers storage only; the rules
// of an incident's life are written once, here, on top of it (Ingest,
// Update).
type Tx interface {
	// Group returns what the store remembers of Alertmanager group key (the
	// zero Group if nothing).
	Group(key string) (Group, error)
	// PutGroup stores g as group key's record.
	PutGroup(key string, g *Group) error
	// NextID allocates an incident id: one more than the highest ever
	// allocated (ids are never reused).
	NextID() (uint64, error)
	// Incident returns incident id, or ErrNotFound.
	Incident(id uint64) (*Incident, error)
	// PutIncident stores inc and keeps the schedule (State and
	// Escalation.WakeAt() of every unresolved incident) in step.
	PutIncident(inc *Incident) error
	// Pages returns incident id's outbox entries in Seq order (none for an
	// unknown incident).
	Pages(id uint64) ([]PageRecord, error)
	// PutPage stores outbox entry p (its ID, Incident and Seq set) and keeps
	// the index of unfinished pages in step.
	PutPage(p *PageRecord) error
	// AppendEvents appends evs to incident id's timeline, after what it holds.
	AppendEvents(id uint64, evs []Event) error
	// PutState writes one key of a channel's state (a nil Value deletes it),
	// unless w.Replaces turns down what the key holds.
	PutState(w notifiers.StateWrite) error
}

// Ingest merges Alertmanager notification n into the open incident of its
// group, or opens one, and in the same transaction applies decide to the
// incident when anything changed. A duplicate (nothing new, or only stale or
// resolved alerts) writes nothing and names the incident it duplicates.
// decide returning ErrNoChange is a quiet refresh: the incident and the
// notification's own timeline entries are written, its escalation is not
// touched.
func Ingest(ctx context.Context, s Store, n Notification, now time.Time, decide IngestFunc) (IngestResult, error) {
	var res IngestResult
	err := s.Write(ctx, func(tx Tx) error {
		res = IngestResult{} // Write may run this more than once
		g, err := tx.Group(n.GroupKey)
		if err != nil {
			return err
		}
		var inc *Incident
		var ev []Event
		var pages []PageRecord
		changed := false
		if g.Open != 0 {
			if inc, err = tx.Incident(g.Open); err != nil {
				return err
			}
			if ev, changed = Merge(inc, &g, n, now); changed {
				if pages, err = tx.Pages(inc.ID); err != nil {
					return err
				}
			}
		} else if inc, ev = OpenIncident(0, &g, n, now); inc != nil {
			// The id is allocated only for an incident that opens.
			if inc.ID, err = tx.NextID(); err != nil {
				return err
			}
			g.Open = inc.ID
			changed, res.Opened = true, true
		}
		if !changed {
			res.Incident = g.Open
			return nil
		}
		res.Incident, res.Changed, res.Resolved = inc.ID, true, inc.State == Resolved
		ch, err := decide(inc, pages, ev)
		if errors.Is(err, ErrNoChange) {
			ch, err = Change{}, nil
		}
		if err != nil {
			return err
		}
		ch.Events = append(ev, ch.Events...)
		if err := writeChange(tx, inc, nil, pages, &ch); err != nil {
			return err
		}
		return tx.PutGroup(n.GroupKey, &g)
	})
	if err != nil {
		return IngestResult{}, err
	}
	return res, nil
}

// Update applies fn to incident id and writes the incident and its change in
// one transaction, returning both (the change with the ids of its new
// pages). fn returning ErrNoChange writes nothing, and Update returns the
// incident as stored. An incident fn resolves (by hand) is detached from its
// Alertmanager group, so the group's next firing opens a new incident.
func Update(ctx context.Context, s Store, id uint64, fn UpdateFunc) (Incident, Change, error) {
	var out Incident
	var ch Change
	err := s.Write(ctx, func(tx Tx) error {
		out, ch = Incident{}, Change{} // Write may run this more than once
		inc, err := tx.Incident(id)
		if err != nil {
			return err
		}
		pages, err := tx.Pages(id)
		if err != nil {
			return err
		}
		stored := inc.Clone()
		c, err := fn(inc, pages)
		if errors.Is(err, ErrNoChange) {
			out = *stored
			return nil
		}
		if err != nil {
			return err
		}
		if stored.State != Resolved && inc.State == Resolved && inc.GroupKey != "" {
			g, err := tx.Group(inc.GroupKey)
			if err != nil {
				return err
			}
			CloseGroup(inc, &g)
			if err := tx.PutGroup(inc.GroupKey, &g); err != nil {
				return err
			}
		}
		if err := writeChange(tx, inc, stored, pages, &c); err != nil {
			return err
		}
		out, ch = *inc, c
		return nil
	})
	if err != nil {
		return Incident{}, Change{}, err
	}
	return out, ch, nil
}

// writeChange writes inc (unless it is still the same as stored, nil for
// an incident not stored yet) and change ch: its timeline entries, its
// pages (a new one, Seq 0, gets the next sequence number after pages, the
// incident's outbox as read, and its ID) and its channel state.
func writeChange(tx Tx, inc, stored *Incident, pages []PageRecord, ch *Change) error {
	if stored == nil || !inc.Same(stored) {
		if err := tx.PutIncident(inc); err != nil {
			return err
		}
	}
	if len(ch.Events) > 0 {
		if err := tx.AppendEvents(inc.ID, ch.Events); err != nil {
			return err
		}
	}
	seq := 0
	for _, p := range pages {
		seq = max(seq, p.Seq)
	}
	for i := range ch.Pages {
		p := &ch.Pages[i]
		if p.Seq == 0 {
			seq++
			p.Seq, p.Incident, p.ID = seq, inc.ID, PageID(inc.ID, seq)
		}
		if err := tx.PutPage(p); err != nil {
			return err
		}
	}
	for _, w := range ch.State {
		if err := tx.PutState(w); err != nil {
			return err
		}
	}
	return nil
}
