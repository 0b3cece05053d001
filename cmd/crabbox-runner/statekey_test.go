package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/crabbox/crabbox-runner/internal/config"
)

// Starts racing on one new SQLite database end with one key: each makes
// its own in a file of its own, and only the first link into place wins.
func TestStateKeyMadeOnceUnderRace(t *testing.T) {
	db := filepath.Join(t.TempDir(), "serve.db")
	const n = 8
	keys := make([][]byte, n)
	made := make([]bool, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			cfg := &config.Config{DatabaseURL: "sqlite:" + db}
			note, err := ensureStateKey(cfg)
			if err != nil {
				t.Error(err)
			}
			keys[i], made[i] = cfg.StateKey, note != ""
		}()
	}
	wg.Wait()
	nMade := 0
	for i := range n {
		if !bytes.Equal(keys[i], keys[0]) || len(keys[i]) != 64 {
			t.Fatalf("start %d got a different key (%d bytes)", i, len(keys[i]))
		}
		if made[i] {
			nMade++
		}
	}
	if nMade != 1 {
		t.Errorf("%d starts say they made the key, want 1", nMade)
	}
	entries, _ := os.ReadDir(filepath.Dir(db))
	if len(entries) != 1 {
		t.Errorf("left in the directory: %v, want the key file only", entries)
	}
	st, err := os.Stat(db + ".state-key")
	if err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("key file: %v %v", st, err)
	}
}

// A key file others could read is refused, not narrowed: they may hold
// the key. A truncated one is refused too. Neither error shows the key.
func TestStateKeyFileRefusals(t *testing.T) {
	dir := t.TempDir()
	db := filepath.Join(dir, "serve.db")
	key := "0123456789abcdef0123456789abcdef"
	os.WriteFile(db+".state-key", []byte(key+"\n"), 0o644)
	_, err := ensureStateKey(&config.Config{DatabaseURL: "sqlite:" + db})
	if err == nil || !strings.Contains(err.Error(), "0644") || !strings.Contains(err.Error(), "chmod 600") || strings.Contains(err.Error(), key) {
		t.Errorf("0644 key file: %v", err)
	}
	os.Chmod(db+".state-key", 0o600)
	cfg := &config.Config{DatabaseURL: "sqlite:" + db}
	if _, err := ensureStateKey(cfg); err != nil || string(cfg.StateKey) != key {
		t.Errorf("0600 key file: %v", err)
	}
	os.WriteFile(db+".state-key", []byte("short\n"), 0o600)
	if _, err := ensureStateKey(&config.Config{DatabaseURL: "sqlite:" + db}); err == nil || strings.Contains(err.Error(), "short") {
		t.Errorf("short key file: %v", err)
	}

	// A given key wins and nothing is written; :memory: gets a key of its
	// own each time.
	other := filepath.Join(dir, "other.db")
	cfg = &config.Config{DatabaseURL: "sqlite:" + other, StateKey: []byte(key)}
	if _, err := ensureStateKey(cfg); err != nil || string(cfg.StateKey) != key {
		t.Errorf("given key: %v", err)
	}
	if _, err := os.Stat(other + ".state-key"); err == nil {
		t.Error("a key file was made though a key was given")
	}
	a, b := &config.Config{DatabaseURL: "sqlite::memory:"}, &config.Config{DatabaseURL: "sqlite::memory:"}
	ensureStateKey(a)
	ensureStateKey(b)
	if len(a.StateKey) < config.MinStateKeyLen || bytes.Equal(a.StateKey, b.StateKey) {
		t.Error("in-memory databases: no key, or the same one twice")
	}
}

// The lease key secret depends on the state key only, through a label of
// its own: not the key itself, and not what the webhook secret gave.
func TestLeaseKeySecretFromStateKeyOnly(t *testing.T) {
	k1, k2 := leaseKeySecret([]byte("state-key-one-0123456789")), leaseKeySecret([]byte("state-key-two-0123456789"))
	if len(k1) != 32 || bytes.Equal(k1, k2) || bytes.Contains(k1, []byte("state-key")) {
		t.Fatal("lease key secrets do not follow the state key")
	}
	if leaseKeySecret(nil) != nil {
		t.Fatal("no state key gave a lease key secret")
	}
}
