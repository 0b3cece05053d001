package main

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strings"

	"github.com/crabbox/crabbox-runner/internal/config"
)

// checkStateKey reports the key the lease SSH keys are derived from
// (statekey.go): given, made beside a SQLite database, or missing where
// serve refuses to start. Its length and its file's mode, never its value.
// A key shorter than 16 bytes already failed the configuration check.
func (d *doctor) checkStateKey(cfg *config.Config, getenv config.Getenv) {
	const what = "state key"
	const howto = "make one with `openssl rand -hex 32` into a file only serve's user can read (chmod 600), and name it by CRABBOX_STATE_KEY_FILE or state.key_file"
	if len(cfg.StateKey) > 0 {
		// The file is named by the setting that names it: doctor prints
		// no value of a *_KEY* variable, paths included.
		source, file := "CRABBOX_STATE_KEY", ""
		if getenv("CRABBOX_STATE_KEY") == "" {
			if file = getenv("CRABBOX_STATE_KEY_FILE"); file != "" {
				source = "CRABBOX_STATE_KEY_FILE"
			} else {
				file, source = cfg.State.KeyFile, "state.key_file"
			}
		}
		distinct := map[byte]bool{}
		for _, b := range cfg.StateKey {
			distinct[b] = true
		}
		if len(distinct) < 4 {
			d.warn(what, fmt.Sprintf("%d bytes from %s but only %s: easy to guess", len(cfg.StateKey), source,
				plural(len(distinct), "different character", "different characters")), "replace it: "+howto)
			return
		}
		if file != "" {
			// Group-readable is how secret mounts come (Kubernetes'
			// defaultMode 0440 with the pod's fsGroup); readable by anyone
			// is not.
			if st, err := os.Stat(file); err == nil && st.Mode().Perm()&0o007 != 0 {
				d.warn(what, fmt.Sprintf("the file of %s has mode %#o: others on this machine can read the key", source, st.Mode().Perm()),
					"chmod 600 the file named by "+source+" (and if someone may have read it, replace the key: hosts still booting are then replaced)")
				return
			}
		}
		d.ok(what, fmt.Sprintf("set, %d bytes, from %s", len(cfg.StateKey), source))
		return
	}
	path := generatedStateKeyPath(cfg.DatabaseURL)
	switch {
	case strings.HasPrefix(cfg.DatabaseURL, "postgres://"), strings.HasPrefix(cfg.DatabaseURL, "postgresql://"):
		d.fail(what, "not set: serve refuses to start on PostgreSQL without one (every replica must derive the same lease SSH keys)",
			howto+"; give every replica the same key")
	case cfg.DatabaseURL == "sqlite::memory:":
		d.ok(what, "not set: an in-memory database gets a key for the process")
	case path == "":
		d.fail(what, "not set, and serve cannot keep one beside this database", howto)
	default:
		if _, err := os.Stat(path); errors.Is(err, fs.ErrNotExist) {
			d.ok(what, "not set: serve makes one at first start in "+path+" (mode 0600); keep it with the database")
			return
		}
		key, err := readStateKeyFile(path)
		if err != nil {
			d.fail(what, err.Error(), "serve refuses to start with it: follow the advice above, or set CRABBOX_STATE_KEY_FILE")
			return
		}
		d.secrets = append(d.secrets, string(key))
		d.ok(what, fmt.Sprintf("made by serve, %d bytes, in %s (mode 0600); keep it with the database", len(key), path))
	}
}
