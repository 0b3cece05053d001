package postgres_test

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/riverqueue/river"

	"github.com/crabbox/crabbox-runner/provisioner"
	"github.com/crabbox/crabbox-runner/store"
	"github.com/crabbox/crabbox-runner/store/postgres"
	"github.com/crabbox/crabbox-runner/store/postgres/pgtest"
	"github.com/crabbox/crabbox-runner/store/schema"
	"github.com/crabbox/crabbox-runner/store/storetest"
)

func open(t *testing.T, url string) *postgres.Store {
	t.Helper()
	s, err := postgres.Open(context.Background(), url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func TestStore(t *testing.T) {
	storetest.Run(t, func(t *testing.T) provisioner.Store { return open(t, pgtest.NewDatabase(t)) })
}

// store.Open hands both URL schemes to this package.
func TestStoreOpenDispatches(t *testing.T) {
	url := pgtest.NewDatabase(t)
	for _, u := range []string{url, "postgresql" + strings.TrimPrefix(url, "postgres")} {
		s, err := store.Open(context.Background(), u)
		if err != nil {
			t.Fatalf("%s: %v", u, err)
		}
		if _, ok := s.(*postgres.Store); !ok {
			t.Fatalf("%s opened a %T", u, s)
		}
		if err := s.Ping(context.Background()); err != nil {
			t.Fatal(err)
		}
		s.Close()
	}
}

// Replicas starting together migrate one empty database: each migration
// runs once and every replica opens.
func TestStoreConcurrentOpen(t *testing.T) {
	url := pgtest.NewDatabase(t)
	var wg sync.WaitGroup
	errs := make([]error, 4)
	for i := range errs {
		wg.Go(func() {
			s, err := postgres.Open(context.Background(), url)
			if err == nil {
				s.Close()
			}
			errs[i] = err
		})
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("replica %d: %v", i, err)
		}
	}
	s := open(t, url)
	migrations, err := schema.Migrations(schema.Postgres)
	if err != nil {
		t.Fatal(err)
	}
	var n int
	if err := s.Pool().QueryRow(context.Background(), `SELECT count(*) FROM crabbox_migration`).Scan(&n); err != nil || n != len(migrations) {
		t.Fatalf("crabbox_migration rows: %d %v; want one per migration, %d", n, err, len(migrations))
	}
}

func TestStoreBadURL(t *testing.T) {
	_, err := postgres.Open(context.Background(), "postgres://u:secret@127.0.0.1:1/x?connect_timeout=1")
	if err == nil {
		t.Fatal("opened a server that does not exist")
	}
	if strings.Contains(err.Error(), "secret") {
		t.Fatalf("the password is in the error: %v", err)
	}
}

type countArgs struct{ N int }

func (countArgs) Kind() string { return "count" }

// tally counts the runs of each job and the jobs of each replica.
type tally struct {
	mu   sync.Mutex
	runs map[int]int
	by   map[string]int
}

type countWorker struct {
	river.WorkerDefaults[countArgs]
	t       *tally
	replica string
}

func (w *countWorker) Work(_ context.Context, j *river.Job[countArgs]) error {
	w.t.mu.Lock()
	defer w.t.mu.Unlock()
	w.t.runs[j.Args.N]++
	w.t.by[w.replica]++
	return nil
}

// Two replicas work one queue: each job runs exactly once, and new work is
// picked up at once through LISTEN/NOTIFY (the poll interval is far longer
// than the test allows).
func TestStoreTwoReplicasShareWork(t *testing.T) {
	ctx := context.Background()
	url := pgtest.NewDatabase(t)
	tl := &tally{runs: map[int]int{}, by: map[string]int{}}
	var replicas []*postgres.Store
	for _, name := range []string{"a", "b"} {
		s := open(t, url)
		w := river.NewWorkers()
		river.AddWorker(w, &countWorker{t: tl, replica: name})
		err := s.StartWork(ctx, provisioner.WorkConfig{Workers: w, Queues: map[string]int{river.QueueDefault: 4},
			PollInterval: time.Minute, RescueAfter: 10 * time.Minute})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.StopWork(context.Background()) })
		replicas = append(replicas, s)
	}
	const jobs = 200
	for i := range jobs {
		err := replicas[i%2].InTx(ctx, func(tx provisioner.Tx) error { return tx.Enqueue(ctx, countArgs{N: i}, nil) })
		if err != nil {
			t.Fatal(err)
		}
	}
	deadline := time.Now().Add(20 * time.Second)
	for {
		tl.mu.Lock()
		done := len(tl.runs)
		tl.mu.Unlock()
		if done == jobs {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d of %d jobs ran (a replica missed the notification?)", done, jobs)
		}
		time.Sleep(20 * time.Millisecond)
	}
	time.Sleep(200 * time.Millisecond) // time for a second run, were there one
	tl.mu.Lock()
	defer tl.mu.Unlock()
	for n, c := range tl.runs {
		if c != 1 {
			t.Fatalf("job %d ran %d times", n, c)
		}
	}
	t.Logf("jobs per replica: %v", tl.by)
}

// An insert-only client (no workers) enqueues and stops cleanly.
func TestStoreInsertOnly(t *testing.T) {
	ctx := context.Background()
	s := open(t, pgtest.NewDatabase(t))
	if err := s.StartWork(ctx, provisioner.WorkConfig{}); err != nil {
		t.Fatal(err)
	}
	err := s.InTx(ctx, func(tx provisioner.Tx) error { return tx.Enqueue(ctx, countArgs{N: 1}, nil) })
	if err != nil {
		t.Fatal(err)
	}
	var n int
	if err := s.Pool().QueryRow(ctx, `SELECT count(*) FROM river_job WHERE kind = 'count'`).Scan(&n); err != nil || n != 1 {
		t.Fatalf("river_job rows: %d %v", n, err)
	}
	if err := s.StopWork(ctx); err != nil {
		t.Fatal(err)
	}
}
