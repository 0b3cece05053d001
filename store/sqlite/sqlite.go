// Package sqlite is the embedded store: leases, workflow jobs, deliveries
// and River's job queue in one SQLite file (modernc.org/sqlite, no cgo).
//
// SQLite allows one writer at a time, so the pool holds a single connection
// (as riversqlite recommends): every transaction, ours and River's, runs in
// turn. That is what makes "record and enqueue in one transaction" atomic
// here without any locking of our own. It also means one serving process per
// file (StartWork takes a lock file); several replicas need store/postgres.
//
// The schema (store/schema) and the SQL (store/internal/sqlstore) are shared
// with store/postgres; this package holds what is SQLite's own: opening the
// file, the transaction, the work queue and its take-over after a crash.
package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"os"
	"syscall"
	"time"

	"github.com/riverqueue/river"
	"github.com/riverqueue/river/riverdriver/riversqlite"

	"github.com/crabbox/crabbox-runner/provisioner"
	"github.com/crabbox/crabbox-runner/store/internal/sqlstore"
)

// Store is the SQLite implementation of provisioner.Store. The reads come
// from sqlstore.Reader, the SQL shared with PostgreSQL.
type Store struct {
	sqlstore.Reader
	db      *sql.DB
	path    string
	now     func() time.Time
	lock    *os.File // held while this process works the queue
	work    sqlstore.Queue[*sql.Tx]
	commits *committer
	wake    *waker  // work announced by Notify
	readDB  *sql.DB // nil for ":memory:"
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
	// cache_size: SQLite's default 2 MB page cache made a burst's larger
	// transactions spill pages to the WAL before their commit; 32 MB holds
	// them (it grows only as pages are used). temp_store: the savepoints of
	// group commit journal the pages they change, and in a temporary file
	// that was a write system call per page.
	for _, p := range []string{"busy_timeout(10000)", "foreign_keys(on)", "synchronous(NORMAL)", "cache_size(-32768)", "temp_store(MEMORY)"} {
		q.Add("_pragma", p)
	}
	if path != ":memory:" {
		q.Add("_pragma", "journal_mode(WAL)")
		if err := restrictFiles(path); err != nil {
			return nil, err
		}
	}
	q.Set("_txlock", "immediate")
	db := sql.OpenDB(connector{dsn: "file:" + path + "?" + q.Encode()})
	db.SetMaxOpenConns(1)
	db.SetMaxIdleConns(1)
	db.SetConnMaxLifetime(0)
	db.SetConnMaxIdleTime(0)
	s := &Store{Reader: sqlstore.NewReader(querier{db}, sqlstore.SQLite), db: db, path: path, now: time.Now,
		commits: newCommitter(db), wake: newWaker()}
	if err := s.migrate(ctx); err != nil {
		s.Close()
		return nil, err
	}
	if path != ":memory:" {
		// Reads outside a transaction (a worker looking at its lease, the
		// listings, the status page) go to connections of their own: in
		// WAL mode readers neither wait for the writer nor hold it up, and
		// each sees everything committed when its read began. A private
		// in-memory database is one connection's, so there reads share it.
		rq := url.Values{}
		for _, p := range []string{"busy_timeout(10000)", "query_only(1)", "cache_size(-8192)", "temp_store(MEMORY)"} {
			rq.Add("_pragma", p)
		}
		s.readDB = sql.OpenDB(connector{dsn: "file:" + path + "?" + rq.Encode()})
		s.readDB.SetMaxOpenConns(readConns)
		s.readDB.SetMaxIdleConns(readConns)
		s.Reader = sqlstore.NewReader(querier{s.readDB}, sqlstore.SQLite)
	}
	return s, nil
}

// readConns is the number of connections that read beside the writer.
const readConns = 4

func (s *Store) migrate(ctx context.Context) error {
	return sqlstore.Migrate(ctx, sqlstore.SQLite, riversqlite.New(s.db), func(ctx context.Context, fn func(sqlstore.Querier) error) error {
		return s.inTx(ctx, func(tx *sql.Tx, _ *endHooks) error { return fn(querier{tx}) })
	}, s.now())
}

