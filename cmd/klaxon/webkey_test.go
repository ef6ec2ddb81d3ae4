package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/klaxon-oncall/klaxon/escalation/boltstore"
)

// TestSharedWebKey: a shared store holds the web signing key only sealed
// under the admin token (replicas with the same token agree on it, another
// token is told so), or not at all with KLAXON_WEB_KEY_FILE; a clear key
// left by an earlier version is deleted.
func TestSharedWebKey(t *testing.T) {
	ctx := context.Background()
	st, err := boltstore.Open(t.TempDir(), boltstore.Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	clear := bytes.Repeat([]byte("k"), 32)
	if err := st.PutState(ctx, webKeyBucket, webKeyClearOld, clear); err != nil {
		t.Fatal(err)
	}
	k1, err := sharedWebKey(ctx, "", "admin-token-1", st)
	if err != nil {
		t.Fatal(err)
	}
	k2, err := sharedWebKey(ctx, "", "admin-token-1", st)
	if err != nil || !bytes.Equal(k1, k2) || len(k1) != 32 || bytes.Equal(k1, clear) {
		t.Fatalf("second replica: %v, same key %v", err, bytes.Equal(k1, k2))
	}
	if old, _ := st.GetState(ctx, webKeyBucket, webKeyClearOld); old != nil {
		t.Fatal("the clear key is still stored")
	}
	sealed, _ := st.GetState(ctx, webKeyBucket, webKeySealed)
	if bytes.Contains(sealed, k1) {
		t.Fatal("the stored key is not sealed")
	}
	if _, err := sharedWebKey(ctx, "", "admin-token-2", st); err == nil || !strings.Contains(err.Error(), "same KLAXON_API_TOKEN") || strings.Contains(err.Error(), "admin-token") {
		t.Fatalf("another admin token: %v", err)
	}
	dir := t.TempDir()
	good, short, open := filepath.Join(dir, "good"), filepath.Join(dir, "short"), filepath.Join(dir, "open")
	os.WriteFile(good, []byte(strings.Repeat("s", 44)+"\n"), 0o600)
	os.WriteFile(short, []byte("tooshort"), 0o600)
	os.WriteFile(open, []byte(strings.Repeat("s", 44)), 0o644)
	if k, err := sharedWebKey(ctx, good, "", st); err != nil || string(k) != strings.Repeat("s", 44) {
		t.Fatalf("key file: %v", err)
	}
	for _, bad := range []string{short, open, filepath.Join(dir, "none")} {
		if _, err := sharedWebKey(ctx, bad, "", st); err == nil {
			t.Errorf("%s accepted", filepath.Base(bad))
		}
	}
}
