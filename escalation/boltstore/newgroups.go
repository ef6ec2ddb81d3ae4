package boltstore

import (
	"encoding/binary"
	"encoding/json"
	"fmt"
	"hash/maphash"
	"slices"
	"strings"
	"sync"

	bolt "go.etcd.io/bbolt"

	"github.com/klaxon-oncall/klaxon/escalation"
	"github.com/klaxon-oncall/klaxon/escalation/internal/encode"
)

// A new Alertmanager group's record would say only which incident it opened,
// and writing it under its key costs a page of the groups bucket per new
// group per commit: Alertmanager's keys ({}:{alertname="...", instance="..."})
// come in no order, so each lands on a random page, and a storm of distinct
// groups wrote 2.4 pages per alert instead of 1.3. Instead, the key is
// appended under the new incident's id in bNewGroups (ids only grow, so the
// entries of one commit share a page), and an index in memory, rebuilt on
// open, finds it by the key's hash. A group has a record in bGroups or an
// entry in bNewGroups, never both: the record is written (and the entry
// deleted) once the group has more to remember (its incident resolved in
// Alertmanager or by hand), and Close writes every remaining one, so that a store stopped
// cleanly reads the same to a Klaxon that predates bNewGroups.

// groupFrom is where loadGroup found a group's record: written in bGroups,
// or an entry of bNewGroups under incident id entry; neither when zero.
type groupFrom struct {
	written bool
	entry   uint64
}

// newGroup is an entry of bNewGroups: group key, open on incident id.
type newGroup struct {
	key string
	id  uint64
}

// newGroupIndex finds entries of bNewGroups by a hash of their group key. It
// may hold ids whose entries are gone (a transaction that added one and was
// rolled back, or an entry deleted but not yet removed): readers check the
// bucket. It never lacks a committed entry: ids are added inside the
// transaction that writes them and removed only after the one that deletes
// them committed.
type newGroupIndex struct {
	seed maphash.Seed
	mu   sync.Mutex
	ids  map[uint64][]uint64
}

func newNewGroupIndex() *newGroupIndex {
	return &newGroupIndex{seed: maphash.MakeSeed(), ids: map[uint64][]uint64{}}
}

func (x *newGroupIndex) add(key string, id uint64) {
	h := maphash.String(x.seed, key)
	x.mu.Lock()
	defer x.mu.Unlock()
	if !slices.Contains(x.ids[h], id) {
		x.ids[h] = append(x.ids[h], id)
	}
}

func (x *newGroupIndex) remove(key string, id uint64) {
	h := maphash.String(x.seed, key)
	x.mu.Lock()
	defer x.mu.Unlock()
	ids := slices.DeleteFunc(x.ids[h], func(v uint64) bool { return v == id })
	if len(ids) == 0 {
		delete(x.ids, h)
		return
	}
	x.ids[h] = ids
}

// forget removes entries a committed transaction deleted.
func (x *newGroupIndex) forget(gone []newGroup) {
	for _, e := range gone {
		x.remove(e.key, e.id)
	}
}

func (x *newGroupIndex) candidates(key string) []uint64 {
	h := maphash.String(x.seed, key)
	x.mu.Lock()
	defer x.mu.Unlock()
	return slices.Clone(x.ids[h])
}

// load indexes bNewGroups (on open).
func (x *newGroupIndex) load(tx *bolt.Tx) error {
	return tx.Bucket(bNewGroups).ForEach(func(k, v []byte) error {
		if len(k) != 8 {
			return fmt.Errorf("new group entry %x: key is not an incident id", k)
		}
		x.add(string(v), binary.BigEndian.Uint64(k))
		return nil
	})
}

// loadGroup reads the record of group key, and where it found it.
func (s *Store) loadGroup(tx *bolt.Tx, key string) (escalation.Group, groupFrom, error) {
	var g escalation.Group
	if raw := tx.Bucket(bGroups).Get([]byte(key)); raw != nil {
		if err := json.Unmarshal(raw, &g); err != nil {
			return g, groupFrom{written: true}, fmt.Errorf("group %q: %w", key, err)
		}
		return g, groupFrom{written: true}, nil
	}
	nb := tx.Bucket(bNewGroups)
	for _, id := range s.newGroups.candidates(key) {
		if v := nb.Get(be64(id)); v != nil && string(v) == key {
			return escalation.Group{Open: id}, groupFrom{entry: id}, nil
		}
	}
	return g, groupFrom{}, nil
}

// onlyOpen reports whether g says nothing but which incident is open.
func onlyOpen(g *escalation.Group) bool {
	return g.Open != 0 && len(g.LastEnd) == 0 && len(g.ByHand) == 0
}

// saveGroup writes group key's record g, read from (loadGroup). A group
// without a record that only opened an incident gets an entry in
// bNewGroups; one whose entry says all there is to say is not written; one
// with more to remember gets its record, and its entry goes: appended to
// gone, for the index to forget once the transaction committed.
func (s *Store) saveGroup(tx *wtx, key string, g *escalation.Group, from groupFrom, gone *[]newGroup) error {
	switch {
	case from == groupFrom{} && onlyOpen(g):
		if err := tx.bucket(bNewGroups).Put(be64(g.Open), []byte(key)); err != nil {
			return err
		}
		s.newGroups.add(key, g.Open)
		return nil
	case from.entry != 0 && onlyOpen(g) && g.Open == from.entry:
		return nil
	case from.entry != 0:
		if err := tx.bucket(bNewGroups).Delete(be64(from.entry)); err != nil {
			return err
		}
		*gone = append(*gone, newGroup{key, from.entry})
	}
	return put(tx.bucket(bGroups), []byte(key), g, encode.Group)
}

// writeNewGroups writes the record of every group in bNewGroups, in key
// order, and empties it (Close): one write of each page of the groups
// bucket they land on (100,000 of them: 0.7 s here). The index is left as
// it is: nothing reads it after Close.
func writeNewGroups(tx *bolt.Tx) error {
	var all []newGroup
	err := tx.Bucket(bNewGroups).ForEach(func(k, v []byte) error {
		all = append(all, newGroup{string(v), binary.BigEndian.Uint64(k)})
		return nil
	})
	if err != nil || len(all) == 0 {
		return err
	}
	slices.SortFunc(all, func(a, b newGroup) int { return strings.Compare(a.key, b.key) })
	gb := tx.Bucket(bGroups)
	for _, e := range all {
		if gb.Get([]byte(e.key)) != nil {
			continue // a written record is the whole truth
		}
		if err := put(gb, []byte(e.key), &escalation.Group{Open: e.id}, encode.Group); err != nil {
			return err
		}
	}
	if err := tx.DeleteBucket(bNewGroups); err != nil {
		return err
	}
	_, err = tx.CreateBucket(bNewGroups)
	return err
}
