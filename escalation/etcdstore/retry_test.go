package etcdstore_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync"
	"testing"
	"time"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/klaxon-oncall/klaxon/escalation/etcdstore"
)

// scriptKV answers each request with the next of its errors (nil: success),
// recording what each attempt sent; "hang" blocks the attempt until its
// context ends, as a stalled member does.
type scriptKV struct {
	clientv3.KV
	mu    sync.Mutex
	errs  []error
	calls []string
}

var errHang = errors.New("hang")

func (s *scriptKV) next(ctx context.Context, call string) error {
	s.mu.Lock()
	s.calls = append(s.calls, call)
	var err error
	if len(s.errs) > 0 {
		err, s.errs = s.errs[0], s.errs[1:]
	}
	s.mu.Unlock()
	if err == errHang {
		<-ctx.Done()
		return status.Error(codes.DeadlineExceeded, ctx.Err().Error())
	}
	return err
}

func (s *scriptKV) Get(ctx context.Context, key string, _ ...clientv3.OpOption) (*clientv3.GetResponse, error) {
	if err := s.next(ctx, "get "+key); err != nil {
		return nil, err
	}
	return &clientv3.GetResponse{}, nil
}

func (s *scriptKV) Txn(ctx context.Context) clientv3.Txn { return &scriptTxn{kv: s, ctx: ctx} }

type scriptTxn struct {
	kv        *scriptKV
	ctx       context.Context
	cmps      int
	then, els int
}

func (t *scriptTxn) If(cs ...clientv3.Cmp) clientv3.Txn   { t.cmps = len(cs); return t }
func (t *scriptTxn) Then(ops ...clientv3.Op) clientv3.Txn { t.then = len(ops); return t }
func (t *scriptTxn) Else(ops ...clientv3.Op) clientv3.Txn { t.els = len(ops); return t }
func (t *scriptTxn) Commit() (*clientv3.TxnResponse, error) {
	if _, ok := t.ctx.Deadline(); !ok {
		return nil, errors.New("attempt without a deadline")
	}
	if err := t.kv.next(t.ctx, fmt.Sprintf("txn %d/%d/%d", t.cmps, t.then, t.els)); err != nil {
		return nil, err
	}
	return &clientv3.TxnResponse{Succeeded: true}, nil
}

// TestRetryKV checks which failures RetryKV tries again (the member's) and
// which it returns at once (the request's, or the caller's end).
func TestRetryKV(t *testing.T) {
	eof := status.Error(codes.Unavailable, "error reading from server: EOF")
	for _, tc := range []struct {
		name     string
		errs     []error
		cancel   bool // the caller gives up before the first attempt
		attempts int
		wantErr  error
	}{
		{"success", nil, false, 1, nil},
		{"member died under the request", []error{eof}, false, 2, nil},
		{"leader changed, then no leader", []error{rpctypes.ErrGRPCLeaderChanged, rpctypes.ErrGRPCNoLeader}, false, 3, nil},
		{"proposal timed out", []error{rpctypes.ErrGRPCTimeoutDueToLeaderFail}, false, 2, nil},
		// As the client hands the server's errors back: rpctypes.EtcdError.
		{"leader changed, as the client returns it", []error{rpctypes.ErrLeaderChanged, rpctypes.ErrNoLeader, rpctypes.ErrTimeout}, false, 4, nil},
		{"compacted, as the client returns it", []error{rpctypes.ErrCompacted}, false, 1, rpctypes.ErrCompacted},
		{"stalled member", []error{errHang}, false, 2, nil},
		{"compacted is the request's fault", []error{rpctypes.ErrGRPCCompacted}, false, 1, rpctypes.ErrGRPCCompacted},
		{"permission denied", []error{rpctypes.ErrGRPCPermissionDenied}, false, 1, rpctypes.ErrGRPCPermissionDenied},
		{"not gRPC", []error{io.ErrUnexpectedEOF}, false, 1, io.ErrUnexpectedEOF},
		{"caller gave up", []error{eof, eof}, true, 1, eof},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for _, op := range []string{"get", "txn"} {
				fake := &scriptKV{errs: append([]error(nil), tc.errs...)}
				kv := etcdstore.RetryKV(fake, 100*time.Millisecond)
				ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
				if tc.cancel {
					cancel()
				}
				var err error
				if op == "get" {
					_, err = kv.Get(ctx, "k")
				} else {
					_, err = kv.Txn(ctx).If(clientv3.Compare(clientv3.Version("k"), "=", 0)).
						Then(clientv3.OpPut("k", "v"), clientv3.OpPut("j", "v")).Else(clientv3.OpGet("k")).Commit()
				}
				cancel()
				if !errors.Is(err, tc.wantErr) && (tc.wantErr == nil || err == nil || err.Error() != tc.wantErr.Error()) {
					t.Errorf("%s: error %v, want %v", op, err, tc.wantErr)
				}
				if len(fake.calls) != tc.attempts {
					t.Errorf("%s: %d attempts %v, want %d", op, len(fake.calls), fake.calls, tc.attempts)
				}
				for _, c := range fake.calls {
					if op == "txn" && c != "txn 1/2/1" {
						t.Errorf("an attempt sent %q: every attempt must send the whole transaction", c)
					}
				}
			}
		})
	}
}

// TestRetryKVStopsAtTheCallersDeadline: a member that keeps failing is tried
// until the caller's deadline, and the last failure returned.
func TestRetryKVStopsAtTheCallersDeadline(t *testing.T) {
	eof := status.Error(codes.Unavailable, "error reading from server: EOF")
	errs := make([]error, 1000)
	for i := range errs {
		errs[i] = eof
	}
	fake := &scriptKV{errs: errs}
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	_, err := etcdstore.RetryKV(fake, 0).Get(ctx, "k")
	if err == nil || status.Code(err) != codes.Unavailable {
		t.Fatalf("error %v, want the last Unavailable", err)
	}
	if n := len(fake.calls); n < 2 || n >= len(errs) {
		t.Fatalf("%d attempts in 300ms: want a few, backing off", n)
	}
}
