// Package sqlite is the embedded store: leases, workflow jobs, deliveries
// and River's job queue in one SQLite file (modernc.org/sqlite, no cgo).
//
// SQLite allows one writer at a time, so the pool holds a single connection
// (as riversqlite recommends): every transaction, ours and River's, runs in
// turn. That is what makes "record and enqueue in one transaction" atomic
// here without any locking of our own.
package sqlite

import (
	"context"
	"database/sql"
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net/url"
	"os"
	"sort"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/riverqueue/river"
	"github.com/riverqueue/river/riverdriver/riversqlite"
	"github.com/riverqueue/river/rivermigrate"
	_ "modernc.org/sqlite" // registers the "sqlite" database/sql driver

	"github.com/crabbox/crabbox-runner/provisioner"
)

//go:embed migrations/*.up.sql
var migrations embed.FS

// Store is the SQLite implementation of provisioner.Store.
type Store struct {
	db   *sql.DB
	path string
	now  func() time.Time
	lock *os.File // held while this process works the queue

	mu    sync.RWMutex
	river *river.Client[*sql.Tx]
}

var _ provisioner.Store = (*Store)(nil)

// Open opens (creating if needed) the database at path and applies the
// crabbox and River migrations. path ":memory:" gives a private in-memory
// database.
func Open(ctx context.Context, path string) (*Store, error) {
	if path == "" {
		return nil, errors.New("sqlite: empty database path")
	}
	q := url.Values{}
	for _, p := range []string{"busy_timeout(10000)", "foreign_keys(on)", "synchronous(NORMAL)"} {
		q.Add("_pragma", p)
	}
	if path != ":memory:" {
		q.Add("_pragma", "journal_mode(WAL)")
	}
	q.Set("_txlock", "immediate")
	db, err := sql.Open("sqlite", "file:"+path+"?"+q.Encode())
	if err != nil {
		return nil, fmt.Errorf("sqlite: open %s: %w", path, err)
	}
	db.SetMaxOpenConns(1)
	db.SetMaxIdleConns(1)
	db.SetConnMaxLifetime(0)
	db.SetConnMaxIdleTime(0)
	s := &Store{db: db, path: path, now: time.Now}
	if err := s.migrate(ctx); err != nil {
		db.Close()
		return nil, err
	}
	return s, nil
}

func (s *Store) migrate(ctx context.Context) error {
	m, err := rivermigrate.New(riversqlite.New(s.db), nil)
	if err != nil {
		return fmt.Errorf("sqlite: river migrator: %w", err)
	}
	if _, err := m.Migrate(ctx, rivermigrate.DirectionUp, nil); err != nil {
		return fmt.Errorf("sqlite: river migrations: %w", err)
	}
	if _, err := s.db.ExecContext(ctx, `CREATE TABLE IF NOT EXISTS crabbox_migration (
		version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at BIGINT NOT NULL)`); err != nil {
		return fmt.Errorf("sqlite: migration table: %w", err)
	}
	names, err := fs.Glob(migrations, "migrations/*.up.sql")
	if err != nil {
		return err
	}
	sort.Strings(names)
	for i, name := range names {
		version := i + 1
		var n int
		if err := s.db.QueryRowContext(ctx, `SELECT count(*) FROM crabbox_migration WHERE version = ?`, version).Scan(&n); err != nil {
			return fmt.Errorf("sqlite: read migrations: %w", err)
		}
		if n > 0 {
			continue
		}
		body, err := migrations.ReadFile(name)
		if err != nil {
			return err
		}
		tx, err := s.db.BeginTx(ctx, nil)
		if err != nil {
			return err
		}
		if _, err := tx.ExecContext(ctx, string(body)); err != nil {
			tx.Rollback()
			return fmt.Errorf("sqlite: migration %s: %w", name, err)
		}
		if _, err := tx.ExecContext(ctx, `INSERT INTO crabbox_migration (version, name, applied_at) VALUES (?, ?, ?)`,
			version, strings.TrimPrefix(name, "migrations/"), s.now().UnixMicro()); err != nil {
			tx.Rollback()
			return err
		}
		if err := tx.Commit(); err != nil {
			return fmt.Errorf("sqlite: migration %s: %w", name, err)
		}
	}
	return nil
}

// SetNow replaces the clock, for tests.
func (s *Store) SetNow(now func() time.Time) { s.now = now }

// DB exposes the database handle, for tests and tools.
func (s *Store) DB() *sql.DB { return s.db }

// Ping checks the database answers a query.
func (s *Store) Ping(ctx context.Context) error {
	var one int
	return s.db.QueryRowContext(ctx, `SELECT 1`).Scan(&one)
}

// Close closes the database. Stop the work queue first.
func (s *Store) Close() error { return s.db.Close() }

// StartWork creates and starts the River client with the given workers, or
// an insert-only client when there are none.
func (s *Store) StartWork(ctx context.Context, cfg provisioner.WorkConfig) error {
	// Without workers the client only inserts: tools and benchmarks that
	// enqueue work for a server to run.
	var queues map[string]river.QueueConfig
	if cfg.Workers != nil {
		queues = map[string]river.QueueConfig{}
		for name, n := range cfg.Queues {
			queues[name] = river.QueueConfig{MaxWorkers: n}
		}
		if len(queues) == 0 {
			queues[river.QueueDefault] = river.QueueConfig{MaxWorkers: 10}
		}
	}
	poll := cfg.PollInterval
	if poll <= 0 {
		poll = time.Second
	}
	rc := &river.Config{
		Queues:            queues,
		Workers:           cfg.Workers,
		PeriodicJobs:      cfg.PeriodicJobs,
		FetchPollInterval: poll,
		FetchCooldown:     min(poll, 100*time.Millisecond),
		Logger:            quietRiverLogger(cfg.Logger),
		PollOnly:          true,            // SQLite has no LISTEN/NOTIFY
		JobTimeout:        2 * time.Minute, // workers that need longer say so
	}
	if cfg.RescueAfter > 0 {
		rc.RescueStuckJobsAfter = cfg.RescueAfter
	}
	client, err := river.NewClient(riversqlite.New(s.db), rc)
	if err != nil {
		return fmt.Errorf("sqlite: work queue: %w", err)
	}
	s.mu.Lock()
	s.river = client
	s.mu.Unlock()
	if cfg.Workers == nil {
		return nil
	}
	if err := s.takeOver(ctx, quietRiverLogger(cfg.Logger)); err != nil {
		return err
	}
	if err := client.Start(ctx); err != nil {
		return fmt.Errorf("sqlite: start work queue: %w", err)
	}
	return nil
}

