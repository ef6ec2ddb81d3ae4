package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/client/v3/concurrency"
	"go.uber.org/zap"

	"github.com/klaxon-oncall/klaxon/escalation/etcdstore"
	"github.com/klaxon-oncall/klaxon/internal/metrics"
	"github.com/klaxon-oncall/klaxon/internal/selftest"
	"github.com/klaxon-oncall/klaxon/notifiers"
)

// etcdConfig is how `klaxon serve --store etcd` reaches its cluster.
type etcdConfig struct {
	endpoints, prefix, username, password string
	caFile, certFile, keyFile             string
	leaderTTL                             time.Duration
	replica                               string
	passwordFile                          string
	maxTxnOps                             int
	readTimeout                           time.Duration
	// insecureTransport lets credentials go to etcd over plain http://
	// (--etcd-insecure-transport): logged loudly at start.
	insecureTransport bool
}

func (c *etcdConfig) declare(fs *flag.FlagSet, env map[string]string) {
	fs.StringVar(&c.endpoints, "etcd-endpoints", "", "comma-separated etcd client URLs, with --store etcd (env KLAXON_ETCD_ENDPOINTS)")
	fs.StringVar(&c.prefix, "etcd-prefix", "/klaxon/", "key prefix in etcd; several installations can share a cluster (env KLAXON_ETCD_PREFIX)")
	fs.StringVar(&c.username, "etcd-username", "", "etcd user; the password comes from $KLAXON_ETCD_PASSWORD or --etcd-password-file (env KLAXON_ETCD_USERNAME)")
	fs.StringVar(&c.passwordFile, "etcd-password-file", "", "file holding the etcd password (env KLAXON_ETCD_PASSWORD_FILE)")
	fs.StringVar(&c.caFile, "etcd-ca-file", "", "CA certificate that signed the etcd members' certificates (env KLAXON_ETCD_CA_FILE)")
	fs.StringVar(&c.certFile, "etcd-cert-file", "", "client certificate for etcd (env KLAXON_ETCD_CERT_FILE)")
	fs.StringVar(&c.keyFile, "etcd-key-file", "", "client certificate's private key for etcd (env KLAXON_ETCD_KEY_FILE)")
	fs.DurationVar(&c.leaderTTL, "leader-ttl", 5*time.Second, "lease of the elected leader: a dead leader is replaced within about this long (env KLAXON_LEADER_TTL)")
	fs.IntVar(&c.maxTxnOps, "etcd-max-txn-ops", etcdstore.DefaultMaxTxnOps, "the cluster's --max-txn-ops: concurrent webhooks are committed together in transactions of up to this many operations; raise both together for more webhooks/s (env KLAXON_ETCD_MAX_TXN_OPS)")
	fs.BoolVar(&c.insecureTransport, "etcd-insecure-transport", false, "send the etcd user's password over plain http:// endpoints: anyone on the path reads it (env KLAXON_ETCD_INSECURE_TRANSPORT)")
	env["etcd-insecure-transport"] = "KLAXON_ETCD_INSECURE_TRANSPORT"
	fs.StringVar(&c.replica, "replica-name", "", "this replica's name in the election and in status (default host name and listen address) (env KLAXON_REPLICA_NAME)")
	fs.DurationVar(&c.readTimeout, "store-read-timeout", DefaultStoreReadTimeout, "with --store etcd, the longest an API read or web page waits on etcd before it answers 503 with the reason (env KLAXON_STORE_READ_TIMEOUT)")
	env["store-read-timeout"] = "KLAXON_STORE_READ_TIMEOUT"
	for k, v := range map[string]string{"etcd-endpoints": "KLAXON_ETCD_ENDPOINTS", "etcd-prefix": "KLAXON_ETCD_PREFIX",
		"etcd-username": "KLAXON_ETCD_USERNAME", "etcd-password-file": "KLAXON_ETCD_PASSWORD_FILE", "etcd-ca-file": "KLAXON_ETCD_CA_FILE",
		"etcd-cert-file": "KLAXON_ETCD_CERT_FILE", "etcd-key-file": "KLAXON_ETCD_KEY_FILE", "leader-ttl": "KLAXON_LEADER_TTL",
		"replica-name": "KLAXON_REPLICA_NAME", "etcd-max-txn-ops": "KLAXON_ETCD_MAX_TXN_OPS"} {
		env[k] = v
	}
}

