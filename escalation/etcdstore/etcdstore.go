// Package etcdstore implements escalation.Store on an etcd cluster, for Klaxon
// run as several replicas: every write is one etcd transaction, committed by a
// Raft quorum before the call returns.
//
// Keys live under a prefix (default /klaxon/), small, with big-endian ids and
// sequence numbers so that ranges come back in order:
//
//	meta/seq                         incident id counter (compare-and-swap)
//	inc/<be64 id>                    Incident JSON
//	open/<be64 id>                   be64(nextAt) state 0 writer: the schedule of unresolved incidents
//	pend/<be64 id><be32 seq>         be64(nextTry) deferred channel 0 person 0 writer: unfinished pages
//	page/<be64 id><be32 seq>         PageRecord JSON, one key per outbox entry
//	tl/<be64 id><be32 seq>           timeline entries appended by one transaction (JSON array)
//	tlseq/<be64 id>                  be32 last timeline sequence
//	grp/<groupKey>                   Group JSON
//	state/<be16 len><bucket><key>    channels' state
//	statet/<be16 len><bucket><key>   be64 when that state key was written (retention)
//
// Read-modify-write is optimistic (see txn.go): read at one revision, decide,
// then commit only if the keys read are unchanged since, else read again.
// A Write's function may therefore run more than once, as with bbolt's Batch.
//
// A store made with Fenced adds one more comparison to every write: the
// election key's create revision, so a replica that lost its leadership (paused,
// partitioned, lease expired) cannot record anything.
package etcdstore

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync/atomic"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/klaxon-oncall/klaxon/escalation"
	"github.com/klaxon-oncall/klaxon/escalation/internal/index"
	"github.com/klaxon-oncall/klaxon/notifiers"
)

// ErrFenced is returned for a write by a store fenced on a leadership that is
// no longer held.
var ErrFenced = errors.New("not the leader any more: write refused by the election fence")

// maxRetries bounds optimistic retries of one write under contention.
const maxRetries = 200

// pageSize is how many keys one range request reads.
const pageSize = 500

// Options tunes New.
type Options struct {
	// Prefix is put before every key (default "/klaxon/").
	Prefix string
	// Writer names this store's writes in the schedule indexes, so a leader can
	// tell its own writes from other replicas' in WatchWork.
	Writer string
	// OnCommit, if set, observes every successful write's duration.
	OnCommit func(time.Duration)
	// Timeout bounds each call (default 5s): without a quorum etcd requests
	// wait, and a webhook must get its 503 while Alertmanager still listens.
	Timeout time.Duration
	// MaxTxnOps is the cluster's --max-txn-ops (default DefaultMaxTxnOps,
	// etcd's own default): concurrent webhooks are committed together in
	// transactions of at most this many operations, so a cluster that
	// allows more takes a storm in fewer, larger commits.
	MaxTxnOps int
	// Logger, if set, hears of the cluster refusing a transaction as too
	// large (MaxTxnOps above the cluster's --max-txn-ops).
	Logger *slog.Logger
}

// Store is an escalation.Store on etcd.
type Store struct {
	cli    *clientv3.Client
	prefix string
	writer string
	// fence, when set, is compared in every write transaction.
	fence    []clientv3.Cmp
	fenceKey string
	fenceRev int64
	onCommit func(time.Duration)
	timeout  time.Duration
	// maxTxnOps bounds the operations (and compares) of one transaction;
	// shared by the fenced views, and lowered to etcd's default if the
	// cluster refuses a transaction as too large.
	maxTxnOps *atomic.Int64
	log       *slog.Logger
	queue     *writeQueue // Writes waiting for a shared transaction
}

var _ escalation.Store = (*Store)(nil)

