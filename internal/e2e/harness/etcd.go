package harness

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/klaxon-oncall/klaxon/internal/testtools"
)

// EtcdTool is the package path of the etcd v3.7 server declared as a tool in
// tools/etcd/go.mod.
const EtcdTool = "klaxon-tools/etcd"

// etcdStartAttempts is how often StartEtcd picks new ports when another process
// took a free port before etcd could bind it.
const etcdStartAttempts = 3

// EtcdConfig configures StartEtcd.
type EtcdConfig struct {
	// Members is the cluster size (default 3).
	Members int
	// ReadyTimeout bounds the wait for a healthy cluster (default 60s).
	ReadyTimeout time.Duration
	// TLS, if set, serves clients over https and requires client certificates.
	TLS *EtcdTLS
	// MaxTxnOps is the members' --max-txn-ops (default EtcdMaxTxnOps).
	MaxTxnOps int
}

// EtcdTLS names the PEM files of a cluster that serves clients over TLS.
type EtcdTLS struct {
	CA                    string // signed every certificate
	ServerCert, ServerKey string // the members' (valid for 127.0.0.1)
	ClientCert, ClientKey string // one the harness uses for its health checks
}

// EtcdCluster is a real etcd cluster of subprocesses on 127.0.0.1, each member
// with its own data directory in the test's temporary directory.
type EtcdCluster struct {
	tb      testing.TB
	bin     string
	Members []*EtcdMember
}

// EtcdMember is one etcd process of an EtcdCluster.
type EtcdMember struct {
	Name      string
	ClientURL string
	PeerURL   string
	dir       string
	args      []string
	bin       string
	tls       *EtcdTLS

	mu   sync.Mutex
	cmd  *exec.Cmd
	done chan struct{}
	logs bytes.Buffer
}

// EtcdMaxTxnOps is the --max-txn-ops the test clusters allow (etcd's
// default is 128): the tuning docs/operations/ha-etcd.md advises,
// so the benchmarks measure a cluster set up as documented.
const EtcdMaxTxnOps = 1024

// StartEtcd builds (once per test binary) and starts an etcd cluster and waits
// until every member reports healthy. Members are killed when the test ends and
// their logs printed if it failed.
func StartEtcd(tb testing.TB, cfg EtcdConfig) *EtcdCluster {
	tb.Helper()
	if cfg.Members <= 0 {
		cfg.Members = 3
	}
	if cfg.ReadyTimeout <= 0 {
		cfg.ReadyTimeout = 60 * time.Second
	}
	if cfg.MaxTxnOps <= 0 {
		cfg.MaxTxnOps = EtcdMaxTxnOps
	}
	bin := testtools.Tool(tb, "etcd", EtcdTool)
	var lastErr error
	for attempt := 1; attempt <= etcdStartAttempts; attempt++ {
		c, err := startEtcd(tb, bin, cfg)
		if err == nil {
			return c
		}
		lastErr = err
		c.kill()
	}
	tb.Fatalf("etcd cluster did not start: %v", lastErr)
	return nil
}

func startEtcd(tb testing.TB, bin string, cfg EtcdConfig) (*EtcdCluster, error) {
	c := &EtcdCluster{tb: tb, bin: bin}
	root := tb.TempDir()
	var initial []string
	for i := range cfg.Members {
		scheme := "http://"
		if cfg.TLS != nil {
			scheme = "https://"
		}
		m := &EtcdMember{
			tls:       cfg.TLS,
			Name:      fmt.Sprintf("m%d", i),
			ClientURL: scheme + FreeAddr(tb),
			PeerURL:   "http://" + FreeAddr(tb),
			dir:       filepath.Join(root, fmt.Sprintf("m%d", i)),
			bin:       bin,
		}
		initial = append(initial, m.Name+"="+m.PeerURL)
		c.Members = append(c.Members, m)
	}
	token := fmt.Sprintf("klaxon-test-%d", time.Now().UnixNano())
	for _, m := range c.Members {
		m.args = []string{
			"--name", m.Name, "--data-dir", m.dir,
			"--listen-client-urls", m.ClientURL, "--advertise-client-urls", m.ClientURL,
			"--listen-peer-urls", m.PeerURL, "--initial-advertise-peer-urls", m.PeerURL,
			"--initial-cluster", strings.Join(initial, ","), "--initial-cluster-state", "new",
			"--initial-cluster-token", token, "--log-level", "warn", "--max-txn-ops", strconv.Itoa(cfg.MaxTxnOps),
		}
		if t := cfg.TLS; t != nil {
			m.args = append(m.args, "--cert-file", t.ServerCert, "--key-file", t.ServerKey,
				"--client-cert-auth", "--trusted-ca-file", t.CA)
		}
		if err := m.start(); err != nil {
			return c, err
		}
	}
	tb.Cleanup(func() {
		c.kill()
		if tb.Failed() {
			for _, m := range c.Members {
				tb.Logf("etcd %s log:\n%s", m.Name, m.Logs())
			}
		}
	})
	deadline := time.Now().Add(cfg.ReadyTimeout)
	for _, m := range c.Members {
		if err := m.waitHealthy(deadline); err != nil {
			return c, err
		}
	}
	return c, nil
}

func (c *EtcdCluster) kill() {
	for _, m := range c.Members {
		m.Kill()
	}
}

// Endpoints lists the members' client URLs.
func (c *EtcdCluster) Endpoints() []string {
	out := make([]string, len(c.Members))
	for i, m := range c.Members {
		out[i] = m.ClientURL
	}
	return out
}

// Kill stops every member with SIGKILL.
func (c *EtcdCluster) Kill() { c.kill() }