// resolve checks the settings and reads the password (environment or file
// only: a flag would show in ps).
func (c *etcdConfig) resolve(listen string) error {
	var err error
	if c.password, err = secret("$KLAXON_ETCD_PASSWORD", os.Getenv("KLAXON_ETCD_PASSWORD"), c.passwordFile); err != nil {
		return err
	}
	if c.endpoints == "" {
		return errors.New("--store etcd needs --etcd-endpoints")
	}
	if c.password != "" && c.username == "" {
		return errors.New("an etcd password is set but --etcd-username is not")
	}
	if (c.certFile == "") != (c.keyFile == "") {
		return errors.New("--etcd-cert-file and --etcd-key-file go together")
	}
	if plain := c.plainEndpoints(); c.password != "" && len(plain) > 0 && !c.insecureTransport {
		return fmt.Errorf("the etcd password would travel in clear to %s: use https:// endpoints (with --etcd-ca-file), or accept it with --etcd-insecure-transport", strings.Join(plain, ", "))
	}
	if !strings.HasSuffix(c.prefix, "/") {
		c.prefix += "/"
	}
	if c.leaderTTL < 2*time.Second || c.leaderTTL%time.Second != 0 {
		return fmt.Errorf("--leader-ttl %s: want whole seconds, at least 2s (etcd leases count in seconds)", c.leaderTTL)
	}
	if c.readTimeout < 100*time.Millisecond {
		return fmt.Errorf("--store-read-timeout %s: want at least 100ms", c.readTimeout)
	}
	if c.maxTxnOps < 16 {
		return fmt.Errorf("--etcd-max-txn-ops %d: want at least 16 (etcd's default is %d)", c.maxTxnOps, etcdstore.DefaultMaxTxnOps)
	}
	if c.replica == "" {
		host, _ := os.Hostname()
		c.replica = host + "/" + listen
	}
	return nil
}

// plainEndpoints lists the endpoints that are not https:// (etcd's client
// takes a bare host:port as plain http).
func (c *etcdConfig) plainEndpoints() []string {
	var out []string
	for _, e := range strings.Split(c.endpoints, ",") {
		if e = strings.TrimSpace(e); e != "" && !strings.HasPrefix(strings.ToLower(e), "https://") && !strings.HasPrefix(strings.ToLower(e), "unixs://") {
			out = append(out, e)
		}
	}
	return out
}

// warn logs what --etcd-insecure-transport lets through.
func (c *etcdConfig) warn(log *slog.Logger) {
	if plain := c.plainEndpoints(); c.insecureTransport && c.password != "" && len(plain) > 0 {
		log.Error("INSECURE ETCD TRANSPORT (--etcd-insecure-transport): the etcd password and every token, session and incident travel in clear to "+
			strings.Join(plain, ", ")+"; anyone on the network path can read them and act as Klaxon. Use https:// endpoints.", "endpoints", len(plain))
	}
}

// client connects to etcd. It does not wait for the cluster: a replica
// starts while etcd is down and answers 503 until it is back.
func (c *etcdConfig) client() (*clientv3.Client, error) {
	cfg := clientv3.Config{
		Endpoints:   strings.Split(c.endpoints, ","),
		DialTimeout: 5 * time.Second,
		Username:    c.username, Password: c.password,
		DialKeepAliveTime: 2 * time.Second, DialKeepAliveTimeout: 2 * time.Second,
		Logger: zap.NewNop(),
	}
	if c.caFile != "" || c.certFile != "" {
		t := &tls.Config{MinVersion: tls.VersionTLS12}
		if c.caFile != "" {
			pem, err := os.ReadFile(c.caFile)
			if err != nil {
				return nil, fmt.Errorf("--etcd-ca-file: %w", err)
			}
			t.RootCAs = x509.NewCertPool()
			if !t.RootCAs.AppendCertsFromPEM(pem) {
				return nil, fmt.Errorf("--etcd-ca-file %s: no PEM certificate in it", c.caFile)
			}
		}
		if c.certFile != "" {
			cert, err := tls.LoadX509KeyPair(c.certFile, c.keyFile)
			if err != nil {
				// The error names the files, never their contents.
				return nil, fmt.Errorf("--etcd-cert-file/--etcd-key-file: %w", err)
			}
			t.Certificates = []tls.Certificate{cert}
		}
		cfg.TLS = t
	}
	cli, err := clientv3.New(cfg)
	if err != nil {
		return nil, fmt.Errorf("etcd client: %w", err)
	}
	// A write that reached a member as it died or lost its Raft leader is
	// tried again on another: with a quorum left, Alertmanager sees nothing.
	cli.KV = etcdstore.RetryKV(cli.KV, 0)
	return cli, nil
}

