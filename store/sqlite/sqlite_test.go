package sqlite_test

import (
	"compress/gzip"
	"context"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/riverqueue/river"

	"github.com/crabbox/crabbox-runner/provisioner"
	"github.com/crabbox/crabbox-runner/store/sqlite"
	"github.com/crabbox/crabbox-runner/store/storetest"
)

func TestStore(t *testing.T) {
	storetest.Run(t, func(t *testing.T) provisioner.Store {
		s, err := sqlite.Open(context.Background(), filepath.Join(t.TempDir(), "test.db"))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.Close() })
		return s
	})
}

func TestMigrationsAreIdempotent(t *testing.T) {
	path := filepath.Join(t.TempDir(), "test.db")
	for i := 0; i < 2; i++ {
		s, err := sqlite.Open(context.Background(), path)
		if err != nil {
			t.Fatalf("open %d: %v", i, err)
		}
		s.Close()
	}
}

// A database created before the schema moved to store/schema (by the code
// of commit c5769d8, see testdata) opens as it is: migration 001 is not run
// again (the later ones are), its data reads back, and events written in one microsecond keep
// their order (by rowid).
func TestOpensDatabaseCreatedByMigration001(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "old.db")
	gunzip(t, "testdata/created-by-001.db.gz", path)
	s, err := sqlite.Open(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	var versions, names string
	if err := s.DB().QueryRow(`SELECT group_concat(version), group_concat(name) FROM crabbox_migration`).Scan(&versions, &names); err != nil {
		t.Fatal(err)
	}
	if versions != "1,2,3,4,5,6" || names != "001_init.up.sql,002_queued_at.up.sql,003_demand.up.sql,004_unservable.up.sql,005_retention.up.sql,006_gpu_gate.up.sql" {
		t.Fatalf("crabbox_migration: %s %s", versions, names)
	}
	l, err := s.Lease(ctx, "legacy1")
	if err != nil || l.State != provisioner.StateIdle || l.PricePerHour != 1.5 || l.RunnerName != "crabbox-old-legacy1" {
		t.Fatalf("lease: %+v %v", l, err)
	}
	events, err := s.LeaseEvents(ctx, "legacy1")
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, e := range events {
		got = append(got, string(e.To))
	}
	if strings.Join(got, " ") != "pending provisioning booting bootstrapping idle" {
		t.Fatalf("events out of order: %v", got)
	}
	j, err := s.Job(ctx, 42, 1)
	if err != nil || len(j.Labels) != 2 || j.Status != provisioner.JobQueued {
		t.Fatalf("job: %+v %v", j, err)
	}
	err = s.InTx(ctx, func(tx provisioner.Tx) error {
		if fresh, err := tx.RecordDelivery(ctx, "guid-legacy", "workflow_job", "queued", time.Now()); fresh || err != nil {
			t.Fatalf("old delivery seen as new: %v %v", fresh, err)
		}
		_, err := tx.Transition(ctx, "legacy1", provisioner.StateBusy, "new code", nil)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
}

// A new database gets exactly the schema the old ones have: the template
// step renders migration 001 for SQLite as it was written before.
func TestNewSchemaIsTheOldSchema(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	gunzip(t, "testdata/created-by-001.db.gz", filepath.Join(dir, "old.db"))
	schema := func(name string) string {
		s, err := sqlite.Open(ctx, filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		var out string
		err = s.DB().QueryRow(`SELECT group_concat(type || ' ' || name || ': ' || sql, char(10)) FROM
			(SELECT * FROM sqlite_master WHERE name LIKE 'crabbox%' AND sql IS NOT NULL ORDER BY name)`).Scan(&out)
		if err != nil {
			t.Fatal(err)
		}
		return strings.Join(strings.Fields(out), " ") // indentation aside
	}
	if old, fresh := schema("old.db"), schema("new.db"); old != fresh {
		t.Fatalf("schema differs:\n--- created by 001\n%s\n--- created now\n%s", old, fresh)
	}
}

func gunzip(t *testing.T, from, to string) {
	t.Helper()
	f, err := os.Open(from)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	zr, err := gzip.NewReader(f)
	if err != nil {
		t.Fatal(err)
	}
	out, err := os.Create(to)
	if err != nil {
		t.Fatal(err)
	}
	defer out.Close()
	if _, err := io.Copy(out, zr); err != nil {
		t.Fatal(err)
	}
}

func TestInMemory(t *testing.T) {
	s, err := sqlite.Open(context.Background(), ":memory:")
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if err := s.Ping(context.Background()); err != nil {
		t.Fatal(err)
	}
}

type noWork struct{ river.WorkerDefaults[noArgs] }
type noArgs struct{}

func (noArgs) Kind() string                                   { return "noop" }
func (noWork) Work(context.Context, *river.Job[noArgs]) error { return nil }

// One process works the queue of a file; a second is refused rather than
// racing the first.
func TestOneWorkerProcessPerFile(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "test.db")
	cfg := func() provisioner.WorkConfig {
		w := river.NewWorkers()
		river.AddWorker(w, &noWork{})
		return provisioner.WorkConfig{Workers: w}
	}
	a, err := sqlite.Open(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	if err := a.StartWork(ctx, cfg()); err != nil {
		t.Fatal(err)
	}
	b, err := sqlite.Open(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	if err := b.StartWork(ctx, cfg()); err == nil || !strings.Contains(err.Error(), "another crabbox-runner serve") {
		t.Fatalf("second worker process: %v", err)
	}
	if err := a.StopWork(ctx); err != nil {
		t.Fatal(err)
	}
	if err := b.StartWork(ctx, cfg()); err != nil {
		t.Fatalf("after the first stopped: %v", err)
	}
	b.StopWork(ctx)
}
