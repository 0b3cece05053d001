package sqlite

import (
	"context"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/crabbox/crabbox-runner/provisioner"
)

// TestDatabaseFilesAre0600: the database and its -wal and -shm files were
// created 0644 (the umask's mode), readable by every user of the machine.
func TestDatabaseFilesAre0600(t *testing.T) {
	old := syscall.Umask(0o022)
	defer syscall.Umask(old)
	dir := t.TempDir()
	path := filepath.Join(dir, "crabbox.db")
	ctx := context.Background()
	s, err := Open(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	// A write, so that the WAL and the shared memory file exist.
	err = s.InTx(ctx, func(tx provisioner.Tx) error {
		_, err := tx.RecordDelivery(ctx, "guid-1", "workflow_job", "queued", time.Now())
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{path, path + "-wal", path + "-shm"} {
		st, err := os.Stat(p)
		if err != nil {
			t.Fatal(err)
		}
		if st.Mode().Perm() != 0o600 {
			t.Errorf("%s: mode %o, want 600", filepath.Base(p), st.Mode().Perm())
		}
	}
}

// TestExistingDatabaseNarrowed: a database made 0644 by an earlier version
// is narrowed to 0600 when opened.
func TestExistingDatabaseNarrowed(t *testing.T) {
	path := filepath.Join(t.TempDir(), "old.db")
	s, err := Open(context.Background(), path)
	if err != nil {
		t.Fatal(err)
	}
	s.Close()
	for _, p := range []string{path, path + "-wal", path + "-shm"} {
		if _, err := os.Stat(p); err == nil {
			if err := os.Chmod(p, 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
	s, err = Open(context.Background(), path)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	for _, p := range []string{path, path + "-wal", path + "-shm"} {
		if st, err := os.Stat(p); err == nil && st.Mode().Perm() != 0o600 {
			t.Errorf("%s: mode %o, want 600", filepath.Base(p), st.Mode().Perm())
		}
	}
}