// leaderRole is what only the leader runs, given its fenced store and the
// gated channels; it returns when ctx ends (leadership lost or shutdown).
type leaderRole func(ctx context.Context, store *etcdstore.Store, writer string, channels []notifiers.Notifier) error

// election keeps this replica campaigning for leadership and runs lead while
// it holds it.
type election struct {
	cli     *clientv3.Client
	store   *etcdstore.Store
	cfg     *etcdConfig
	log     *slog.Logger
	m       *metrics.Metrics
	chans   []notifiers.Notifier
	leading atomic.Bool
}

// electionPrefix is where the candidates' keys live under the store prefix.
func electionPrefix(prefix string) string { return prefix + "election/" }

// run campaigns until ctx ends.
func (e *election) run(ctx context.Context, lead leaderRole) {
	for ctx.Err() == nil {
		if err := e.term(ctx, lead); err != nil && ctx.Err() == nil {
			e.log.Warn("leadership ended", "replica", e.cfg.replica, "error", err)
		}
		t := time.NewTimer(500 * time.Millisecond)
		select {
		case <-ctx.Done():
		case <-t.C:
		}
		t.Stop()
	}
}

// term is one campaign and, if won, one leadership.
func (e *election) term(ctx context.Context, lead leaderRole) error {
	sess, err := concurrency.NewSession(e.cli, concurrency.WithTTL(int(e.cfg.leaderTTL/time.Second)), concurrency.WithContext(ctx))
	if err != nil {
		return fmt.Errorf("etcd session: %w", err)
	}
	defer sess.Close() // revokes the lease: a replica that stops hands over at once
	el := concurrency.NewElection(sess, electionPrefix(e.store.Prefix()))
	if err := el.Campaign(ctx, e.cfg.replica); err != nil {
		return fmt.Errorf("campaign: %w", err)
	}
	termCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() {
		select {
		case <-sess.Done():
			e.log.Warn("leader lease lost: stopping escalations and sends", "replica", e.cfg.replica)
		case <-termCtx.Done():
		}
		cancel()
	}()
	writer := fmt.Sprintf("leader:%s:%d", e.cfg.replica, el.Rev())
	fenced := e.store.Fenced(el.Key(), el.Rev(), writer)
	g := &sendGate{cli: e.cli, key: el.Key(), rev: el.Rev(), ctx: termCtx}
	gated := make([]notifiers.Notifier, len(e.chans))
	for i, n := range e.chans {
		gated[i] = gatedNotifier{n, g}
	}
	e.setLeading(true)
	e.log.Info("leading", "replica", e.cfg.replica, "lease_ttl", e.cfg.leaderTTL, "election_rev", el.Rev())
	err = lead(termCtx, fenced, writer, gated)
	e.setLeading(false)
	cancel()
	rctx, rcancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Second)
	_ = el.Resign(rctx)
	rcancel()
	return err
}

func (e *election) setLeading(on bool) {
	if e.leading.Swap(on) == on {
		return
	}
	e.m.LeaderChanges.Inc()
	if on {
		e.m.Leader.Set(1)
	} else {
		e.m.Leader.Set(0)
	}
}

// Leading reports whether this replica currently leads.
func (e *election) Leading() bool { return e.leading.Load() }

// sendGate lets a page out only while its leadership still stands, checked
// with a linearizable read of the election key just before the send: a
// leader paused past its lease and resumed sends nothing, even before its
// own session notices the lease is gone. A send already handed to a provider
// when leadership is lost cannot be called back; it is recorded by nobody
// (the fence refuses the record) and the next leader sends the page again
// with the same idempotency key: at most one duplicate per failover.
type sendGate struct {
	cli *clientv3.Client
	key string
	rev int64
	ctx context.Context
}