// inTx runs fn in an immediate (write-locking) transaction, committed with
// whatever other transactions wait at the time (groupcommit.go).
func (s *Store) inTx(ctx context.Context, fn func(*sql.Tx, *endHooks) error) error {
	return s.commits.inTx(ctx, fn)
}

// SetNow replaces the clock, for tests.
func (s *Store) SetNow(now func() time.Time) { s.now = now }

// DB exposes the database handle, for tests and tools.
func (s *Store) DB() *sql.DB { return s.db }

// Close closes the database. Stop the work queue first.
func (s *Store) Close() error {
	s.commits.close()
	if s.readDB != nil {
		s.readDB.Close()
	}
	return s.db.Close()
}

// StartWork creates and starts the River client with the given workers, or
// an insert-only client when there are none.
func (s *Store) StartWork(ctx context.Context, cfg provisioner.WorkConfig) error {
	rc := sqlstore.RiverConfig(cfg)
	// New work is announced by Notify (wake.go); the cooldown is how soon
	// after one look the next may follow, and so how soon announced work
	// is seen.
	rc.FetchCooldown = min(rc.FetchCooldown, 5*time.Millisecond)
	listenOn := s.readDB
	if listenOn == nil {
		listenOn = s.db
	}
	driver := wakingDriver{Driver: riversqlite.New(s.db), listenOn: listenOn, wake: s.wake}
	return s.work.Start(ctx, sqlstore.SQLite, driver, rc, cfg, func() error {
		return s.takeOver(ctx, rc.Logger)
	})
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
	err := s.work.Stop(ctx)
	if s.lock != nil {
		s.lock.Close() // releases the flock
		s.lock = nil
	}
	return err
}

// Notify makes the work queue look for new work of args's queue at once
// (wake.go). It writes nothing and does not block.
func (s *Store) Notify(_ context.Context, args river.JobArgs) {
	queue := river.QueueDefault
	if o, ok := args.(river.JobArgsWithInsertOpts); ok && o.InsertOpts().Queue != "" {
		queue = o.InsertOpts().Queue
	}
	s.wake.ring(queue)
}

// River exposes the River client, for tests and the demo's waiting.
func (s *Store) River() *river.Client[*sql.Tx] { return s.work.Client() }

// InTx runs fn in one immediate (write-locking) transaction.
func (s *Store) InTx(ctx context.Context, fn func(tx provisioner.Tx) error) error {
	return s.inTx(ctx, func(sqlTx *sql.Tx, hooks *endHooks) error {
		return fn(groupTx{s.tx(sqlTx), s, hooks})
	})
}

func (s *Store) tx(sqlTx *sql.Tx) *sqlstore.Tx {
	return sqlstore.NewTx(querier{sqlTx}, sqlstore.SQLite, s.now, s.work.Enqueuer(sqlTx))
}

// groupTx is a transaction that commits with its group (groupcommit.go),
// and so can leave work for the end of the group.
type groupTx struct {
	*sqlstore.Tx
	s     *Store
	hooks *endHooks
}

// AtGroupEnd implements provisioner.GroupTx.
func (t groupTx) AtGroupEnd(key string, fn func(provisioner.Tx) error, after func(error)) {
	t.hooks.add(key, func(sqlTx *sql.Tx) error { return fn(t.s.tx(sqlTx)) }, after)
}

// querier adapts *sql.DB and *sql.Tx to sqlstore.Querier.
type querier struct {
	q interface {
		ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error)
		QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
		QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
	}
}

func (q querier) Exec(ctx context.Context, query string, args ...any) (int64, error) {
	res, err := q.q.ExecContext(ctx, query, args...)
	if err != nil {
		return 0, err
	}
	return res.RowsAffected()
}

func (q querier) Query(ctx context.Context, query string, args ...any) (sqlstore.Rows, error) {
	rows, err := q.q.QueryContext(ctx, query, args...)
	if err != nil {
		return nil, err
	}
	return sqlRows{rows}, nil
}

func (q querier) QueryRow(ctx context.Context, query string, args ...any) sqlstore.Row {
	return q.q.QueryRowContext(ctx, query, args...)
}

// sqlRows drops Close's error, which Err reports anyway.
type sqlRows struct{ *sql.Rows }

func (r sqlRows) Close() { r.Rows.Close() }