// New returns a Store on cli. Close does not close cli.
func New(cli *clientv3.Client, o Options) *Store {
	if o.Prefix == "" {
		o.Prefix = "/klaxon/"
	}
	if o.Timeout <= 0 {
		o.Timeout = 5 * time.Second
	}
	if o.MaxTxnOps <= 0 {
		o.MaxTxnOps = DefaultMaxTxnOps
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	limit := new(atomic.Int64)
	limit.Store(int64(o.MaxTxnOps))
	s := &Store{cli: cli, prefix: o.Prefix, writer: o.Writer, onCommit: o.OnCommit, timeout: o.Timeout,
		maxTxnOps: limit, log: o.Logger}
	s.queue = &writeQueue{}
	return s
}

// Fenced returns a view of the store whose every write also requires that
// election key key still exists with create revision rev, and whose writes
// are tagged with writer.
func (s *Store) Fenced(key string, rev int64, writer string) *Store {
	f := *s
	f.fence = []clientv3.Cmp{clientv3.Compare(clientv3.CreateRevision(key), "=", rev)}
	f.fenceKey, f.fenceRev, f.writer = key, rev, writer
	f.queue = &writeQueue{} // its batches commit with its fence
	return &f
}

// Prefix is the key prefix.
func (s *Store) Prefix() string { return s.prefix }

// Client is the etcd client.
func (s *Store) Client() *clientv3.Client { return s.cli }

// bound applies the per-call timeout.
func (s *Store) bound(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, s.timeout)
}

// Close implements escalation.Store; the client belongs to the caller.
func (s *Store) Close() error { return nil }

func be64(v uint64) []byte {
	b := make([]byte, 8)
	binary.BigEndian.PutUint64(b, v)
	return b
}

func (s *Store) k(parts ...string) string { return s.prefix + strings.Join(parts, "") }

func (s *Store) kSeq() string                { return s.k("meta/seq") }
func (s *Store) kInc(id uint64) string       { return s.k("inc/", string(be64(id))) }
func (s *Store) kOpen(id uint64) string      { return s.k("open/", string(be64(id))) }
func (s *Store) kTLSeq(id uint64) string     { return s.k("tlseq/", string(be64(id))) }
func (s *Store) kGroup(g string) string      { return s.k("grp/", g) }
func (s *Store) kTL(id uint64, n int) string { return s.k("tl/", subKey(id, n)) }
func (s *Store) kPage(id uint64, n int) string {
	return s.k("page/", subKey(id, n))
}
func (s *Store) kPend(id uint64, n int) string { return s.k("pend/", subKey(id, n)) }

func (s *Store) kState(bucket, key string) string {
	b := make([]byte, 2)
	binary.BigEndian.PutUint16(b, uint16(len(bucket)))
	return s.k("state/", string(b), bucket, key)
}

// subKey is index.SubKey as a string, for etcd keys.
func subKey(id uint64, seq int) string { return string(index.SubKey(id, seq)) }

// prefixEnd is the end of the range of keys starting with p.
func prefixEnd(p string) string { return clientv3.GetPrefixRangeEnd(p) }

// openValue encodes a schedule index entry.
func (s *Store) openValue(inc *escalation.Incident) string {
	v := be64(index.UnixNano(inc.Escalation.WakeAt()))
	v = append(v, inc.State...)
	v = append(v, 0)
	v = append(v, s.writer...)
	return string(v)
}

// decodeOpen reads a schedule index entry.
func decodeOpen(v []byte) (escalation.State, time.Time, string) {
	if len(v) < 8 {
		return "", time.Time{}, ""
	}
	st, writer, _ := strings.Cut(string(v[8:]), "\x00")
	return escalation.State(st), index.FromUnixNano(binary.BigEndian.Uint64(v)), writer
}

// pendValue encodes an unfinished-page index entry: the shared entry, and
// the writer that wrote it (the leader's watch skips its own writes), which
// index.ParsePending returns as the rest.
func (s *Store) pendValue(p *escalation.PageRecord) string {
	return string(index.Pending(p)) + "\x00" + s.writer
}

func idOf(key []byte) uint64 {
	if len(key) < 8 {
		return 0
	}
	return binary.BigEndian.Uint64(key[len(key)-8:])
}

