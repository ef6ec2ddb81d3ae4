package main

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"github.com/klaxon-oncall/klaxon/escalation"
	"github.com/klaxon-oncall/klaxon/escalation/etcdstore"
	"github.com/klaxon-oncall/klaxon/escalation/storetest"
	"github.com/klaxon-oncall/klaxon/internal/e2e/harness"
)

// TestEtcdRoleRestrictedToPrefix sets up etcd as docs/operations/ha-etcd.md says for a shared
// cluster (authentication on, a klaxon user whose role may only touch
// /klaxon/) and checks that Klaxon works under its prefix, is refused
// elsewhere, and that a wrong password fails without the password in the error.
func TestEtcdRoleRestrictedToPrefix(t *testing.T) {
	c := harness.StartEtcd(t, harness.EtcdConfig{Members: 1})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	root, err := clientv3.New(clientv3.Config{Endpoints: c.Endpoints(), DialTimeout: 5 * time.Second, Logger: zap.NewNop()})
	if err != nil {
		t.Fatal(err)
	}
	defer root.Close()
	steps := []func() error{
		func() error { _, err := root.UserAdd(ctx, "root", "rootpw-0"); return err },
		func() error { _, err := root.UserGrantRole(ctx, "root", "root"); return err },
		func() error { _, err := root.RoleAdd(ctx, "klaxon"); return err },
		func() error {
			_, err := root.RoleGrantPermission(ctx, "klaxon", "/klaxon/", clientv3.GetPrefixRangeEnd("/klaxon/"), clientv3.PermissionType(clientv3.PermReadWrite))
			return err
		},
		func() error { _, err := root.UserAdd(ctx, "klaxon", secretValue); return err },
		func() error { _, err := root.UserGrantRole(ctx, "klaxon", "klaxon"); return err },
		func() error { _, err := root.AuthEnable(ctx); return err },
	}
	for i, s := range steps {
		if err := s(); err != nil {
			t.Fatalf("etcd auth setup step %d: %v", i, err)
		}
	}
	ec := &etcdConfig{endpoints: strings.Join(c.Endpoints(), ","), prefix: "/klaxon/", username: "klaxon", password: secretValue}
	cli, err := ec.client()
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	st := etcdstore.New(cli, etcdstore.Options{Prefix: "/klaxon/"})
	if _, err := escalation.Ingest(ctx, st, storetest.Note("g", "firing"), time.Now(), storetest.NoDecide); err != nil {
		t.Fatalf("ingest under the role's prefix: %v", err)
	}
	if err := st.Ping(ctx); err != nil {
		t.Fatal(err)
	}
	// The members' status, which /readyz and the read bound rely on, is open to the role.
	h := newEtcdHealth(cli)
	h.check(ctx)
	if why := h.unreachable(); why != "" {
		t.Fatalf("the restricted user cannot ask the members' status: %s %+v", why, h.snapshot().Members)
	}
	other := etcdstore.New(cli, etcdstore.Options{Prefix: "/other-team/"})
	if _, err := escalation.Ingest(ctx, other, storetest.Note("g", "firing"), time.Now(), storetest.NoDecide); err == nil || !strings.Contains(err.Error(), "permission denied") {
		t.Fatalf("ingest outside the role's prefix: %v, want permission denied", err)
	}
	bad := *ec
	bad.password = "wrong-" + secretValue
	bcli, err := bad.client()
	if err == nil {
		defer bcli.Close()
		err = etcdstore.New(bcli, etcdstore.Options{Prefix: "/klaxon/", Timeout: 5 * time.Second}).Ping(ctx)
	}
	if err == nil {
		t.Fatal("a wrong password worked")
	}
	if strings.Contains(err.Error(), secretValue) {
		t.Fatalf("the error shows the password: %v", err)
	}
	if errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("a wrong password only timed out instead of failing: %v", err)
	}
}

// TestEtcdClientCertificates connects to an etcd that serves clients over TLS
// and requires client certificates, with --etcd-ca-file, --etcd-cert-file and
// --etcd-key-file; without a client certificate it is refused.
func TestEtcdClientCertificates(t *testing.T) {
	dir := t.TempDir()
	files, client := harness.WriteEtcdTLS(t, dir)
	c := harness.StartEtcd(t, harness.EtcdConfig{Members: 1, TLS: files})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	ec := &etcdConfig{endpoints: strings.Join(c.Endpoints(), ","), prefix: "/klaxon/", caFile: files.CA, certFile: client[0], keyFile: client[1]}
	cli, err := ec.client()
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	st := etcdstore.New(cli, etcdstore.Options{Prefix: "/klaxon/"})
	if _, err := escalation.Ingest(ctx, st, storetest.Note("g", "firing"), time.Now(), storetest.NoDecide); err != nil {
		t.Fatalf("ingest over TLS with a client certificate: %v", err)
	}
	anon := &etcdConfig{endpoints: ec.endpoints, prefix: "/klaxon/", caFile: files.CA}
	acli, err := anon.client()
	if err != nil {
		t.Fatal(err)
	}
	defer acli.Close()
	if err := etcdstore.New(acli, etcdstore.Options{Prefix: "/klaxon/", Timeout: 3 * time.Second}).Ping(ctx); err == nil {
		t.Fatal("a client without a certificate was served")
	}
	if _, err := (&etcdConfig{endpoints: ec.endpoints, certFile: client[0], keyFile: files.CA}).client(); err == nil {
		t.Fatal("a key file holding no key was accepted")
	}
}
