package main

import (
	"os"
	"path/filepath"
	"testing"
)

// doctor reports the state key: where it comes from, its length and its
// file's mode; it fails where serve would refuse to start, and never
// prints the key (s.run checks every *KEY* value of the environment).
func TestDoctorStateKey(t *testing.T) {
	const key = "doctor-state-key-0123456789abcdef"
	t.Run("none with SQLite", func(t *testing.T) {
		s := newDoctorSetup(t)
		s.tokenGitHub("repo, admin:org")
		code, out := s.run()
		if code != 0 {
			t.Fatalf("exit %d", code)
		}
		wantCheck(t, out, "OK", "state key", []string{"serve makes one at first start in " + s.dbPath() + ".state-key"}, "")
	})
	t.Run("made by serve then widened", func(t *testing.T) {
		s := newDoctorSetup(t)
		s.tokenGitHub("repo, admin:org")
		os.WriteFile(s.dbPath()+".state-key", []byte(key+"\n"), 0o600)
		_, out := s.run()
		wantCheck(t, out, "OK", "state key", []string{"made by serve, 33 bytes"}, "")
		os.Chmod(s.dbPath()+".state-key", 0o644)
		code, out := s.run()
		if code != 1 {
			t.Fatalf("exit %d", code)
		}
		wantCheck(t, out, "FAIL", "state key", []string{"mode 0644"}, "serve refuses to start")
	})
	t.Run("given by env and by a file", func(t *testing.T) {
		s := newDoctorSetup(t)
		s.tokenGitHub("repo, admin:org")
		s.env["CRABBOX_STATE_KEY"] = key
		_, out := s.run()
		wantCheck(t, out, "OK", "state key", []string{"set, 33 bytes, from CRABBOX_STATE_KEY"}, "")
		delete(s.env, "CRABBOX_STATE_KEY")
		file := filepath.Join(s.dir, "state-key")
		os.WriteFile(file, []byte(key), 0o644)
		s.env["CRABBOX_STATE_KEY_FILE"] = file
		_, out = s.run()
		wantCheck(t, out, "WARN", "state key", []string{"mode 0644"}, "chmod 600 the file")
	})
	t.Run("short", func(t *testing.T) {
		s := newDoctorSetup(t)
		s.tokenGitHub("repo, admin:org")
		s.env["CRABBOX_STATE_KEY"] = "shortkey"
		code, out := s.run()
		if code != 1 {
			t.Fatalf("exit %d", code)
		}
		wantCheck(t, out, "FAIL", "configuration", []string{"state key has 8 bytes"}, "openssl rand -hex 32")
	})
	t.Run("none with PostgreSQL", func(t *testing.T) {
		s := newDoctorSetup(t)
		s.tokenGitHub("repo, admin:org")
		s.env["CRABBOX_DATABASE_URL"] = "postgres://crabbox@127.0.0.1:1/crabbox?connect_timeout=2"
		code, out := s.run()
		if code != 1 {
			t.Fatalf("exit %d", code)
		}
		wantCheck(t, out, "FAIL", "state key", []string{"serve refuses to start on PostgreSQL"}, "same key")
	})
}