// commit runs a write transaction with the fence and reports whether its
// comparisons held. A failed fence is ErrFenced.
func (s *Store) commit(ctx context.Context, cmps []clientv3.Cmp, ops []clientv3.Op) (bool, error) {
	start := time.Now()
	txn := s.cli.Txn(ctx).If(append(cmps, s.fence...)...).Then(ops...)
	if s.fenceKey != "" {
		txn = txn.Else(clientv3.OpGet(s.fenceKey))
	}
	resp, err := txn.Commit()
	if err != nil {
		return false, fmt.Errorf("etcd: %w", err)
	}
	if !resp.Succeeded {
		if s.fenceKey != "" {
			r := resp.Responses[len(resp.Responses)-1].GetResponseRange()
			if r == nil || len(r.Kvs) == 0 || r.Kvs[0].CreateRevision != s.fenceRev {
				return false, ErrFenced
			}
		}
		return false, nil
	}
	if s.onCommit != nil {
		s.onCommit(time.Since(start))
	}
	return true, nil
}

// saveIncident returns the operations that write inc and its schedule
// entry, outside a Write (an import).
func (s *Store) saveIncident(inc *escalation.Incident) ([]clientv3.Op, error) {
	data, err := json.Marshal(inc)
	if err != nil {
		return nil, err
	}
	ops := []clientv3.Op{clientv3.OpPut(s.kInc(inc.ID), string(data))}
	if inc.State != escalation.Resolved {
		ops = append(ops, clientv3.OpPut(s.kOpen(inc.ID), s.openValue(inc)))
	}
	return ops, nil
}

func putJSON(key string, v any) (clientv3.Op, error) {
	data, err := json.Marshal(v)
	if err != nil {
		return clientv3.Op{}, err
	}
	return clientv3.OpPut(key, string(data)), nil
}

// Incident implements escalation.Store.
func (s *Store) Incident(ctx context.Context, id uint64) (escalation.Incident, error) {
	ctx, cancel := s.bound(ctx)
	defer cancel()
	resp, err := s.cli.Get(ctx, s.kInc(id))
	if err != nil {
		return escalation.Incident{}, fmt.Errorf("etcd: %w", err)
	}
	if len(resp.Kvs) == 0 {
		return escalation.Incident{}, escalation.ErrNotFound
	}
	var inc escalation.Incident
	if err := json.Unmarshal(resp.Kvs[0].Value, &inc); err != nil {
		return inc, fmt.Errorf("incident %d: %w", id, err)
	}
	return inc, nil
}

// Timeline implements escalation.Store.
func (s *Store) Timeline(ctx context.Context, id uint64) ([]escalation.Event, error) {
	ctx, cancel := s.bound(ctx)
	defer cancel()
	p := s.k("tl/", string(be64(id)))
	resp, err := s.cli.Txn(ctx).Then(
		clientv3.OpGet(s.kInc(id), clientv3.WithCountOnly()),
		clientv3.OpGet(p, clientv3.WithRange(prefixEnd(p))),
	).Commit()
	if err != nil {
		return nil, fmt.Errorf("etcd: %w", err)
	}
	if resp.Responses[0].GetResponseRange().Count == 0 {
		return nil, escalation.ErrNotFound
	}
	var out []escalation.Event
	for _, kv := range resp.Responses[1].GetResponseRange().Kvs {
		var evs []escalation.Event
		if err := json.Unmarshal(kv.Value, &evs); err != nil {
			return nil, fmt.Errorf("timeline %x: %w", kv.Key, err)
		}
		out = append(out, evs...)
	}
	return out, nil
}

// Pages implements escalation.Store.
func (s *Store) Pages(ctx context.Context, id uint64) ([]escalation.PageRecord, error) {
	ctx, cancel := s.bound(ctx)
	defer cancel()
	p := s.k("page/", string(be64(id)))
	resp, err := s.cli.Get(ctx, p, clientv3.WithRange(prefixEnd(p)))
	if err != nil {
		return nil, fmt.Errorf("etcd: %w", err)
	}
	var out []escalation.PageRecord
	for _, kv := range resp.Kvs {
		var pr escalation.PageRecord
		if err := json.Unmarshal(kv.Value, &pr); err != nil {
			return nil, fmt.Errorf("page %x: %w", kv.Key, err)
		}
		out = append(out, pr)
	}
	return out, nil
}

