package etcdstore

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/klaxon-oncall/klaxon/escalation"
	"github.com/klaxon-oncall/klaxon/notifiers"
)

// Transactions. A Write's function reads through an stmTx: every read is
// made at one revision (the first read's) and remembered, every write is
// buffered (and seen by later reads). The commit is one etcd transaction
// that puts the buffered writes only if no key read was modified since that
// revision (ModRevision ≤ it, a range compared as a whole, so a key created
// in it since shows too), and the fence holds; otherwise the function runs
// again on fresh reads. This is etcd's concurrency.STM with serializable
// snapshot isolation, by hand because the outbox is read as a range and the
// fence is compared in the same transaction.
//
// Group commit: Writes that arrive while a commit is under way queue, and
// the next batch runs their functions one after another in one stmTx
// (each seeing the ones before), committed as one etcd transaction. A lone
// Write goes at once; there is no batching delay.

// DefaultMaxTxnOps is etcd's default --max-txn-ops: the most operations
// (and, separately, compares) one transaction may carry unless the cluster
// allows more.
const DefaultMaxTxnOps = 128

// maxBatch bounds the Writes in one transaction; the cluster's operation
// limit (Options.MaxTxnOps) usually bounds it first.
const maxBatch = 256

// writeCall is a Write waiting in the queue.
type writeCall struct {
	ctx  context.Context
	fn   func(escalation.Tx) error
	done chan error // capacity 1
}

// writeQueue holds the Writes waiting for a shared transaction; one runner
// goroutine at a time drains it, batch after batch.
type writeQueue struct {
	mu      sync.Mutex
	pending []*writeCall
	running bool
}

// Write implements escalation.Store.
func (s *Store) Write(ctx context.Context, fn func(escalation.Tx) error) error {
	ctx, cancel := s.bound(ctx)
	defer cancel()
	if err := ctx.Err(); err != nil {
		return err
	}
	c := &writeCall{ctx: ctx, fn: fn, done: make(chan error, 1)}
	q := s.queue
	q.mu.Lock()
	q.pending = append(q.pending, c)
	start := !q.running
	q.running = true
	q.mu.Unlock()
	if start {
		go s.drain()
	}
	select {
	case err := <-c.done:
		return err
	case <-ctx.Done():
		// The write may still commit: the caller's error says it may not,
		// and a retry is idempotent.
		return ctx.Err()
	}
}

// drain runs batches until the queue is empty.
func (s *Store) drain() {
	q := s.queue
	for {
		q.mu.Lock()
		var batch []*writeCall
		for len(q.pending) > 0 && len(batch) < maxBatch {
			c := q.pending[0]
			q.pending = q.pending[1:]
			if err := c.ctx.Err(); err != nil {
				c.done <- err
				continue
			}
			batch = append(batch, c)
		}
		if len(batch) == 0 {
			q.running = false
			q.pending = nil
			q.mu.Unlock()
			return
		}
		q.mu.Unlock()
		if back := s.runBatch(batch); len(back) > 0 {
			q.mu.Lock()
			q.pending = append(back, q.pending...)
			q.mu.Unlock()
		}
	}
}

// runBatch commits calls together and answers them; the calls that did not
// fit in one transaction are returned for the next batch.
func (s *Store) runBatch(calls []*writeCall) (back []*writeCall) {
	ctx, cancel := context.WithTimeout(context.Background(), s.timeout)
	defer cancel()
	for range maxRetries {
		t := s.newTx(ctx)
		if len(calls) > 1 {
			t.prefetch(calls)
		}
		var ok []*writeCall
		back = nil
		limit := int(s.maxTxnOps.Load())
		for i, c := range calls {
			mark := t.mark()
			err := c.fn(t)
			if err == nil && len(ok) > 0 && t.over(limit) {
				t.undo(mark) // the next batch takes it, and those after it
				back = append(back, calls[i:]...)
				break
			}
			if err != nil {
				t.undo(mark)
				c.done <- err
				continue
			}
			ok = append(ok, c)
		}
		committed, err := t.commit()
		if s.tooLarge(err, t.size()) && len(ok) > 1 {
			// The cluster allows fewer operations than configured: again,
			// with the lower limit.
			calls, back = slices.Concat(ok, back), nil
			continue
		}
		if err != nil || committed {
			for _, c := range ok {
				c.done <- err
			}
			return back
		}
		// Another writer changed what was read: read again.
		calls, back = slices.Concat(ok, back), nil
	}
	for _, c := range calls {
		c.done <- fmt.Errorf("etcd: too much contention, gave up after %d attempts", maxRetries)
	}
	return back
}

