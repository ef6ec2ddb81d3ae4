package etcdstore

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/klaxon-oncall/klaxon/escalation"
)

// Group commit. Every new incident takes the next id from one counter key
// with a compare-and-swap, so ingests that each committed alone would
// collide on it and retry in turn. Instead, calls that arrive while a commit
// is under way wait for it and are then committed together: one read of
// their groups and the counter, one transaction that compares everything it
// read. A lone call goes at once; there is no batching delay.

// DefaultMaxTxnOps is etcd's default --max-txn-ops: the most operations
// (and, separately, compares) one transaction may carry unless the cluster
// allows more.
const DefaultMaxTxnOps = 128

// maxBatch bounds the calls in one transaction; the cluster's operation
// limit (Options.MaxTxnOps) usually bounds it first.
const maxBatch = 256

type ingestCall struct {
	ctx    context.Context
	n      escalation.Notification
	now    time.Time
	decide escalation.IngestFunc
	done   chan ingestResult
}

type ingestResult struct {
	res escalation.IngestResult
	err error
}

func (c *ingestCall) key() string { return c.n.GroupKey }

func (c *ingestCall) abandoned() bool {
	if err := c.ctx.Err(); err != nil {
		c.done <- ingestResult{err: err}
		return true
	}
	return false
}

// ingestBatchSize is the most webhooks one batch takes: its read takes the
// counter and one group a call.
func (s *Store) ingestBatchSize() int { return min(maxBatch, int(s.maxTxnOps.Load())-1) }

// ingestBatch commits calls (distinct groups) in one transaction and answers
// them; calls that did not fit are returned. On a conflict with another
// writer each call is retried alone.
func (s *Store) ingestBatch(calls []*ingestCall) (back []*ingestCall) {
	if len(calls) == 1 {
		c := calls[0]
		res, err := s.ingestSingle(c.ctx, c.n, c.now, c.decide)
		c.done <- ingestResult{res, err}
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), s.timeout)
	defer cancel()
	fail := func(err error) []*ingestCall {
		for _, c := range calls {
			c.done <- ingestResult{err: err}
		}
		return nil
	}
	// Read every group and the counter at one revision.
	ops := []clientv3.Op{clientv3.OpGet(s.kSeq())}
	for _, c := range calls {
		ops = append(ops, clientv3.OpGet(s.kGroup(c.n.GroupKey)))
	}
	resp, err := s.cli.Txn(ctx).Then(ops...).Commit()
	if s.tooLarge(err, len(ops)) {
		return calls // again, in smaller batches
	}
	if err != nil {
		return fail(fmt.Errorf("etcd: %w", err))
	}
	seq, seqRev := decodeSeq(resp.Responses[0].GetResponseRange())
	groups := make([]escalation.Group, len(calls))
	gRevs := make([]int64, len(calls))
	for i := range calls {
		kvs := resp.Responses[i+1].GetResponseRange().Kvs
		if len(kvs) > 0 {
			gRevs[i] = kvs[0].ModRevision
			if err := json.Unmarshal(kvs[0].Value, &groups[i]); err != nil {
				calls[i].done <- ingestResult{err: fmt.Errorf("group %q: %w", calls[i].n.GroupKey, err)}
				calls[i] = nil
			}
		}
	}
	// Read the open incidents they merge into.
	snaps := make([]*snapshot, len(calls))
	for i, c := range calls {
		if c == nil || groups[i].Open == 0 {
			continue
		}
		sn, err := s.readIncident(ctx, groups[i].Open)
		if err != nil {
			c.done <- ingestResult{err: err}
			calls[i] = nil
			continue
		}
		snaps[i] = sn
	}
	var cmps []clientv3.Cmp
	var writes []clientv3.Op
	type answer struct {
		c   *ingestCall
		res escalation.IngestResult
	}
	var answers []answer
	next := seq
	limit := int(s.maxTxnOps.Load())
	for i, c := range calls {
		if c == nil {
			continue
		}
		p, err := s.planIngest(c.n, c.now, c.decide, groups[i], snaps[i], next)
		if err != nil {
			c.done <- ingestResult{err: err}
			continue
		}
		if !p.res.Changed {
			answers = append(answers, answer{c, p.res})
			continue
		}
		// Room for the call's writes and compares, the counter's write and
		// compare, and the fence.
		if (len(writes)+len(p.ops)+1 > limit || len(cmps)+2+2 > limit) && len(writes) > 0 {
			back = append(back, c) // the next batch takes it
			continue
		}
		if p.res.Opened {
			next++
		}
		cmps = append(cmps, clientv3.Compare(clientv3.ModRevision(s.kGroup(c.n.GroupKey)), "=", gRevs[i]))
		if snaps[i] != nil {
			cmps = append(cmps, clientv3.Compare(clientv3.ModRevision(s.kInc(snaps[i].inc.ID)), "=", snaps[i].incRev))
		}
		writes = append(writes, p.ops...)
		answers = append(answers, answer{c, p.res})
	}
	if next != seq {
		cmps = append(cmps, clientv3.Compare(clientv3.ModRevision(s.kSeq()), "=", seqRev))
		writes = append(writes, clientv3.OpPut(s.kSeq(), string(be64(next))))
	}
	if len(writes) > 0 {
		ok, err := s.commit(ctx, cmps, writes)
		if s.tooLarge(err, max(len(cmps), len(writes))) {
			ok, err = false, nil // each call again, alone
		}
		if err != nil {
			for _, a := range answers {
				a.c.done <- ingestResult{err: err}
			}
			return back
		}
		if !ok {
			// Another replica wrote one of these groups or incidents, or
			// opened an incident: each call again, alone.
			for _, a := range answers {
				res, err := s.ingestSingle(a.c.ctx, a.c.n, a.c.now, a.c.decide)
				a.c.done <- ingestResult{res, err}
			}
			return back
		}
	}
	for _, a := range answers {
		a.c.done <- ingestResult{res: a.res}
	}
	return back
}

// tooLarge reports whether err is the cluster refusing a transaction of n
// operations as too large: --etcd-max-txn-ops is above the members'
// --max-txn-ops. The store then falls back to etcd's default, and says so.
func (s *Store) tooLarge(err error, n int) bool {
	if !errors.Is(err, rpctypes.ErrTooManyOps) || n <= DefaultMaxTxnOps {
		return false
	}
	if limit := s.maxTxnOps.Load(); limit > DefaultMaxTxnOps && s.maxTxnOps.CompareAndSwap(limit, DefaultMaxTxnOps) {
		s.log.Error("etcd refused a transaction as too large: --etcd-max-txn-ops is above the cluster's --max-txn-ops; using etcd's default",
			"configured", limit, "now", DefaultMaxTxnOps)
	}
	return true
}

// decodeSeq reads the id counter from a range response.
func decodeSeq(r *etcdserverpb.RangeResponse) (uint64, int64) {
	if r == nil || len(r.Kvs) == 0 || len(r.Kvs[0].Value) != 8 {
		return 0, 0
	}
	return binary.BigEndian.Uint64(r.Kvs[0].Value), r.Kvs[0].ModRevision
}
