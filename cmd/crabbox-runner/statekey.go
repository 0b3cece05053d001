package main

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/crabbox/crabbox-runner/internal/config"
)

// The state key is the one secret every lease's SSH keys come from
// (provisioner.Config.KeySecret). It is a secret of its own: the webhook
// secret, which a GitHub App's settings page and every redelivery tool
// know, plays no part, and neither does anything public (the lease id is
// in every runner name).

// leaseKeySecret derives the provisioner's KeySecret from the state key by
// a one-way function with a label of its own, so the key itself is never
// what signs anything, and a later use of the state key for something else
// gets an unrelated secret.
func leaseKeySecret(stateKey []byte) []byte {
	if len(stateKey) == 0 {
		return nil
	}
	m := hmac.New(sha256.New, stateKey)
	m.Write([]byte("crabbox-runner lease key secret v2"))
	return m.Sum(nil)
}

// stateKeyFileMode is the only mode a generated state key file may have:
// a key others could read may be known, and a known key is no secret.
const stateKeyFileMode = 0o600

// generatedStateKeyPath is where serve keeps the state key it made for a
// SQLite database: beside it, so a backup or a move of the database takes
// it along and a restart finds it. "" for stores that get no such file.
func generatedStateKeyPath(databaseURL string) string {
	path, ok := strings.CutPrefix(databaseURL, "sqlite:")
	if !ok || path == "" || path == ":memory:" || strings.HasPrefix(path, "file:") {
		return ""
	}
	return path + ".state-key"
}

// ensureStateKey fills cfg.StateKey when none was configured, and returns a
// line for the log when it made one. SQLite: the key file beside the
// database, made at first start. An in-memory database: a random key for
// this process (nothing outlives it anyway). PostgreSQL: refused, since
// replicas that each made their own key could not reach one another's
// hosts.
func ensureStateKey(cfg *config.Config) (note string, err error) {
	if len(cfg.StateKey) > 0 {
		return "", nil
	}
	url := cfg.DatabaseURL
	switch {
	case strings.HasPrefix(url, "postgres://"), strings.HasPrefix(url, "postgresql://"):
		return "", errors.New("config: state.key_file: a state key is required with PostgreSQL: every replica must derive the same lease SSH keys, " +
			"so none may make its own. Make one with: openssl rand -hex 32, and give the same one to every replica by " +
			"CRABBOX_STATE_KEY, CRABBOX_STATE_KEY_FILE or state.key_file")
	case url == "sqlite::memory:":
		key := make([]byte, 32)
		if _, err := rand.Read(key); err != nil {
			return "", err
		}
		cfg.StateKey = []byte(hex.EncodeToString(key))
		return "in-memory database: a state key made for this process only", nil
	}
	path := generatedStateKeyPath(url)
	if path == "" {
		return "", fmt.Errorf("config: state.key_file: no state key, and none can be kept beside database %q: set CRABBOX_STATE_KEY, CRABBOX_STATE_KEY_FILE or state.key_file "+
			"(make one with: openssl rand -hex 32)", url)
	}
	key, made, err := loadOrMakeStateKey(path)
	if err != nil {
		return "", err
	}
	cfg.StateKey = key
	if made {
		return "made a state key for the lease SSH keys and kept it in " + path + " (mode 0600); keep it with the database: " +
			"without it serve cannot reach the hosts it is bootstrapping", nil
	}
	return "", nil
}

// loadOrMakeStateKey reads the key file at path, or makes it when there is
// none. Two starts at once cannot end up with different keys: the key is
// written to a file of its own and linked into place, which fails when the
// other start linked first, and then the other's key is read.
func loadOrMakeStateKey(path string) (key []byte, made bool, err error) {
	if key, err := readStateKeyFile(path); err == nil || !errors.Is(err, fs.ErrNotExist) {
		return key, false, err
	}
	raw := make([]byte, 32)
	if _, err := rand.Read(raw); err != nil {
		return nil, false, err
	}
	// Hex, so the file can be handed to CRABBOX_STATE_KEY_FILE as it is
	// (e.g. when moving to PostgreSQL) and the key is the same.
	content := []byte(hex.EncodeToString(raw) + "\n")
	tmp, err := os.CreateTemp(filepath.Dir(path), filepath.Base(path)+".new-*") // 0600
	if err != nil {
		return nil, false, fmt.Errorf("state key: %w", err)
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(content); err != nil {
		tmp.Close()
		return nil, false, fmt.Errorf("state key: writing %s: %w", tmp.Name(), err)
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return nil, false, fmt.Errorf("state key: writing %s: %w", tmp.Name(), err)
	}
	if err := tmp.Close(); err != nil {
		return nil, false, fmt.Errorf("state key: writing %s: %w", tmp.Name(), err)
	}
	if err := os.Link(tmp.Name(), path); err != nil {
		if errors.Is(err, fs.ErrExist) {
			key, err := readStateKeyFile(path)
			return key, false, err
		}
		return nil, false, fmt.Errorf("state key: %w", err)
	}
	return []byte(strings.TrimSpace(string(content))), true, nil
}

// readStateKeyFile reads a generated key file, refusing one that others
// may have read (it is not narrowed silently: whoever could read it may
// still hold the key) or that is too short.
func readStateKeyFile(path string) ([]byte, error) {
	st, err := os.Stat(path)
	if err != nil {
		return nil, err
	}
	if !st.Mode().IsRegular() {
		return nil, fmt.Errorf("state key: %s is not a regular file", path)
	}
	if perm := st.Mode().Perm(); perm&^stateKeyFileMode != 0 {
		return nil, fmt.Errorf("state key: %s has mode %#o: others may have read the key. If nobody did, narrow it: chmod 600 %s; "+
			"otherwise delete it (serve makes a new one; hosts still booting are then replaced)", path, perm, path)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("state key: %w", err)
	}
	key := []byte(strings.TrimSpace(string(data)))
	if err := config.CheckStateKey(key); err != nil || len(key) == 0 {
		return nil, fmt.Errorf("state key: %s holds %d bytes, fewer than %d: delete it and serve makes a new one", path, len(key), config.MinStateKeyLen)
	}
	return key, nil
}
