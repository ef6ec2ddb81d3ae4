package etcdstore

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/klaxon-oncall/klaxon/escalation"
)

// ErrNotEmpty is returned by Importer when the prefix already holds data.
var ErrNotEmpty = errors.New("the etcd prefix already holds data: migrate only into an empty prefix")

// Importer writes another store's export (escalation.Exporter) under the
// store's prefix, one transaction per incident, so that a copied store reads
// exactly like the original.
type Importer struct {
	s   *Store
	ctx context.Context
	// Incidents, Groups and States count what was copied.
	Incidents, Groups, States int
}

// Importer returns an importer into s; it refuses a prefix that holds any key.
func (s *Store) Importer(ctx context.Context) (*Importer, error) {
	resp, err := s.cli.Get(ctx, s.prefix, clientv3.WithPrefix(), clientv3.WithCountOnly())
	if err != nil {
		return nil, fmt.Errorf("etcd: %w", err)
	}
	if resp.Count > 0 {
		return nil, fmt.Errorf("%s: %w (%d keys)", s.prefix, ErrNotEmpty, resp.Count)
	}
	return &Importer{s: s, ctx: ctx}, nil
}

func (im *Importer) put(ops ...clientv3.Op) error {
	ok, err := im.s.commit(im.ctx, nil, ops)
	if err == nil && !ok {
		err = errors.New("etcd: import not committed")
	}
	return err
}

// Sequence implements escalation.Exporter.
func (im *Importer) Sequence(n uint64) error {
	return im.put(clientv3.OpPut(im.s.kSeq(), string(be64(n))))
}

// Incident implements escalation.Exporter.
func (im *Importer) Incident(inc escalation.Incident, timeline []escalation.Event, pages []escalation.PageRecord) error {
	ops, err := im.s.saveIncident(&inc)
	if err != nil {
		return err
	}
	// The timeline keeps its entries one per key, as they were written.
	for i, e := range timeline {
		data, err := json.Marshal([]escalation.Event{e})
		if err != nil {
			return err
		}
		ops = append(ops, clientv3.OpPut(im.s.kTL(inc.ID, i+1), string(data)))
	}
	b := make([]byte, 4)
	binary.BigEndian.PutUint32(b, uint32(len(timeline)))
	ops = append(ops, clientv3.OpPut(im.s.kTLSeq(inc.ID), string(b)))
	for i := range pages {
		p := &pages[i]
		data, err := json.Marshal(p)
		if err != nil {
			return err
		}
		ops = append(ops, clientv3.OpPut(im.s.kPage(inc.ID, p.Seq), string(data)))
		if !p.Status.Done() {
			ops = append(ops, clientv3.OpPut(im.s.kPend(inc.ID, p.Seq), im.s.pendValue(p)))
		}
	}
	// etcd caps operations per transaction (--max-txn-ops, 128 by default):
	// a long history goes in several.
	for len(ops) > 0 {
		n := min(len(ops), 100)
		if err := im.put(ops[:n]...); err != nil {
			return fmt.Errorf("incident %d: %w", inc.ID, err)
		}
		ops = ops[n:]
	}
	im.Incidents++
	return nil
}

// Group implements escalation.Exporter.
func (im *Importer) Group(key string, g escalation.Group) error {
	op, err := putJSON(im.s.kGroup(key), &g)
	if err != nil {
		return err
	}
	im.Groups++
	return im.put(op)
}

// State implements escalation.Exporter.
func (im *Importer) State(bucket, key string, value []byte) error {
	im.States++
	return im.put(clientv3.OpPut(im.s.kState(bucket, key), string(value)),
		clientv3.OpPut(im.s.kStateTime(bucket, key), string(be64(uint64(time.Now().UnixNano())))))
}
