package main

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/klaxon-oncall/klaxon/internal/e2e/harness"
)

func TestParseServeEtcd(t *testing.T) {
	dir := t.TempDir()
	pwFile := filepath.Join(dir, "pw")
	os.WriteFile(pwFile, []byte(secretValue+"\n"), 0o600)
	base := []string{"--store", "etcd", "--etcd-endpoints", "http://127.0.0.1:2379"}
	tlsBase := []string{"--store", "etcd", "--etcd-endpoints", "https://127.0.0.1:2379"}
	tests := []struct {
		name    string
		args    []string
		env     map[string]string
		wantErr string
		check   func(*testing.T, *serveConfig)
	}{
		{name: "defaults", args: base, check: func(t *testing.T, c *serveConfig) {
			if c.etcd.prefix != "/klaxon/" || c.etcd.leaderTTL != 5*time.Second || c.etcd.replica == "" || c.etcd.password != "" {
				t.Errorf("defaults %+v", c.etcd)
			}
		}},
		{name: "from env", env: map[string]string{"KLAXON_STORE": "etcd", "KLAXON_ETCD_ENDPOINTS": "https://a:1,https://b:2",
			"KLAXON_ETCD_PREFIX": "/team-a", "KLAXON_ETCD_USERNAME": "klaxon", "KLAXON_ETCD_PASSWORD": secretValue, "KLAXON_LEADER_TTL": "3s"},
			check: func(t *testing.T, c *serveConfig) {
				if c.store != "etcd" || c.etcd.endpoints != "https://a:1,https://b:2" || c.etcd.prefix != "/team-a/" || c.etcd.username != "klaxon" ||
					c.etcd.password != secretValue || c.etcd.leaderTTL != 3*time.Second {
					t.Errorf("env not applied: %+v", c.etcd)
				}
			}},
		{name: "password file", args: append(tlsBase, "--etcd-username", "klaxon", "--etcd-password-file", pwFile), check: func(t *testing.T, c *serveConfig) {
			if c.etcd.password != secretValue {
				t.Error("password not read from its file")
			}
		}},
		{name: "password file from env", args: append(tlsBase, "--etcd-username", "klaxon"), env: map[string]string{"KLAXON_ETCD_PASSWORD_FILE": pwFile},
			check: func(t *testing.T, c *serveConfig) {
				if c.etcd.password != secretValue {
					t.Error("password not read from KLAXON_ETCD_PASSWORD_FILE")
				}
			}},
		// Credentials over plain http are refused unless the loud opt-in is given.
		{name: "password over http", args: append(base, "--etcd-username", "klaxon"), env: map[string]string{"KLAXON_ETCD_PASSWORD": secretValue},
			wantErr: "would travel in clear to http://127.0.0.1:2379"},
		{name: "password to a bare host", args: []string{"--store", "etcd", "--etcd-endpoints", "https://a:1,b:2", "--etcd-username", "klaxon"},
			env: map[string]string{"KLAXON_ETCD_PASSWORD": secretValue}, wantErr: "in clear to b:2"},
		{name: "password over http, accepted", args: append(base, "--etcd-username", "klaxon", "--etcd-insecure-transport"),
			env: map[string]string{"KLAXON_ETCD_PASSWORD": secretValue}, check: func(t *testing.T, c *serveConfig) {
				if !c.etcd.insecureTransport || c.etcd.password != secretValue {
					t.Errorf("etcd %+v", c.etcd.insecureTransport)
				}
				var logs syncBuffer
				c.etcd.warn(slog.New(slog.NewJSONHandler(&logs, nil)))
				if !strings.Contains(logs.String(), "INSECURE ETCD TRANSPORT") || strings.Contains(logs.String(), secretValue) {
					t.Errorf("the opt-in is not logged loudly, or the log shows the password: %s", logs.String())
				}
			}},
		{name: "no password flag", args: append(base, "--etcd-password", secretValue), wantErr: "flag provided but not defined"},
		{name: "no endpoints", args: []string{"--store", "etcd"}, wantErr: "needs --etcd-endpoints"},
		{name: "password without user", args: base, env: map[string]string{"KLAXON_ETCD_PASSWORD": secretValue}, wantErr: "--etcd-username is not"},
		{name: "password twice", args: append(tlsBase, "--etcd-password-file", pwFile), env: map[string]string{"KLAXON_ETCD_PASSWORD": secretValue}, wantErr: "not both"},
		{name: "missing password file", args: append(tlsBase, "--etcd-password-file", filepath.Join(dir, "nope")), wantErr: "reading"},
		{name: "cert without key", args: append(base, "--etcd-cert-file", pwFile), wantErr: "go together"},
		{name: "ttl too short", args: append(base, "--leader-ttl", "1s"), wantErr: "at least 2s"},
		{name: "ttl not whole seconds", args: append(base, "--leader-ttl", "2500ms"), wantErr: "whole seconds"},
		{name: "unknown store", args: []string{"--store", "mysql"}, wantErr: "want bolt or etcd"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			for _, k := range []string{"KLAXON_STORE", "KLAXON_ETCD_ENDPOINTS", "KLAXON_ETCD_PREFIX", "KLAXON_ETCD_USERNAME", "KLAXON_ETCD_PASSWORD", "KLAXON_ETCD_PASSWORD_FILE", "KLAXON_LEADER_TTL"} {
				t.Setenv(k, "")
				os.Unsetenv(k)
			}
			for k, v := range tc.env {
				t.Setenv(k, v)
			}
			var stderr bytes.Buffer
			c, err := parseServe(tc.args, &stderr)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error()+stderr.String(), tc.wantErr) {
					t.Fatalf("err = %v, want it to mention %q", err, tc.wantErr)
				}
				if strings.Contains(err.Error(), secretValue) {
					t.Fatalf("the error shows the password: %v", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			tc.check(t, c)
		})
	}
}