// Incidents implements escalation.Store.
func (s *Store) Incidents(ctx context.Context, f escalation.Filter) ([]escalation.Incident, error) {
	if f.Limit <= 0 {
		f.Limit = 100
	}
	index := s.k("inc/")
	if f.State == escalation.Open || f.State == escalation.Acknowledged {
		index = s.k("open/") // the small index of unresolved incidents
	}
	end := prefixEnd(index)
	if f.Before != 0 {
		end = index + string(be64(f.Before))
	}
	var out []escalation.Incident
	for len(out) < f.Limit {
		resp, err := s.cli.Get(ctx, index, clientv3.WithRange(end),
			clientv3.WithSort(clientv3.SortByKey, clientv3.SortDescend), clientv3.WithLimit(pageSize))
		if err != nil {
			return nil, fmt.Errorf("etcd: %w", err)
		}
		for _, kv := range resp.Kvs {
			if len(out) == f.Limit {
				break
			}
			if index == s.k("open/") {
				if st, _, _ := decodeOpen(kv.Value); st != f.State {
					continue
				}
				inc, err := s.Incident(ctx, idOf(kv.Key))
				if err != nil {
					return nil, err
				}
				out = append(out, inc)
				continue
			}
			var inc escalation.Incident
			if err := json.Unmarshal(kv.Value, &inc); err != nil {
				return nil, fmt.Errorf("incident %x: %w", kv.Key, err)
			}
			if f.State == "" || inc.State == f.State {
				out = append(out, inc)
			}
		}
		if !resp.More || len(resp.Kvs) == 0 {
			break
		}
		end = string(resp.Kvs[len(resp.Kvs)-1].Key)
	}
	return out, nil
}

// rangeAll calls fn for every key under prefix at revision rev, in key order.
func (s *Store) rangeAll(ctx context.Context, prefix string, rev int64, fn func(k, v []byte) error) error {
	return s.rangeAt(ctx, prefix, prefixEnd(prefix), rev, fn)
}

// rangeFrom calls fn for every key in [key, end), in key order.
func (s *Store) rangeFrom(ctx context.Context, key, end string, fn func(k, v []byte) error) error {
	return s.rangeAt(ctx, key, end, 0, fn)
}

// rangeAt calls fn for every key in [key, end) at revision rev (0: now), in
// key order, pageSize keys per request.
func (s *Store) rangeAt(ctx context.Context, key, end string, rev int64, fn func(k, v []byte) error) error {
	for {
		resp, err := s.cli.Get(ctx, key, clientv3.WithRange(end), clientv3.WithRev(rev), clientv3.WithLimit(pageSize))
		if err != nil {
			return fmt.Errorf("etcd: %w", err)
		}
		for _, kv := range resp.Kvs {
			if err := fn(kv.Key, kv.Value); err != nil {
				return err
			}
		}
		if !resp.More || len(resp.Kvs) == 0 {
			return nil
		}
		key = string(resp.Kvs[len(resp.Kvs)-1].Key) + "\x00"
	}
}

// Schedule implements escalation.Store.
func (s *Store) Schedule(ctx context.Context, fn func(escalation.Due) error) error {
	_, err := s.ScheduleRev(ctx, fn)
	return err
}

// ScheduleRev is Schedule read at one revision, which it returns: a leader
// that recovers from it and then watches from the next revision (WatchWork)
// misses nothing and sees nothing twice.
func (s *Store) ScheduleRev(ctx context.Context, fn func(escalation.Due) error) (int64, error) {
	head, err := s.cli.Get(ctx, s.kSeq())
	if err != nil {
		return 0, fmt.Errorf("etcd: %w", err)
	}
	rev := head.Header.Revision
	pages := map[uint64][]escalation.DuePage{}
	err = s.rangeAll(ctx, s.k("pend/"), rev, func(k, v []byte) error {
		p, id, _, err := index.ParsePending(k, v)
		if err == nil {
			pages[id] = append(pages[id], p)
		}
		return err
	})
	if err != nil {
		return 0, err
	}
	err = s.rangeAll(ctx, s.k("open/"), rev, func(k, v []byte) error {
		if err := ctx.Err(); err != nil {
			return err
		}
		id := idOf(k)
		d := escalation.Due{Incident: id, Pages: pages[id]}
		d.State, d.NextAt, _ = decodeOpen(v)
		return fn(d)
	})
	return rev, err
}

