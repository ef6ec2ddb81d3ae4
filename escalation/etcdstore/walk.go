package etcdstore

import (
	"context"
	"fmt"
	"strings"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/klaxon-oncall/klaxon/notifiers"
)

var _ notifiers.StateSweeper = (*Store)(nil)

// SweepState implements notifiers.StateSweeper: it calls keep for every key
// of bucket in key order, as of one revision, and deletes those keep turns
// down, each only if it was not written since it was read (a key rewritten
// meanwhile, by a page that tracked it again, is kept). Channels walk their
// state with it when they start and when a replica becomes the leader (the
// PagerDuty incidents tracked for polling), and expire old entries.
func (s *Store) SweepState(ctx context.Context, bucket string, keep func(key string, value []byte) bool) error {
	ctx, cancel := s.bound(ctx)
	defer cancel()
	prefix := s.kState(bucket, "")
	type dropped struct {
		key string // the state key under the prefix
		rev int64  // its ModRevision as read
	}
	var drop []dropped
	from, end, rev := prefix, prefixEnd(prefix), int64(0)
	for {
		resp, err := s.cli.Get(ctx, from, clientv3.WithRange(end), clientv3.WithRev(rev), clientv3.WithLimit(pageSize))
		if err != nil {
			return fmt.Errorf("etcd: %w", err)
		}
		rev = resp.Header.Revision // every further page at the first one's revision
		for _, kv := range resp.Kvs {
			k := string(kv.Key)
			if !keep(strings.TrimPrefix(k, prefix), append([]byte(nil), kv.Value...)) {
				drop = append(drop, dropped{k, kv.ModRevision})
			}
		}
		if !resp.More || len(resp.Kvs) == 0 {
			break
		}
		from = string(resp.Kvs[len(resp.Kvs)-1].Key) + "\x00"
	}
	timeKey := func(stateKey string) string { return s.k("statet/") + strings.TrimPrefix(stateKey, s.k("state/")) }
	// Up to a third of the transaction limit per commit: a compare and two deletes a key.
	per := max(1, int(s.maxTxnOps.Load())/3-len(s.fence))
	for len(drop) > 0 {
		n := min(per, len(drop))
		batch := drop[:n]
		drop = drop[n:]
		var cmps []clientv3.Cmp
		var ops []clientv3.Op
		for _, d := range batch {
			cmps = append(cmps, clientv3.Compare(clientv3.ModRevision(d.key), "=", d.rev))
			ops = append(ops, clientv3.OpDelete(d.key), clientv3.OpDelete(timeKey(d.key)))
		}
		ok, err := s.commit(ctx, cmps, ops)
		if err != nil {
			return err
		}
		if ok || n == 1 {
			continue
		}
		// Some key was written since it was read: delete the others one by one.
		for _, d := range batch {
			if _, err := s.commit(ctx, []clientv3.Cmp{clientv3.Compare(clientv3.ModRevision(d.key), "=", d.rev)},
				[]clientv3.Op{clientv3.OpDelete(d.key), clientv3.OpDelete(timeKey(d.key))}); err != nil {
				return err
			}
		}
	}
	return nil
}
