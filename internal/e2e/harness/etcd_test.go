package harness_test

import (
	"context"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/klaxon-oncall/klaxon/internal/e2e/harness"
)

// TestEtcdClusterSurvivesOneMember starts a real 3-member cluster, writes
// through one member, kills it, and reads the value through the others: the
// write was quorum-committed, and two members still make a quorum.
func TestEtcdClusterSurvivesOneMember(t *testing.T) {
	c := harness.StartEtcd(t, harness.EtcdConfig{})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	first, err := clientv3.New(clientv3.Config{Endpoints: c.Endpoints()[:1], DialTimeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer first.Close()
	if _, err := first.Put(ctx, "k", "v"); err != nil {
		t.Fatal(err)
	}
	c.Members[0].Kill()
	rest, err := clientv3.New(clientv3.Config{Endpoints: c.Endpoints()[1:], DialTimeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer rest.Close()
	resp, err := rest.Get(ctx, "k")
	if err != nil || len(resp.Kvs) != 1 || string(resp.Kvs[0].Value) != "v" {
		t.Fatalf("read after a member died: %v %v", resp, err)
	}
	if _, err := rest.Put(ctx, "k2", "v2"); err != nil {
		t.Fatalf("write with 2 of 3 members: %v", err)
	}
	c.Members[0].Restart(t)
}