// WatchWork watches, from revision from on, for work other writers than
// self record: an incident whose schedule entry they wrote, and pages they
// created. It calls fn with each, in commit order, until ctx ends or the watch
// fails (for example because from was compacted away).
func (s *Store) WatchWork(ctx context.Context, from int64, self string, fn func(escalation.Due)) error {
	wctx, cancel := context.WithCancel(clientv3.WithRequireLeader(ctx))
	defer cancel()
	openP, pendP := s.k("open/"), s.k("pend/")
	wch := s.cli.Watch(wctx, s.prefix, clientv3.WithPrefix(), clientv3.WithRev(from))
	for resp := range wch {
		if err := resp.Err(); err != nil {
			return fmt.Errorf("watching %s: %w", s.prefix, err)
		}
		var order []uint64
		due := map[uint64]*escalation.Due{}
		get := func(id uint64) *escalation.Due {
			d, ok := due[id]
			if !ok {
				d = &escalation.Due{Incident: id}
				due[id] = d
				order = append(order, id)
			}
			return d
		}
		for _, ev := range resp.Events {
			if ev.Type != clientv3.EventTypePut {
				continue
			}
			key := string(ev.Kv.Key)
			switch {
			case strings.HasPrefix(key, openP):
				st, at, w := decodeOpen(ev.Kv.Value)
				if w == self {
					continue
				}
				d := get(idOf(ev.Kv.Key))
				d.State, d.NextAt = st, at
			case strings.HasPrefix(key, pendP) && ev.Kv.Version == 1:
				p, id, w, err := index.ParsePending(ev.Kv.Key, ev.Kv.Value)
				if err != nil || w == self {
					continue
				}
				d := get(id)
				d.Pages = append(d.Pages, p)
			}
		}
		for _, id := range order {
			fn(*due[id])
		}
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	return errors.New("watch ended (etcd unreachable or no leader)")
}

// Counts implements escalation.Store.
func (s *Store) Counts(ctx context.Context) (map[escalation.State]int, error) {
	ctx, cancel := s.bound(ctx)
	defer cancel()
	out := map[escalation.State]int{escalation.Open: 0, escalation.Acknowledged: 0, escalation.Resolved: 0}
	head, err := s.cli.Get(ctx, s.kSeq())
	if err != nil {
		return nil, fmt.Errorf("etcd: %w", err)
	}
	total := 0
	if len(head.Kvs) > 0 && len(head.Kvs[0].Value) == 8 {
		total = int(binary.BigEndian.Uint64(head.Kvs[0].Value))
	}
	unresolved := 0
	err = s.rangeAll(ctx, s.k("open/"), head.Header.Revision, func(k, v []byte) error {
		st, _, _ := decodeOpen(v)
		out[st]++
		unresolved++
		return nil
	})
	out[escalation.Resolved] = total - unresolved
	return out, err
}

// Ping implements escalation.Store: a linearizable read, which needs a quorum
// of members and an elected etcd leader, the same as any commit. It writes
// nothing, so probing a replica never adds a revision.
func (s *Store) Ping(ctx context.Context) error {
	ctx, cancel := s.bound(ctx)
	defer cancel()
	if err := ctx.Err(); err != nil {
		return err
	}
	if _, err := s.cli.Get(ctx, s.kSeq(), clientv3.WithCountOnly()); err != nil {
		return fmt.Errorf("etcd: %w", err)
	}
	return nil
}

// GetState implements notifiers.StateStore.
func (s *Store) GetState(ctx context.Context, bucket, key string) ([]byte, error) {
	ctx, cancel := s.bound(ctx)
	defer cancel()
	resp, err := s.cli.Get(ctx, s.kState(bucket, key))
	if err != nil {
		return nil, fmt.Errorf("etcd: %w", err)
	}
	if len(resp.Kvs) == 0 {
		return nil, nil
	}
	return append([]byte{}, resp.Kvs[0].Value...), nil
}

// PutState implements notifiers.StateStore.
func (s *Store) PutState(ctx context.Context, bucket, key string, value []byte) error {
	ctx, cancel := s.bound(ctx)
	defer cancel()
	if err := ctx.Err(); err != nil {
		return err
	}
	ok, err := s.commit(ctx, nil, s.stateWriteOps(bucket, key, value))
	if err == nil && !ok {
		err = errors.New("etcd: state write not committed")
	}
	return err
}

// stateWriteOps writes value (nil: deletes) under bucket/key, with when it
// was written (what retention prunes by).
func (s *Store) stateWriteOps(bucket, key string, value []byte) []clientv3.Op {
	if value == nil {
		return []clientv3.Op{clientv3.OpDelete(s.kState(bucket, key)), clientv3.OpDelete(s.kStateTime(bucket, key))}
	}
	return []clientv3.Op{clientv3.OpPut(s.kState(bucket, key), string(value)),
		clientv3.OpPut(s.kStateTime(bucket, key), string(stateTime()))}
}

// stateTime is the value of a state key's statet entry: now.
func stateTime() []byte { return be64(uint64(time.Now().UnixNano())) }

// kStateTime keeps when a state key was last written: what retention prunes by.
func (s *Store) kStateTime(bucket, key string) string {
	b := make([]byte, 2)
	binary.BigEndian.PutUint16(b, uint16(len(bucket)))
	return s.k("statet/", string(b), bucket, key)
}

// Held implements escalation.Store from the unfinished-page index.
func (s *Store) Held(ctx context.Context, person string, ch notifiers.Channel, newest int) (escalation.Held, error) {
	ctx, cancel := s.bound(ctx)
	defer cancel()
	var h escalation.Held
	var ids []uint64
	err := s.rangeAll(ctx, s.k("pend/"), 0, func(k, v []byte) error {
		p, id, _, err := index.ParsePending(k, v)
		if err != nil {
			return err
		}
		if p.Deferred && p.Channel == ch && p.Person == person {
			h.Count++
			ids = append(ids, id)
		}
		return nil
	})
	for i := len(ids) - 1; i >= 0 && len(h.Newest) < newest; i-- {
		if len(h.Newest) == 0 || h.Newest[len(h.Newest)-1] != ids[i] {
			h.Newest = append(h.Newest, ids[i])
		}
	}
	return h, err
}

// HeldPages implements escalation.Store from the unfinished-page index.
func (s *Store) HeldPages(ctx context.Context, person string, ch notifiers.Channel, after string, limit int) ([]string, error) {
	ctx, cancel := s.bound(ctx)
	defer cancel()
	from := s.k("pend/")
	if after != "" {
		id, seq, ok := escalation.ParsePageID(after)
		if !ok {
			return nil, fmt.Errorf("held pages after %q: not a page id", after)
		}
		from = s.k("pend/", subKey(id, seq), "\x00")
	}
	var out []string
	done := errors.New("enough")
	err := s.rangeFrom(ctx, from, prefixEnd(s.k("pend/")), func(k, v []byte) error {
		p, _, _, err := index.ParsePending(k, v)
		if err != nil {
			return err
		}
		if p.Deferred && p.Channel == ch && p.Person == person {
			out = append(out, p.ID)
			if len(out) >= limit {
				return done
			}
		}
		return nil
	})
	if errors.Is(err, done) {
		err = nil
	}
	return out, err
}

// Prune implements escalation.Store: each resolved incident goes in its own
// transaction (only if unchanged since it was read), like each stale group
// and each expired state key.
func (s *Store) Prune(ctx context.Context, p escalation.Prune) (escalation.Pruned, error) {
	var out escalation.Pruned
	if !p.ResolvedBefore.IsZero() {
		type victim struct {
			id  uint64
			rev int64
		}
		var victims []victim
		stop := errors.New("stop")
		err := s.rangeAll(ctx, s.k("inc/"), 0, func(k, v []byte) error {
			var inc struct {
				State      escalation.State `json:"state"`
				OpenedAt   time.Time        `json:"openedAt"`
				ResolvedAt time.Time        `json:"resolvedAt"`
			}
			if err := json.Unmarshal(v, &inc); err != nil {
				return fmt.Errorf("incident %x: %w", k, err)
			}
			if !inc.OpenedAt.Before(p.ResolvedBefore) {
				return stop // ids grow with opening time
			}
			if inc.State == escalation.Resolved && inc.ResolvedAt.Before(p.ResolvedBefore) {
				victims = append(victims, victim{id: idOf(k)})
			}
			return nil
		})
		if err != nil && !errors.Is(err, stop) {
			return out, err
		}
		for _, vi := range victims {
			id := vi.id
			resp, err := s.cli.Get(ctx, s.kInc(id))
			if err != nil {
				return out, fmt.Errorf("etcd: %w", err)
			}
			if len(resp.Kvs) == 0 {
				continue
			}
			ops := []clientv3.Op{clientv3.OpDelete(s.kInc(id)), clientv3.OpDelete(s.kOpen(id)), clientv3.OpDelete(s.kTLSeq(id))}
			for _, pfx := range []string{"tl/", "page/", "pend/"} {
				p := s.k(pfx, string(be64(id)))
				ops = append(ops, clientv3.OpDelete(p, clientv3.WithRange(prefixEnd(p))))
			}
			ok, err := s.commit(ctx, []clientv3.Cmp{clientv3.Compare(clientv3.ModRevision(s.kInc(id)), "=", resp.Kvs[0].ModRevision)}, ops)
			if err != nil {
				return out, err
			}
			if ok {
				out.Incidents++
			}
		}
		var stale []struct {
			key string
			rev int64
		}
		err = s.rangeAll(ctx, s.k("grp/"), 0, func(k, v []byte) error {
			var g escalation.Group
			if json.Unmarshal(v, &g) != nil || g.Open != 0 {
				return nil // unreadable: leave it for a person to look at
			}
			for _, end := range g.LastEnd {
				if !end.Before(p.ResolvedBefore) {
					return nil
				}
			}
			stale = append(stale, struct {
				key string
				rev int64
			}{string(k), 0})
			return nil
		})
		if err != nil {
			return out, err
		}
		for _, g := range stale {
			resp, err := s.cli.Get(ctx, g.key)
			if err != nil {
				return out, fmt.Errorf("etcd: %w", err)
			}
			if len(resp.Kvs) == 0 {
				continue
			}
			ok, err := s.commit(ctx, []clientv3.Cmp{clientv3.Compare(clientv3.ModRevision(g.key), "=", resp.Kvs[0].ModRevision)}, []clientv3.Op{clientv3.OpDelete(g.key)})
			if err != nil {
				return out, err
			}
			if ok {
				out.Groups++
			}
		}
	}
	for _, sp := range p.State {
		prefix := s.kStateTime(sp.Bucket, sp.Prefix)
		var old []string
		err := s.rangeAll(ctx, prefix, 0, func(k, v []byte) error {
			if len(v) == 8 && index.FromUnixNano(binary.BigEndian.Uint64(v)).Before(sp.Before) {
				old = append(old, string(k))
			}
			return nil
		})
		if err != nil {
			return out, err
		}
		tp := s.k("statet/")
		for _, k := range old {
			stateKey := s.k("state/") + strings.TrimPrefix(k, tp)
			if _, err := s.commit(ctx, nil, []clientv3.Op{clientv3.OpDelete(k), clientv3.OpDelete(stateKey)}); err != nil {
				return out, err
			}
			out.StateKeys++
		}
	}
	return out, nil
}

// CreateState implements escalation.StateCreator: it stores value under
// bucket/key unless the key exists, in one transaction, and returns what the
// key holds afterwards, so replicas starting together agree on one value.
func (s *Store) CreateState(ctx context.Context, bucket, key string, value []byte) ([]byte, error) {
	ctx, cancel := s.bound(ctx)
	defer cancel()
	k := s.kState(bucket, key)
	resp, err := s.cli.Txn(ctx).If(clientv3.Compare(clientv3.CreateRevision(k), "=", 0)).
		Then(clientv3.OpPut(k, string(value)), clientv3.OpPut(s.kStateTime(bucket, key), string(be64(uint64(time.Now().UnixNano()))))).
		Else(clientv3.OpGet(k)).Commit()
	if err != nil {
		return nil, fmt.Errorf("etcd: %w", err)
	}
	if resp.Succeeded {
		return value, nil
	}
	r := resp.Responses[0].GetResponseRange()
	if r == nil || len(r.Kvs) == 0 {
		return nil, errors.New("etcd: state key vanished while being created")
	}
	return append([]byte{}, r.Kvs[0].Value...), nil
}
