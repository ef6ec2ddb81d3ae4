package etcdstore

import (
	"context"
	"fmt"

	clientv3 "go.etcd.io/etcd/client/v3"
)

// SweepState implements notifiers.StateSweeper: keep is called for every key
// of bucket in key order (from one read), and each key it turns down is
// deleted unless it was written again since that read (its mod revision is
// compared), so a sweep never removes a newer value.
func (s *Store) SweepState(ctx context.Context, bucket string, keep func(key string, value []byte) bool) error {
	ctx, cancel := s.bound(ctx)
	defer cancel()
	prefix := s.kState(bucket, "")
	type victim struct {
		key string
		rev int64
	}
	var drop []victim
	start := prefix
	for {
		resp, err := s.cli.Get(ctx, start, clientv3.WithRange(prefixEnd(prefix)), clientv3.WithLimit(pageSize))
		if err != nil {
			return fmt.Errorf("etcd: %w", err)
		}
		for _, kv := range resp.Kvs {
			k := string(kv.Key[len(prefix):])
			if !keep(k, append([]byte{}, kv.Value...)) {
				drop = append(drop, victim{k, kv.ModRevision})
			}
		}
		if !resp.More || len(resp.Kvs) == 0 {
			break
		}
		start = string(resp.Kvs[len(resp.Kvs)-1].Key) + "\x00"
	}
	for _, v := range drop {
		cmp := clientv3.Compare(clientv3.ModRevision(s.kState(bucket, v.key)), "=", v.rev)
		if _, err := s.commit(ctx, []clientv3.Cmp{cmp}, s.stateWriteOps(bucket, v.key, nil)); err != nil {
			return err
		}
	}
	return nil
}