// takeOver makes this process the only one working the queue of this file,
// then puts back to work every job a previous process left running: with
// one worker process per file, a job still marked running can only be one
// whose process died (SIGKILL, power loss). River's own rescuer would get
// to it only after RescueAfter; this gets to it at once.
func (s *Store) takeOver(ctx context.Context, log *slog.Logger) error {
	if s.path != ":memory:" {
		f, err := os.OpenFile(s.path+".lock", os.O_CREATE|os.O_RDWR, 0o600)
		if err != nil {
			return fmt.Errorf("sqlite: lock file: %w", err)
		}
		if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
			f.Close()
			return fmt.Errorf("sqlite: another crabbox-runner serve works on %s (one per SQLite file; use PostgreSQL for several)", s.path)
		}
		s.lock = f
	}
	res, err := s.db.ExecContext(ctx, `UPDATE river_job SET state = 'available' WHERE state = 'running'`)
	if err != nil {
		return fmt.Errorf("sqlite: rescuing interrupted work: %w", err)
	}
	if n, _ := res.RowsAffected(); n > 0 {
		log.Warn("resuming work interrupted by a previous process", "jobs", n)
	}
	return nil
}

// StopWork stops the River client gracefully.
func (s *Store) StopWork(ctx context.Context) error {
	s.mu.RLock()
	client := s.river
	s.mu.RUnlock()
	if client == nil {
		return nil
	}
	err := client.Stop(ctx)
	if s.lock != nil {
		s.lock.Close() // releases the flock
		s.lock = nil
	}
	return err
}

// River exposes the River client, for tests and the demo's waiting.
func (s *Store) River() *river.Client[*sql.Tx] {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.river
}

// quietRiverLogger keeps River's own info chatter out of serve's logs;
// warnings and errors still come through.
func quietRiverLogger(l *slog.Logger) *slog.Logger {
	if l == nil {
		l = slog.Default()
	}
	return slog.New(levelFilter{l.Handler(), slog.LevelWarn}).With("component", "river")
}

type levelFilter struct {
	slog.Handler
	min slog.Level
}

func (f levelFilter) Enabled(ctx context.Context, l slog.Level) bool {
	return l >= f.min && f.Handler.Enabled(ctx, l)
}
func (f levelFilter) WithAttrs(a []slog.Attr) slog.Handler {
	return levelFilter{f.Handler.WithAttrs(a), f.min}
}
func (f levelFilter) WithGroup(g string) slog.Handler {
	return levelFilter{f.Handler.WithGroup(g), f.min}
}

// InTx runs fn in one immediate (write-locking) transaction.
func (s *Store) InTx(ctx context.Context, fn func(tx provisioner.Tx) error) error {
	sqlTx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("sqlite: begin: %w", err)
	}
	s.mu.RLock()
	client := s.river
	s.mu.RUnlock()
	t := &tx{q: sqlTx, sqlTx: sqlTx, river: client, now: s.now}
	if err := fn(t); err != nil {
		sqlTx.Rollback()
		return err
	}
	if err := sqlTx.Commit(); err != nil {
		return fmt.Errorf("sqlite: commit: %w", err)
	}
	return nil
}

// Lease reads one lease outside a transaction.
func (s *Store) Lease(ctx context.Context, id string) (*provisioner.Lease, error) {
	return getLease(ctx, s.db, "id = ?", id)
}

// Leases lists leases outside a transaction.
func (s *Store) Leases(ctx context.Context, f provisioner.LeaseFilter) ([]*provisioner.Lease, error) {
	return listLeases(ctx, s.db, f)
}

// Job reads one workflow job outside a transaction.
func (s *Store) Job(ctx context.Context, id, runAttempt int64) (*provisioner.Job, error) {
	return getJob(ctx, s.db, id, runAttempt)
}

// LeaseEvents returns a lease's history, oldest first.
func (s *Store) LeaseEvents(ctx context.Context, leaseID string) ([]provisioner.Event, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT lease_id, at, from_state, to_state, reason
		FROM crabbox_lease_event WHERE lease_id = ? ORDER BY at, rowid`, leaseID)
	if err != nil {
		return nil, fmt.Errorf("sqlite: lease events: %w", err)
	}
	defer rows.Close()
	var out []provisioner.Event
	for rows.Next() {
		var e provisioner.Event
		var at int64
		var from, to string
		if err := rows.Scan(&e.LeaseID, &at, &from, &to, &e.Reason); err != nil {
			return nil, err
		}
		e.At, e.From, e.To = fromMicros(at), provisioner.State(from), provisioner.State(to)
		out = append(out, e)
	}
	return out, rows.Err()
}

func micros(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixMicro()
}

func fromMicros(v int64) time.Time {
	if v == 0 {
		return time.Time{}
	}
	return time.UnixMicro(v).UTC()
}
