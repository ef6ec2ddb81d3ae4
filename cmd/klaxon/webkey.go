package main

import (
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/klaxon-oncall/klaxon/escalation"
	"github.com/klaxon-oncall/klaxon/internal/web"
)

// The web signing key's state keys: the sealed key a shared store holds,
// and the clear key earlier versions kept there (removed on sight).
const (
	webKeyBucket   = "meta"
	webKeySealed   = "web-key-sealed"
	webKeyClearOld = "web-key"
	webKeyFileEnv  = "KLAXON_WEB_KEY_FILE"
)

// readWebKeyFile reads the signing key from a secret file: at least 32
// bytes (leading and trailing white space dropped), readable by the owner only.
func readWebKeyFile(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", webKeyFileEnv, err)
	}
	defer f.Close()
	if fi, err := f.Stat(); err == nil && fi.Mode().Perm()&0o077 != 0 {
		return nil, fmt.Errorf("%s %s is readable by others (mode %s): chmod 600 it", webKeyFileEnv, path, fi.Mode().Perm())
	}
	b, err := io.ReadAll(io.LimitReader(f, 4096))
	if err != nil {
		return nil, fmt.Errorf("%s: %w", webKeyFileEnv, err)
	}
	key := []byte(strings.TrimSpace(string(b)))
	if len(key) < 32 {
		return nil, fmt.Errorf("%s %s holds %d bytes, want at least 32 random ones (e.g. head -c 32 /dev/urandom | base64)", webKeyFileEnv, path, len(key))
	}
	return key, nil
}

// sealKey is the AES-256-GCM key a shared store's web key is sealed under:
// derived from the admin API token, which every replica of a shared store
// must be given from a secret (KLAXON_API_TOKEN(_FILE)). Reading the store
// gives only the sealed key: nobody can forge links or sessions with it.
func sealKey(apiToken string) []byte {
	m := hmac.New(sha256.New, []byte(apiToken))
	m.Write([]byte("klaxon web signing key seal"))
	return m.Sum(nil)
}

func sealWebKey(apiToken string, key []byte) ([]byte, error) {
	block, _ := aes.NewCipher(sealKey(apiToken))
	gcm, err := cipher.NewGCM(block)
	if err != nil {
		return nil, err
	}
	nonce := make([]byte, gcm.NonceSize())
	if _, err := rand.Read(nonce); err != nil {
		return nil, err
	}
	return gcm.Seal(nonce, nonce, key, []byte(webKeySealed)), nil
}

func openWebKey(apiToken string, sealed []byte) ([]byte, error) {
	block, _ := aes.NewCipher(sealKey(apiToken))
	gcm, err := cipher.NewGCM(block)
	if err != nil {
		return nil, err
	}
	if len(sealed) < gcm.NonceSize() {
		return nil, errors.New("the sealed web signing key in the store is malformed")
	}
	key, err := gcm.Open(nil, sealed[:gcm.NonceSize()], sealed[gcm.NonceSize():], []byte(webKeySealed))
	if err != nil {
		return nil, errors.New("the web signing key in the store is sealed under another admin API token: every replica needs the same KLAXON_API_TOKEN(_FILE)")
	}
	return key, nil
}

// sharedWebKey is the signing key of replicas sharing a store: from
// KLAXON_WEB_KEY_FILE when set; otherwise one random key the first replica
// creates, kept in the store sealed under the admin API token. A clear key
// left in the store by an earlier version is deleted: whoever could read
// the store could forge with it, so links and sessions signed with it end.
func sharedWebKey(ctx context.Context, keyFile, apiToken string, store escalation.Store) ([]byte, error) {
	if old, err := store.GetState(ctx, webKeyBucket, webKeyClearOld); err != nil {
		return nil, fmt.Errorf("the web signing key: %w", err)
	} else if old != nil {
		if err := store.PutState(ctx, webKeyBucket, webKeyClearOld, nil); err != nil {
			return nil, fmt.Errorf("removing the clear web signing key from the store: %w", err)
		}
	}
	if keyFile != "" {
		return readWebKeyFile(keyFile)
	}
	if apiToken == "" {
		return nil, fmt.Errorf("a shared store needs %s, or the admin API token to seal the web signing key under", webKeyFileEnv)
	}
	c, ok := store.(escalation.StateCreator)
	if !ok {
		return nil, errors.New("the store cannot create the web signing key atomically")
	}
	fresh := make([]byte, 32)
	if _, err := rand.Read(fresh); err != nil {
		return nil, err
	}
	sealed, err := sealWebKey(apiToken, fresh)
	if err != nil {
		return nil, err
	}
	got, err := c.CreateState(ctx, webKeyBucket, webKeySealed, sealed)
	if err != nil {
		return nil, fmt.Errorf("the web signing key: %w", err)
	}
	return openWebKey(apiToken, got)
}

// localWebKey is the signing key with a store of one's own: from
// KLAXON_WEB_KEY_FILE when set, else DATA/web.key (created the first time).
func localWebKey(keyFile, dataDir string) ([]byte, error) {
	if keyFile != "" {
		return readWebKeyFile(keyFile)
	}
	return web.LoadKey(dataDir)
}