// errProbe is a read that missed while prefetching.
var errProbe = errors.New("etcdstore: read missed while prefetching")

// prefetch reads what calls will read in a few round trips for all of them,
// rather than one or two each as they run one after another: it runs them
// all, their writes taken back, with every read that misses recorded (and
// failing the call), fetches what they missed in one request, and again,
// until nothing new is missed (an ingest reads its group, then the open
// incident the group names) or three rounds. The calls are free of outside
// effects and may run more than once, as Write says.
func (t *stmTx) prefetch(calls []*writeCall) {
	t.probe = true
	defer func() { t.probe = false }()
	for range 3 {
		t.missed, t.missedRanges = nil, nil
		for _, c := range calls {
			mark := t.mark()
			_ = c.fn(t)
			t.undo(mark)
		}
		if len(t.missed)+len(t.missedRanges) == 0 {
			return
		}
		gets, prefixes := dedup(t.missed), dedup(t.missedRanges)
		t.probe = false
		for len(gets)+len(prefixes) > 0 { // within etcd's default --max-txn-ops
			g, p := gets[:min(len(gets), DefaultMaxTxnOps)], []string(nil)
			gets = gets[len(g):]
			if room := DefaultMaxTxnOps - len(g); room > 0 {
				p = prefixes[:min(len(prefixes), room)]
				prefixes = prefixes[len(p):]
			}
			if err := t.fetch(g, p); err != nil {
				t.probe = true
				return // the calls read for themselves, and fail on their own
			}
		}
		t.probe = true
	}
}