// errNotLeader refuses a send after leadership was lost.
var errNotLeader = errors.New("not the leader: page left to the current leader")

func (g *sendGate) check(ctx context.Context) error {
	if g.ctx.Err() != nil {
		return errNotLeader
	}
	resp, err := g.cli.Get(ctx, g.key)
	if err != nil {
		return fmt.Errorf("checking leadership: %w", err)
	}
	if len(resp.Kvs) == 0 || resp.Kvs[0].CreateRevision != g.rev {
		return errNotLeader
	}
	return nil
}

// gatedNotifier checks the gate before each send.
type gatedNotifier struct {
	notifiers.Notifier
	gate *sendGate
}

// Notify implements notifiers.Notifier.
func (n gatedNotifier) Notify(ctx context.Context, p notifiers.Page) (notifiers.Receipt, error) {
	if err := n.gate.check(ctx); err != nil {
		return notifiers.Receipt{}, notifiers.Temporary("leadership", 0, err)
	}
	return n.Notifier.Notify(ctx, p)
}

// leaderInfo is what `klaxon status` shows of the cluster.
type leaderInfo struct {
	Store      string   `json:"store"`
	Replica    string   `json:"replica"`
	Leading    bool     `json:"leading"`
	Leader     string   `json:"leader,omitempty"`
	LeaseTTL   string   `json:"leaseTTL,omitempty"`
	LeaseLeft  string   `json:"leaseRemaining,omitempty"`
	Candidates []string `json:"replicas,omitempty"`
	// When the election cannot be read: why, and when it last was (Leader
	// and Candidates are as read then).
	ElectionError  string    `json:"electionError,omitempty"`
	ElectionReadAt time.Time `json:"electionReadAt,omitzero"`
	// Etcd is the replica's own knowledge of etcd's members.
	Etcd *etcdView `json:"etcd,omitempty"`
}

// info reads the election: every candidate, oldest first (the leader).
func (e *election) info(ctx context.Context) (leaderInfo, error) {
	out := leaderInfo{Store: "etcd", Replica: e.cfg.replica, Leading: e.Leading(), LeaseTTL: e.cfg.leaderTTL.String()}
	resp, err := e.cli.Get(ctx, electionPrefix(e.store.Prefix()), clientv3.WithPrefix(),
		clientv3.WithSort(clientv3.SortByCreateRevision, clientv3.SortAscend))
	if err != nil {
		return out, fmt.Errorf("etcd: %w", err)
	}
	for i, kv := range resp.Kvs {
		out.Candidates = append(out.Candidates, string(kv.Value))
		if i == 0 {
			out.Leader = string(kv.Value)
			if kv.Lease != 0 {
				if ttl, err := e.cli.TimeToLive(ctx, clientv3.LeaseID(kv.Lease)); err == nil {
					out.LeaseLeft = (time.Duration(ttl.TTL) * time.Second).String()
				}
			}
		}
	}
	return out, nil
}

// runAll runs fns until they all return.
func runAll(fns ...func()) {
	var wg sync.WaitGroup
	for _, f := range fns {
		wg.Go(f)
	}
	wg.Wait()
}

// errNotLeading refuses a write of the leader's own records on a replica
// that does not lead (or no longer does).
var errNotLeading = errors.New("this replica does not lead: the leader keeps these records")

// leaderState is the state store of the leader's own bookkeeping: the
// self-tests' channel and alarm records and the rota notices. Reads go to the
// store; writes, with etcd, go through the current leader term's fenced store,
// so a leader that was paused past its lease and resumes writes nothing.
// The Watchdog's arrival is recorded wherever the webhook lands, like any
// webhook. With bolt (no election) it is the store itself.
type leaderState struct {
	notifiers.StateStore
	elected bool
	fenced  atomic.Pointer[etcdstore.Store]
}

// PutState implements notifiers.StateStore.
func (s *leaderState) PutState(ctx context.Context, bucket, key string, value []byte) error {
	if !s.elected || (bucket == selftest.StateBucket && key == selftest.WatchdogKey) {
		return s.StateStore.PutState(ctx, bucket, key, value)
	}
	f := s.fenced.Load()
	if f == nil {
		return errNotLeading
	}
	return f.PutState(ctx, bucket, key, value)
}
