package etcdstore

import (
	"context"
	"errors"
	"time"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// DefaultAttemptTimeout bounds one attempt of a request RetryKV retries: a
// member that stalls (paused, partitioned, its disk hung) is given up on
// after this long and the request tried on another, while the caller's own
// deadline still has time.
const DefaultAttemptTimeout = 2 * time.Second

// RetryKV wraps kv (a client's KV: cli.KV = RetryKV(cli.KV, 0)) so that a
// request that failed because of the member it reached, not because of what
// it asked, is tried again, on another member, until the caller's context
// ends. Those failures are a member that died under the request
// (Unavailable: EOF, connection refused, transport closing), one that lost
// or is electing its Raft leader (etcdserver: no leader, leader changed,
// request timed out), and an attempt that outlived attemptTimeout (default
// DefaultAttemptTimeout). etcd's client round-robins requests over the
// members and skips those it cannot reach, so the next attempt goes
// elsewhere; every attempt requires a leader, so a member cut off from its
// quorum answers at once instead of holding the request.
//
// etcd's own client retries only reads this way: a write that may have
// reached a member is not retried, because it may have committed. Retrying
// it is safe when every write is idempotent or a compare-and-swap, as this
// package's are: a transaction whose first attempt committed fails its
// comparisons on the second (the keys' revisions moved) and the store reads
// again, finding its own write. A caller whose writes are neither must not
// use RetryKV.
func RetryKV(kv clientv3.KV, attemptTimeout time.Duration) clientv3.KV {
	if attemptTimeout <= 0 {
		attemptTimeout = DefaultAttemptTimeout
	}
	return &retryKV{KV: kv, attempt: attemptTimeout}
}

type retryKV struct {
	clientv3.KV // GetStream and Compact pass through
	attempt     time.Duration
}

// Retry backoff: the first retry soon (another member is usually ready), then
// doubling up to the longest, a Raft election's order of magnitude.
const (
	firstBackoff = 20 * time.Millisecond
	maxBackoff   = 400 * time.Millisecond
)

// do runs one request until it succeeds, fails for a reason a retry cannot
// mend, or ctx ends.
func do[T any](ctx context.Context, attempt time.Duration, call func(ctx context.Context) (T, error)) (T, error) {
	backoff := firstBackoff
	for {
		actx, cancel := context.WithTimeout(clientv3.WithRequireLeader(ctx), attempt)
		v, err := call(actx)
		timedOut := actx.Err() != nil
		cancel()
		if err == nil || ctx.Err() != nil || !(timedOut || retryable(err)) {
			return v, err
		}
		if dl, ok := ctx.Deadline(); ok && time.Until(dl) < backoff {
			return v, err // no time left for another attempt
		}
		t := time.NewTimer(backoff)
		select {
		case <-ctx.Done():
			t.Stop()
			return v, err
		case <-t.C:
		}
		backoff = min(2*backoff, maxBackoff)
	}
}

// retryable reports whether err is the member's failure rather than the
// request's: gRPC's Unavailable, which etcd also answers for no leader, a
// leader change and a proposal that timed out.
func retryable(err error) bool {
	if errors.Is(err, context.Canceled) {
		return false
	}
	// The client turns the server's own errors into rpctypes.EtcdError,
	// which carries the code but is not a gRPC status.
	var ee rpctypes.EtcdError
	if errors.As(err, &ee) {
		return ee.Code() == codes.Unavailable
	}
	if st, ok := status.FromError(err); ok {
		return st.Code() == codes.Unavailable
	}
	return false
}

// Put implements clientv3.KV.
func (r *retryKV) Put(ctx context.Context, key, val string, opts ...clientv3.OpOption) (*clientv3.PutResponse, error) {
	return do(ctx, r.attempt, func(ctx context.Context) (*clientv3.PutResponse, error) { return r.KV.Put(ctx, key, val, opts...) })
}

// Get implements clientv3.KV.
func (r *retryKV) Get(ctx context.Context, key string, opts ...clientv3.OpOption) (*clientv3.GetResponse, error) {
	return do(ctx, r.attempt, func(ctx context.Context) (*clientv3.GetResponse, error) { return r.KV.Get(ctx, key, opts...) })
}

// Delete implements clientv3.KV.
func (r *retryKV) Delete(ctx context.Context, key string, opts ...clientv3.OpOption) (*clientv3.DeleteResponse, error) {
	return do(ctx, r.attempt, func(ctx context.Context) (*clientv3.DeleteResponse, error) { return r.KV.Delete(ctx, key, opts...) })
}

// Do implements clientv3.KV.
func (r *retryKV) Do(ctx context.Context, op clientv3.Op) (clientv3.OpResponse, error) {
	return do(ctx, r.attempt, func(ctx context.Context) (clientv3.OpResponse, error) { return r.KV.Do(ctx, op) })
}

// Txn implements clientv3.KV: the transaction is built up here and sent
// afresh on each attempt.
func (r *retryKV) Txn(ctx context.Context) clientv3.Txn { return &retryTxn{kv: r, ctx: ctx} }

type retryTxn struct {
	kv         *retryKV
	ctx        context.Context
	cmps       []clientv3.Cmp
	then, els  []clientv3.Op
	cmpd, thnd bool // If and Then called, which clientv3's Txn allows once each
}

// If implements clientv3.Txn.
func (t *retryTxn) If(cs ...clientv3.Cmp) clientv3.Txn {
	if t.cmpd {
		panic("cannot call If twice!") // as clientv3's txn does
	}
	t.cmpd = true
	t.cmps = cs
	return t
}

// Then implements clientv3.Txn.
func (t *retryTxn) Then(ops ...clientv3.Op) clientv3.Txn {
	if t.thnd {
		panic("cannot call Then twice!")
	}
	t.thnd = true
	t.then = ops
	return t
}

// Else implements clientv3.Txn.
func (t *retryTxn) Else(ops ...clientv3.Op) clientv3.Txn {
	t.els = ops
	return t
}

// Commit implements clientv3.Txn.
func (t *retryTxn) Commit() (*clientv3.TxnResponse, error) {
	return do(t.ctx, t.kv.attempt, func(ctx context.Context) (*clientv3.TxnResponse, error) {
		return t.kv.KV.Txn(ctx).If(t.cmps...).Then(t.then...).Else(t.els...).Commit()
	})
}