// dedup returns the distinct strings of ss.
func dedup(ss []string) []string {
	seen := map[string]bool{}
	var out []string
	for _, s := range ss {
		if !seen[s] {
			seen[s] = true
			out = append(out, s)
		}
	}
	return out
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

// stmTx is escalation.Tx on etcd (see the top of this file).
type stmTx struct {
	s   *Store
	ctx context.Context
	rev int64 // the revision every read is made at; 0 before the first

	reads  map[string][]byte // key → value as read at rev (nil: absent)
	ranges map[string][]kv   // prefix → its keys as read at rev, in key order
	// The read set: the keys and prefixes the calls taken so far used,
	// compared at commit (reads fetched for a call that was then taken
	// back are not).
	used, usedRanges map[string]bool

	// probe: a read that misses records what it wanted and fails (see
	// prefetch).
	probe                bool
	missed, missedRanges []string

	writes  map[string]*string // key → value to put (nil: delete)
	order   []string           // the keys of writes in the order first written
	journal []undoEntry        // every write, to take a failed or oversized call's back
}

type kv struct {
	key   string
	value []byte
}

type undoEntry struct {
	key    string
	read   bool // key was added to the read set, not written
	ranged bool // a prefix: added to usedRanges
	had    bool
	prev   *string
}

func (s *Store) newTx(ctx context.Context) *stmTx {
	return &stmTx{s: s, ctx: ctx, reads: map[string][]byte{}, ranges: map[string][]kv{}, writes: map[string]*string{},
		used: map[string]bool{}, usedRanges: map[string]bool{}}
}

// fetch reads ops at the transaction's revision (fixing it at the first
// read) and remembers the results.
func (t *stmTx) fetch(gets []string, prefixes []string) error {
	var ops []clientv3.Op
	for _, k := range gets {
		ops = append(ops, clientv3.OpGet(k, clientv3.WithRev(t.rev)))
	}
	for _, p := range prefixes {
		ops = append(ops, clientv3.OpGet(p, clientv3.WithPrefix(), clientv3.WithRev(t.rev)))
	}
	if len(ops) == 0 {
		return nil
	}
	if t.probe {
		t.missed, t.missedRanges = append(t.missed, gets...), append(t.missedRanges, prefixes...)
		return errProbe
	}
	resp, err := t.s.cli.Txn(t.ctx).Then(ops...).Commit()
	if err != nil {
		return fmt.Errorf("etcd: %w", err)
	}
	if t.rev == 0 {
		t.rev = resp.Header.Revision
	}
	for i, k := range gets {
		var v []byte
		if kvs := resp.Responses[i].GetResponseRange().Kvs; len(kvs) > 0 {
			v = kvs[0].Value
		}
		t.reads[k] = v
	}
	for i, p := range prefixes {
		var out []kv
		for _, x := range resp.Responses[len(gets)+i].GetResponseRange().Kvs {
			out = append(out, kv{string(x.Key), x.Value})
		}
		t.ranges[p] = out
	}
	return nil
}

// get returns key's value (nil: absent) as this transaction sees it; more
// are keys read in the same request if they have not been read yet.
func (t *stmTx) get(key string, more ...string) ([]byte, error) {
	if w, ok := t.writes[key]; ok {
		if w == nil {
			return nil, nil
		}
		return []byte(*w), nil
	}
	if v, ok := t.reads[key]; ok {
		t.use(key, false)
		return v, nil
	}
	var gets []string
	for _, k := range append([]string{key}, more...) {
		if _, ok := t.reads[k]; !ok {
			gets = append(gets, k)
		}
	}
	if err := t.fetch(gets, nil); err != nil {
		return nil, err
	}
	return t.get(key)
}

// rangeOf returns the keys under prefix as this transaction sees them, in
// key order.
func (t *stmTx) rangeOf(prefix string) ([]kv, error) {
	if _, ok := t.ranges[prefix]; !ok {
		if err := t.fetch(nil, []string{prefix}); err != nil {
			return nil, err
		}
	}
	t.use(prefix, true)
	merged := map[string][]byte{}
	for _, x := range t.ranges[prefix] {
		merged[x.key] = x.value
	}
	for _, k := range t.order {
		if !strings.HasPrefix(k, prefix) {
			continue
		}
		if w := t.writes[k]; w != nil {
			merged[k] = []byte(*w)
		} else {
			delete(merged, k)
		}
	}
	out := make([]kv, 0, len(merged))
	for k, v := range merged {
		out = append(out, kv{k, v})
	}
	slices.SortFunc(out, func(a, b kv) int { return strings.Compare(a.key, b.key) })
	return out, nil
}

// use adds key (a prefix if ranged) to the read set.
func (t *stmTx) use(key string, ranged bool) {
	set := t.used
	if ranged {
		set = t.usedRanges
	}
	if !set[key] {
		set[key] = true
		t.journal = append(t.journal, undoEntry{key: key, read: true, ranged: ranged})
	}
}

func (t *stmTx) put(key string, value []byte) {
	v := string(value)
	t.set(key, &v)
}

func (t *stmTx) del(key string) { t.set(key, nil) }

func (t *stmTx) set(key string, v *string) {
	prev, had := t.writes[key]
	t.journal = append(t.journal, undoEntry{key: key, had: had, prev: prev})
	if !had {
		t.order = append(t.order, key)
	}
	t.writes[key] = v
}

// mark and undo take back the reads and writes made since mark: a call
// that failed, or did not fit, leaves nothing in the transaction's read and
// write sets (a key it added to the read set no call before it used).
func (t *stmTx) mark() int { return len(t.journal) }

func (t *stmTx) undo(mark int) {
	for i := len(t.journal) - 1; i >= mark; i-- {
		e := t.journal[i]
		switch {
		case e.read && e.ranged:
			delete(t.usedRanges, e.key)
		case e.read:
			delete(t.used, e.key)
		case e.had:
			t.writes[e.key] = e.prev
		default:
			delete(t.writes, e.key)
			t.order = t.order[:len(t.order)-1] // the journal and order grow together
		}
	}
	t.journal = t.journal[:mark]
}

// size is the larger of the transaction's operations and compares.
func (t *stmTx) size() int { return max(len(t.writes), len(t.used)+len(t.usedRanges)+1) }

// over reports whether the transaction no longer fits in limit.
func (t *stmTx) over(limit int) bool { return t.size() > limit }

// commit writes the buffered writes if nothing read has changed since, and
// reports whether it did. Nothing written: nothing to commit (the reads
// were linearizable, which is as good).
func (t *stmTx) commit() (bool, error) {
	if len(t.writes) == 0 {
		return true, nil
	}
	var cmps []clientv3.Cmp
	for k := range t.used {
		cmps = append(cmps, clientv3.Compare(clientv3.ModRevision(k), "<", t.rev+1))
	}
	for p := range t.usedRanges {
		cmps = append(cmps, clientv3.Compare(clientv3.ModRevision(p), "<", t.rev+1).WithPrefix())
	}
	ops := make([]clientv3.Op, 0, len(t.order))
	for _, k := range t.order {
		if v := t.writes[k]; v != nil {
			ops = append(ops, clientv3.OpPut(k, *v))
		} else {
			ops = append(ops, clientv3.OpDelete(k))
		}
	}
	return t.s.commit(t.ctx, cmps, ops)
}

// The escalation.Tx methods.

func (t *stmTx) Group(key string) (escalation.Group, error) {
	var g escalation.Group
	v, err := t.get(t.s.kGroup(key), t.s.kSeq()) // the counter too: a new group opens an incident
	if err != nil || v == nil {
		return g, err
	}
	if err := json.Unmarshal(v, &g); err != nil {
		return g, fmt.Errorf("group %q: %w", key, err)
	}
	return g, nil
}

func (t *stmTx) PutGroup(key string, g *escalation.Group) error {
	data, err := json.Marshal(g)
	if err != nil {
		return err
	}
	t.put(t.s.kGroup(key), data)
	return nil
}

func (t *stmTx) NextID() (uint64, error) {
	v, err := t.get(t.s.kSeq())
	if err != nil {
		return 0, err
	}
	var seq uint64
	if len(v) == 8 {
		seq = binary.BigEndian.Uint64(v)
	}
	seq++
	t.put(t.s.kSeq(), be64(seq))
	return seq, nil
}

func (t *stmTx) Incident(id uint64) (*escalation.Incident, error) {
	pp := t.s.pagePrefix(id)
	if _, ok := t.reads[t.s.kInc(id)]; !ok {
		// Its outbox and timeline counter in the same request: a write
		// that reads an incident reads them next.
		var gets []string
		for _, k := range []string{t.s.kInc(id), t.s.kTLSeq(id)} {
			if _, ok := t.reads[k]; !ok {
				gets = append(gets, k)
			}
		}
		var ps []string
		if _, ok := t.ranges[pp]; !ok {
			ps = append(ps, pp)
		}
		if err := t.fetch(gets, ps); err != nil {
			return nil, err
		}
	}
	v, err := t.get(t.s.kInc(id))
	if err != nil {
		return nil, err
	}
	if v == nil {
		return nil, escalation.ErrNotFound
	}
	var inc escalation.Incident
	if err := json.Unmarshal(v, &inc); err != nil {
		return nil, fmt.Errorf("incident %d: %w", id, err)
	}
	return &inc, nil
}

func (t *stmTx) PutIncident(inc *escalation.Incident) error {
	data, err := json.Marshal(inc)
	if err != nil {
		return err
	}
	t.put(t.s.kInc(inc.ID), data)
	if inc.State == escalation.Resolved {
		t.del(t.s.kOpen(inc.ID))
	} else {
		t.put(t.s.kOpen(inc.ID), []byte(t.s.openValue(inc)))
	}
	return nil
}

func (t *stmTx) Pages(id uint64) ([]escalation.PageRecord, error) {
	kvs, err := t.rangeOf(t.s.pagePrefix(id))
	if err != nil {
		return nil, err
	}
	out := make([]escalation.PageRecord, 0, len(kvs))
	for _, x := range kvs {
		var p escalation.PageRecord
		if err := json.Unmarshal(x.value, &p); err != nil {
			return nil, fmt.Errorf("page %x: %w", x.key, err)
		}
		out = append(out, p)
	}
	return out, nil
}

func (t *stmTx) PutPage(p *escalation.PageRecord) error {
	data, err := json.Marshal(p)
	if err != nil {
		return err
	}
	t.put(t.s.kPage(p.Incident, p.Seq), data)
	if p.Status.Done() {
		t.del(t.s.kPend(p.Incident, p.Seq))
	} else {
		t.put(t.s.kPend(p.Incident, p.Seq), []byte(t.s.pendValue(p)))
	}
	return nil
}

func (t *stmTx) AppendEvents(id uint64, evs []escalation.Event) error {
	v, err := t.get(t.s.kTLSeq(id))
	if err != nil {
		return err
	}
	seq := 0
	if len(v) == 4 {
		seq = int(binary.BigEndian.Uint32(v))
	}
	seq++
	data, err := json.Marshal(evs)
	if err != nil {
		return err
	}
	t.put(t.s.kTL(id, seq), data)
	t.put(t.s.kTLSeq(id), binary.BigEndian.AppendUint32(nil, uint32(seq)))
	return nil
}

func (t *stmTx) PutState(w notifiers.StateWrite) error {
	if w.Replaces != nil {
		old, err := t.get(t.s.kState(w.Bucket, w.Key))
		if err != nil {
			return err
		}
		if !w.Replaces(old) {
			return nil
		}
	}
	if w.Value == nil {
		t.del(t.s.kState(w.Bucket, w.Key))
		t.del(t.s.kStateTime(w.Bucket, w.Key))
		return nil
	}
	t.put(t.s.kState(w.Bucket, w.Key), w.Value)
	t.put(t.s.kStateTime(w.Bucket, w.Key), stateTime())
	return nil
}

// pagePrefix is the prefix of incident id's outbox keys.
func (s *Store) pagePrefix(id uint64) string { return s.k("page/", string(be64(id))) }

var _ escalation.Tx = (*stmTx)(nil)