// Restart starts every stopped member again on its data directory and waits
// until the cluster is healthy.
func (c *EtcdCluster) Restart() {
	c.tb.Helper()
	for _, m := range c.Members {
		if !m.Running() {
			if err := m.start(); err != nil {
				c.tb.Fatal(err)
			}
		}
	}
	deadline := time.Now().Add(60 * time.Second)
	for _, m := range c.Members {
		if err := m.waitHealthy(deadline); err != nil {
			c.tb.Fatal(err)
		}
	}
}

func (m *EtcdMember) start() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	cmd := exec.Command(m.bin, m.args...)
	w := &lockedWriter{mu: &m.mu, w: &m.logs}
	cmd.Stdout, cmd.Stderr = w, w
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("starting etcd %s: %w", m.Name, err)
	}
	done := make(chan struct{})
	m.cmd, m.done = cmd, done
	go func() {
		cmd.Wait()
		close(done)
	}()
	return nil
}

// Running reports whether the member's process is alive.
func (m *EtcdMember) Running() bool {
	m.mu.Lock()
	done := m.done
	m.mu.Unlock()
	if done == nil {
		return false
	}
	select {
	case <-done:
		return false
	default:
		return true
	}
}

// Kill stops the member with SIGKILL, like a crash, and waits for it to exit.
func (m *EtcdMember) Kill() {
	m.mu.Lock()
	cmd, done := m.cmd, m.done
	m.mu.Unlock()
	if cmd == nil {
		return
	}
	_ = cmd.Process.Signal(syscall.SIGKILL)
	<-done
}

// Restart starts a killed member again on its data directory and waits until
// it is healthy (which needs a quorum).
func (m *EtcdMember) Restart(tb testing.TB) {
	tb.Helper()
	if err := m.start(); err != nil {
		tb.Fatal(err)
	}
	if err := m.waitHealthy(time.Now().Add(60 * time.Second)); err != nil {
		tb.Fatal(err)
	}
}

// Logs returns what the member logged so far.
func (m *EtcdMember) Logs() string {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.logs.String()
}

// waitHealthy polls the member's /health (true once it sees a leader and can
// serve a quorum read) until the deadline.
func (m *EtcdMember) waitHealthy(deadline time.Time) error {
	client := &http.Client{Timeout: 2 * time.Second}
	if m.tls != nil {
		tc, err := m.tls.clientConfig()
		if err != nil {
			return err
		}
		client.Transport = &http.Transport{TLSClientConfig: tc}
	}
	var last string
	for time.Now().Before(deadline) {
		m.mu.Lock()
		done := m.done
		m.mu.Unlock()
		select {
		case <-done:
			if strings.Contains(m.Logs(), "address already in use") {
				return fmt.Errorf("etcd %s: port taken", m.Name)
			}
			return fmt.Errorf("etcd %s exited:\n%s", m.Name, m.Logs())
		default:
		}
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, m.ClientURL+"/health", nil)
		resp, err := client.Do(req)
		if err == nil {
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			last = string(b)
			if resp.StatusCode == http.StatusOK && strings.Contains(last, `"health":"true"`) {
				cancel()
				return nil
			}
		} else {
			last = err.Error()
		}
		cancel()
		poll := time.NewTimer(50 * time.Millisecond)
		<-poll.C
	}
	return fmt.Errorf("etcd %s not healthy in time (last: %s)", m.Name, last)
}

// lockedWriter serialises a process's output into a shared buffer.
type lockedWriter struct {
	mu *sync.Mutex
	w  io.Writer
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

// clientConfig is a TLS client configuration with the harness's certificate.
func (t *EtcdTLS) clientConfig() (*tls.Config, error) {
	ca, err := os.ReadFile(t.CA)
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(ca) {
		return nil, fmt.Errorf("%s: no certificate", t.CA)
	}
	cert, err := tls.LoadX509KeyPair(t.ClientCert, t.ClientKey)
	if err != nil {
		return nil, err
	}
	return &tls.Config{RootCAs: pool, Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}, nil
}

// WriteEtcdTLS makes a CA, a server certificate for 127.0.0.1 and two client
// certificates (the harness's, and one for the test to use) in dir.
func WriteEtcdTLS(tb testing.TB, dir string) (*EtcdTLS, [2]string) {
	tb.Helper()
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		tb.Fatal(err)
	}
	caTmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "klaxon test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		tb.Fatal(err)
	}
	caCert, _ := x509.ParseCertificate(caDER)
	write := func(name, typ string, der []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
			tb.Fatal(err)
		}
		return p
	}
	issue := func(name string, serial int64, usage x509.ExtKeyUsage) (string, string) {
		key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			tb.Fatal(err)
		}
		tmpl := &x509.Certificate{SerialNumber: big.NewInt(serial), Subject: pkix.Name{CommonName: name},
			NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
			KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{usage},
			IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)}}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, caCert, &key.PublicKey, caKey)
		if err != nil {
			tb.Fatal(err)
		}
		kder, err := x509.MarshalECPrivateKey(key)
		if err != nil {
			tb.Fatal(err)
		}
		return write(name+".pem", "CERTIFICATE", der), write(name+"-key.pem", "EC PRIVATE KEY", kder)
	}
	t := &EtcdTLS{CA: write("ca.pem", "CERTIFICATE", caDER)}
	t.ServerCert, t.ServerKey = issue("server", 2, x509.ExtKeyUsageServerAuth)
	t.ClientCert, t.ClientKey = issue("harness", 3, x509.ExtKeyUsageClientAuth)
	c, k := issue("client", 4, x509.ExtKeyUsageClientAuth)
	return t, [2]string{c, k}
}
