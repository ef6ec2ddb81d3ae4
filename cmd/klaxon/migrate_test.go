package main

import (
	"bytes"
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/klaxon-oncall/klaxon/escalation"
	"github.com/klaxon-oncall/klaxon/escalation/boltstore"
	"github.com/klaxon-oncall/klaxon/escalation/etcdstore"
	"github.com/klaxon-oncall/klaxon/escalation/storetest"
	"github.com/klaxon-oncall/klaxon/internal/e2e/harness"
	"github.com/klaxon-oncall/klaxon/notifiers"
)

func jsonOf(t *testing.T, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// TestMigrate copies a bolt store with open, acknowledged and resolved
// incidents, pages in every state, groups and channel state into a real etcd,
// and reads everything back the same through both stores; the copy then goes
// on where the original stopped (duplicates stay duplicates, ids continue).
func TestMigrate(t *testing.T) {
	ctx := context.Background()
	now := time.Date(2026, 11, 26, 23, 33, 0, 0, time.UTC)
	dir := t.TempDir()
	src, err := boltstore.Open(dir, boltstore.Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	for _, g := range []string{"a", "b", "c"} {
		if _, err := escalation.Ingest(ctx, src, storetest.Note(g, "firing"), now, storetest.NoDecide); err != nil {
			t.Fatal(err)
		}
	}
	_, _, err = escalation.Update(ctx, src, 1, func(inc *escalation.Incident, _ []escalation.PageRecord) (escalation.Change, error) {
		inc.Escalation.NextAt = now.Add(time.Minute)
		var ch escalation.Change
		ch.Note(now, escalation.EvStep, "step 1 of 2")
		ch.Pages = []escalation.PageRecord{
			{Channel: "sms", Kind: notifiers.KindPage, Status: escalation.PageSent, Recipient: notifiers.Recipient{PersonID: "alice"}},
			{Channel: "phone", Kind: notifiers.KindPage, Status: escalation.PageTempFail, NextTry: now.Add(time.Second), Recipient: notifiers.Recipient{PersonID: "alice"}},
			{Channel: "sms", Kind: notifiers.KindPage, Status: escalation.PageDeferred, Recipient: notifiers.Recipient{PersonID: "bob"}},
		}
		return ch, nil
	})
	if err != nil {
		t.Fatal(err)
	}
	escalation.Update(ctx, src, 2, func(inc *escalation.Incident, _ []escalation.PageRecord) (escalation.Change, error) {
		inc.State = escalation.Acknowledged
		return escalation.Change{Events: []escalation.Event{{At: now, Kind: escalation.EvAcknowledged, Actor: "alice"}}}, nil
	})
	escalation.Ingest(ctx, src, storetest.Note("c", "resolved"), now, storetest.NoDecide)
	src.PutState(ctx, "matrix", "next_batch", []byte("s42"))
	src.Close()

	etcd := harness.StartEtcd(t, harness.EtcdConfig{Members: 1})
	to := "etcd://" + strings.TrimPrefix(etcd.Endpoints()[0], "http://") + "/migrated/"
	var stdout, stderr bytes.Buffer
	if code := run(ctx, []string{"migrate", "--from", "bolt://" + dir, "--to", to}, nil, &stdout, &stderr); code != 0 {
		t.Fatalf("migrate: exit %d: %s", code, stderr.String())
	}
	if !strings.Contains(stdout.String(), "copied 3 incidents, 3 Alertmanager groups and 1 channel state keys") {
		t.Fatalf("migrate said %q", stdout.String())
	}

	src, err = boltstore.Open(dir, boltstore.Options{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	cli, err := clientv3.New(clientv3.Config{Endpoints: etcd.Endpoints(), DialTimeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	dst := etcdstore.New(cli, etcdstore.Options{Prefix: "/migrated/"})
	same := func(what string, read func(s escalation.Store) (any, error)) {
		t.Helper()
		a, err1 := read(src)
		b, err2 := read(dst)
		if err1 != nil || err2 != nil {
			t.Fatalf("%s: %v / %v", what, err1, err2)
		}
		if ja, jb := jsonOf(t, a), jsonOf(t, b); ja != jb {
			t.Fatalf("%s differs after migrating:\nbolt %s\netcd %s", what, ja, jb)
		}
	}
	same("incidents", func(s escalation.Store) (any, error) { return s.Incidents(ctx, escalation.Filter{}) })
	same("counts", func(s escalation.Store) (any, error) { return s.Counts(ctx) })
	same("schedule", func(s escalation.Store) (any, error) {
		var ds []escalation.Due
		err := s.Schedule(ctx, func(d escalation.Due) error { ds = append(ds, d); return nil })
		return ds, err
	})
	same("state", func(s escalation.Store) (any, error) { return s.GetState(ctx, "matrix", "next_batch") })
	for id := uint64(1); id <= 3; id++ {
		same("timeline", func(s escalation.Store) (any, error) { return s.Timeline(ctx, id) })
		same("pages", func(s escalation.Store) (any, error) { return s.Pages(ctx, id) })
	}
	// The copy carries on: a duplicate is still a duplicate, a stale firing
	// of the resolved group opens nothing, and new ids continue from 4.
	if res, err := escalation.Ingest(ctx, dst, storetest.Note("a", "firing"), now, storetest.NoDecide); err != nil || res.Changed {
		t.Fatalf("duplicate after migrating: %+v %v", res, err)
	}
	if res, err := escalation.Ingest(ctx, dst, storetest.Note("c", "firing"), now, storetest.NoDecide); err != nil || res.Changed {
		t.Fatalf("stale firing after migrating: %+v %v", res, err)
	}
	if res, err := escalation.Ingest(ctx, dst, storetest.Note("d", "firing"), now, storetest.NoDecide); err != nil || res.Incident != 4 {
		t.Fatalf("new group after migrating: %+v %v", res, err)
	}
	// A second copy into the same prefix is refused.
	stderr.Reset()
	if code := run(ctx, []string{"migrate", "--from", "bolt://" + dir, "--to", to}, nil, &stdout, &stderr); code != 1 || !strings.Contains(stderr.String(), "already holds data") {
		t.Fatalf("second migrate: exit %d: %s", code, stderr.String())
	}
	for _, bad := range [][]string{{"--from", dir, "--to", to}, {"--from", "bolt://" + dir, "--to", "http://x"}} {
		stderr.Reset()
		if code := run(ctx, append([]string{"migrate"}, bad...), nil, &stdout, &stderr); code != 2 {
			t.Fatalf("migrate %v: exit %d, want 2 (%s)", bad, code, stderr.String())
		}
	}
}
