package sqlite_test

import (
	"context"
	"path/filepath"
	"strings"
	"testing"

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
