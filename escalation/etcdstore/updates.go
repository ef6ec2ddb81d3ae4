package etcdstore

import (
	"context"
	"errors"
	"fmt"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/klaxon-oncall/klaxon/escalation"
	"github.com/klaxon-oncall/klaxon/notifiers"
)

// Shared update transactions. The leader records every page's result, every
// answer and every step with Update: alone, each is a read and a
// compare-and-swap commit, two quorum rounds. Updates of different
// incidents that arrive while others are under way are instead read
// together in one transaction and committed together in one, each still
// compared with the incident as read. What a shared transaction cannot take
// (an update that changes nothing, one that detaches its Alertmanager group,
// a conflict with another writer) runs alone, as before.

type updateCall struct {
	ctx  context.Context
	id   uint64
	fn   escalation.UpdateFunc
	done chan updateResult
}

type updateResult struct {
	inc escalation.Incident
	ch  escalation.Change
	err error
	// alone: the caller must run the update on its own.
	alone bool
}

func (c *updateCall) key() uint64 { return c.id }

func (c *updateCall) abandoned() bool {
	if err := c.ctx.Err(); err != nil {
		c.done <- updateResult{err: err}
		return true
	}
	return false
}

// updateBatchSize is the most updates one batch takes: its read takes three
// keys a call.
func (s *Store) updateBatchSize() int { return min(maxBatch, int(s.maxTxnOps.Load())/3) }

// updateBatch commits calls (distinct incidents) in one transaction and
// answers them; calls that did not fit are returned.
func (s *Store) updateBatch(calls []*updateCall) (back []*updateCall) {
	alone := func(cs ...*updateCall) {
		for _, c := range cs {
			c.done <- updateResult{alone: true}
		}
	}
	if len(calls) == 1 {
		// Nothing to share: its own read and commit, here, as a lone ingest
		// runs. Handed back to its caller instead, the batcher would take
		// the next update at once, and the next: concurrent updates would
		// each commit alone, none queueing behind a commit to share one.
		c := calls[0]
		inc, ch, err := s.updateAlone(c.ctx, c.id, c.fn)
		c.done <- updateResult{inc: inc, ch: ch, err: err}
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), s.timeout)
	defer cancel()
	var reads []clientv3.Op
	for _, c := range calls {
		reads = append(reads, s.incidentReads(c.id)...)
	}
	resp, err := s.cli.Txn(ctx).Then(reads...).Commit()
	if s.tooLarge(err, len(reads)) {
		return calls // again, in smaller batches
	}
	if err != nil {
		for _, c := range calls {
			c.done <- updateResult{err: fmt.Errorf("etcd: %w", err)}
		}
		return nil
	}
	type planned struct {
		c     *updateCall
		inc   *escalation.Incident
		ch    escalation.Change
		incOp clientv3.Cmp
		ops   []clientv3.Op
	}
	var plans []planned
	nOps, nCmps, nState := 0, 1, 0 // the fence's compare
	stateKeys := map[string]bool{}
	limit := int(s.maxTxnOps.Load())
	for i, c := range calls {
		sn, err := s.decodeIncident(c.id, resp.Responses[3*i:3*i+3])
		if err != nil {
			c.done <- updateResult{err: err}
			continue
		}
		before := sn.inc.State
		ops, ch, err := s.writeChange(sn, nil, c.fn)
		if errors.Is(err, escalation.ErrNoChange) {
			alone(c) // answered with the incident as stored, which fn may have changed in memory
			continue
		}
		if err != nil {
			c.done <- updateResult{err: err}
			continue
		}
		inc := sn.inc
		if before != escalation.Resolved && inc.State == escalation.Resolved && inc.GroupKey != "" {
			alone(c) // resolved by hand: its group is read and detached too
			continue
		}
		// etcd refuses two writes of one key in a transaction: a key another
		// call of the batch writes waits for the next batch.
		clash, own := false, map[string]bool{}
		for _, w := range ch.State {
			k := s.kState(w.Bucket, w.Key)
			clash = clash || stateKeys[k] || own[k]
			own[k] = true
		}
		if clash && len(own) < len(ch.State) {
			alone(c) // writes one key twice itself: no batch can take it
			continue
		}
		// Room for its writes (a state write takes two) and compares, and
		// the state reads.
		wantOps, wantCmps := len(ops)+2*len(ch.State), 1+len(ch.State)
		if clash || (nOps+wantOps > limit || nCmps+wantCmps > limit || nState+len(ch.State) > limit) && len(plans) > 0 {
			back = append(back, c) // the next batch takes it
			continue
		}
		for _, w := range ch.State {
			stateKeys[s.kState(w.Bucket, w.Key)] = true
		}
		nOps, nCmps, nState = nOps+wantOps, nCmps+wantCmps, nState+len(ch.State)
		plans = append(plans, planned{c: c, inc: inc, ch: ch, ops: ops,
			incOp: clientv3.Compare(clientv3.ModRevision(s.kInc(c.id)), "=", sn.incRev)})
	}
	if len(plans) == 0 {
		return back
	}
	// The channels' state the updates write, read once for all of them.
	var states []notifiers.StateWrite
	for _, p := range plans {
		states = append(states, p.ch.State...)
	}
	var cmps []clientv3.Cmp
	var writes []clientv3.Op
	if len(states) > 0 {
		sresp, err := s.cli.Txn(ctx).Then(s.stateReads(states)...).Commit()
		if err != nil {
			for _, p := range plans {
				p.c.done <- updateResult{err: fmt.Errorf("etcd: %w", err)}
			}
			return back
		}
		cmps, writes = s.stateOps(states, sresp.Responses)
	}
	for _, p := range plans {
		cmps, writes = append(cmps, p.incOp), append(writes, p.ops...)
	}
	ok, err := s.commit(ctx, cmps, writes)
	if s.tooLarge(err, max(len(cmps), len(writes))) {
		ok, err = false, nil
	}
	for _, p := range plans {
		switch {
		case err != nil:
			p.c.done <- updateResult{err: err}
		case !ok:
			alone(p.c) // another writer came first: each alone, reading afresh
		default:
			p.c.done <- updateResult{inc: *p.inc, ch: p.ch}
		}
	}
	return back
}