// TestSendGate shows that a leader's sends stop the moment its election key
// is gone or belongs to another campaign, checked against etcd itself and
// not the leader's own (possibly stale) idea of its lease.
func TestSendGate(t *testing.T) {
	c := harness.StartEtcd(t, harness.EtcdConfig{Members: 1})
	cli, err := clientv3.New(clientv3.Config{Endpoints: c.Endpoints(), DialTimeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	put, err := cli.Put(ctx, "/k/election/a", "a")
	if err != nil {
		t.Fatal(err)
	}
	term, end := context.WithCancel(ctx)
	g := &sendGate{cli: cli, key: "/k/election/a", rev: put.Header.Revision, ctx: term}
	if err := g.check(ctx); err != nil {
		t.Fatalf("leader's gate: %v", err)
	}
	if _, err := cli.Put(ctx, "/k/election/a", "still a"); err != nil { // same key, value changed: still ours
		t.Fatal(err)
	}
	if err := g.check(ctx); err != nil {
		t.Fatalf("gate after a value change: %v", err)
	}
	cli.Delete(ctx, "/k/election/a")
	cli.Put(ctx, "/k/election/a", "b")
	if err := g.check(ctx); !errors.Is(err, errNotLeader) {
		t.Fatalf("gate after the key was recreated by another: %v, want errNotLeader", err)
	}
	g2 := &sendGate{cli: cli, key: "/k/election/a", rev: 0, ctx: term}
	end()
	if err := g2.check(ctx); !errors.Is(err, errNotLeader) {
		t.Fatalf("gate after the term ended: %v, want errNotLeader", err)
	}
}

func TestPrintCluster(t *testing.T) {
	tests := []struct {
		in   leaderInfo
		want []string
	}{
		{leaderInfo{Store: "bolt"}, []string{"store: bolt"}},
		{leaderInfo{Store: "etcd", Replica: "r1", Leader: "r0", LeaseTTL: "5s", LeaseLeft: "4s", Candidates: []string{"r0", "r1", "r2"}},
			[]string{"this replica: r1 (follower)", "leader: r0, lease 5s, 4s left", "replicas: r0, r1, r2"}},
		{leaderInfo{Store: "etcd", Replica: "r0", Leading: true, Leader: "r0"}, []string{"(leader)"}},
		{leaderInfo{Store: "etcd", Replica: "r0"}, []string{"leader: none"}},
	}
	for _, tc := range tests {
		var b bytes.Buffer
		printCluster(io.Writer(&b), tc.in)
		for _, w := range tc.want {
			if !strings.Contains(b.String(), w) {
				t.Errorf("printCluster(%+v) = %q, want it to contain %q", tc.in, b.String(), w)
			}
		}
	}
}
