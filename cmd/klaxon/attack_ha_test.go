package main

import (
	"context"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"github.com/klaxon-oncall/klaxon/escalation/etcdstore"
	"github.com/klaxon-oncall/klaxon/internal/e2e/harness"
	"github.com/klaxon-oncall/klaxon/internal/web"
)

// TestAttackHASecretsAndRevocation runs two replicas on a real 3-member
// etcd and attacks what they share:
//   - whoever can read the etcd prefix must not be able to forge links or
//     sessions: a clear web key an earlier version left there stops
//     working, and no value under the prefix signs a link that opens;
//   - a token created on one replica works on the other, and its revoke on
//     the other takes effect on the first at once; a session made on one
//     replica ends everywhere when signed out on the other.
func TestAttackHASecretsAndRevocation(t *testing.T) {
	c := harness.StartEtcd(t, harness.EtcdConfig{Members: 3})
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cli, err := clientv3.New(clientv3.Config{Endpoints: c.Endpoints(), DialTimeout: 5 * time.Second, Logger: zap.NewNop()})
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	const prefix = "/klaxon-access/"
	// What an earlier version stored: the signing key in clear.
	clearKey := []byte("0123456789abcdef0123456789abcdef")
	if err := etcdstore.New(cli, etcdstore.Options{Prefix: prefix}).PutState(ctx, "meta", "web-key", clearKey); err != nil {
		t.Fatal(err)
	}
	args := func(name string) []string {
		return []string{"--store", "etcd", "--etcd-endpoints", strings.Join(c.Endpoints(), ","), "--etcd-prefix", prefix,
			"--leader-ttl", "2s", "--replica-name", name}
	}
	a := startKlaxon(t, "", args("a"), nil)
	b := startKlaxon(t, "", args("b"), nil)
	id := a.webhook(t, "g1", "")

	forged := func(key []byte) int {
		link := web.NewSigner(key).LinkToken(id+"-1", "alice", time.Now().Add(time.Hour))
		return send(t, newReq(t, "GET", b.base+"/l/"+link, nil))
	}
	if code := forged(clearKey); code != http.StatusForbidden {
		t.Fatalf("a link signed with the clear key once kept in etcd: %d, want 403", code)
	}
	resp, err := cli.Get(ctx, prefix, clientv3.WithPrefix())
	if err != nil {
		t.Fatal(err)
	}
	for _, kv := range resp.Kvs {
		if len(kv.Value) >= 16 && forged(kv.Value) != http.StatusForbidden {
			t.Fatalf("the value of %q in etcd signs links", kv.Key)
		}
		if strings.HasSuffix(string(kv.Key), "web-key") {
			t.Errorf("the clear key is still in etcd under %q", kv.Key)
		}
	}

	// One set of tokens and sessions for both replicas.
	code, out := a.tokenCLI(t, "create", "--person", "alice")
	if code != 0 {
		t.Fatalf("create on a: %d %s", code, out)
	}
	alice := strings.Fields(out)[0]
	if code := send(t, bearer(newReq(t, "GET", b.base+"/api/v1/incidents", nil), alice)); code != 200 {
		t.Fatalf("a token created on a, on b: %d", code)
	}
	session := signIn(t, a.base, alice)
	csrf := formCSRF(t, cookieReq(newReq(t, "GET", b.base+"/", nil), session)) // a's session opens b
	if resp, _ := do(t, cookieReq(formPost(t, b.base+"/signout", url.Values{"csrf": {csrf}}), session)); resp.StatusCode != 303 {
		t.Fatalf("sign-out on b: %d", resp.StatusCode)
	}
	if code := send(t, cookieReq(newReq(t, "GET", a.base+"/", nil), session)); code != 303 {
		t.Fatalf("signed out on b, the session still opens a: %d", code)
	}
	session = signIn(t, b.base, alice)
	if code, out := b.tokenCLI(t, "revoke", b.tokenID(t, "alice")); code != 0 {
		t.Fatalf("revoke on b: %d %s", code, out)
	}
	if code := send(t, bearer(newReq(t, "GET", a.base+"/api/v1/incidents", nil), alice)); code != 401 {
		t.Fatalf("revoked on b, the token still works on a: %d", code)
	}
	if code := send(t, cookieReq(newReq(t, "GET", a.base+"/", nil), session)); code != 303 {
		t.Fatalf("revoked on b, its session still opens a: %d", code)
	}
	for _, k := range []*klaxonUnderTest{a, b} {
		if strings.Contains(k.logs.String(), alice) || strings.Contains(k.logs.String(), session) {
			t.Fatal("a secret is in a replica's log")
		}
	}
}
