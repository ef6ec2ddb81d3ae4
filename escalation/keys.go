package escalation

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"strconv"
	"strings"

	"github.com/klaxon-oncall/klaxon/notifiers"
)

// metaBucket and installationKey name where InstallationID keeps its id.
const (
	metaBucket      = "meta"
	installationKey = "installation-id"
)

// InstallationID returns this store's installation id, creating a random one
// the first time. It is stable across restarts of the same store and differs
// between stores, so the idempotency keys built from it (Matrix transaction
// ids, PagerDuty dedup keys) never collide with another installation's — or
// with those of an older data directory the same bot token or routing key
// was used with.
func InstallationID(ctx context.Context, s notifiers.StateStore) (string, error) {
	v, err := s.GetState(ctx, metaBucket, installationKey)
	if err != nil {
		return "", fmt.Errorf("reading the installation id: %w", err)
	}
	if len(v) > 0 {
		return string(v), nil
	}
	b := make([]byte, 4)
	if _, err := rand.Read(b); err != nil {
		return "", err
	}
	id := hex.EncodeToString(b)
	if c, ok := s.(StateCreator); ok {
		// Replicas starting together on an empty store agree on one id.
		v, err := c.CreateState(ctx, metaBucket, installationKey, []byte(id))
		if err != nil {
			return "", fmt.Errorf("storing the installation id: %w", err)
		}
		return string(v), nil
	}
	if err := s.PutState(ctx, metaBucket, installationKey, []byte(id)); err != nil {
		return "", fmt.Errorf("storing the installation id: %w", err)
	}
	return id, nil
}

// StateCreator is a state store that can create a key only if it is absent,
// atomically: what several replicas must agree on (the installation id, the
// web signing key) is created with it.
type StateCreator interface {
	// CreateState stores value under bucket/key unless the key exists and
	// returns what the key holds afterwards (value, or the earlier one).
	CreateState(ctx context.Context, bucket, key string, value []byte) ([]byte, error)
}

// key is incident id's external key: "klaxon-<installation>-<id>".
func (e *Engine) key(id uint64) string {
	if e.cfg.Installation == "" {
		return "klaxon-" + strconv.FormatUint(id, 10)
	}
	return "klaxon-" + e.cfg.Installation + "-" + strconv.FormatUint(id, 10)
}

// IncidentKey is the key the engine gives incident id at its channels
// (PagerDuty's dedup key).
func (e *Engine) IncidentKey(id uint64) string { return e.key(id) }

// parseKey reads an incident key made by this installation, or by a version
// before installation ids ("klaxon-42"). Another installation's key is not ours.
func (e *Engine) parseKey(k string) (uint64, bool) {
	rest, ok := strings.CutPrefix(k, "klaxon-")
	if !ok {
		return 0, false
	}
	if inst, num, found := strings.Cut(rest, "-"); found {
		if inst != e.cfg.Installation {
			return 0, false
		}
		rest = num
	}
	id, err := strconv.ParseUint(rest, 10, 64)
	return id, err == nil && id > 0
}

// externalPageID is the id a channel sees for outbox entry id:
// "<installation>_<incident>-<seq>".
func (e *Engine) externalPageID(id string) string {
	if e.cfg.Installation == "" {
		return id
	}
	return e.cfg.Installation + "_" + id
}

// localPageID maps a page id a channel reports back to the outbox entry's
// id; ids of another installation are not ours.
func (e *Engine) localPageID(ext string) (string, bool) {
	inst, local, found := strings.Cut(ext, "_")
	if !found {
		_, _, ok := ParsePageID(ext)
		return ext, ok
	}
	if inst != e.cfg.Installation {
		return "", false
	}
	_, _, ok := ParsePageID(local)
	return local, ok
}
