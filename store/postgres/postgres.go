// Package postgres is the store for several replicas: leases, workflow jobs,
// deliveries and River's job queue in one PostgreSQL database, on pgx v5 and
// River's riverpgxv5 driver. Any number of crabbox-runner processes may open
// the same database and work its queue at once. The SQL itself is shared
// with store/sqlite (store/internal/sqlstore, store/schema).
//
// What holds when several replicas share the database (transactions are
// PostgreSQL's default READ COMMITTED):
//
//   - A lease read in a transaction (Tx.Lease, Tx.LeaseByRunnerName, and so
//     Transition and UpdateLease) is locked with SELECT … FOR UPDATE until
//     the transaction ends. A second transaction, in this process or another
//     replica, that reads the same lease waits for the first to commit or
//     roll back and then sees what it left: Transition judges its move from
//     that state, so it either makes a move the lifecycle allows from there
//     or returns a *provisioner.TransitionError and changes nothing. No move
//     is ever made from a state the lease has already left.
//   - RecordDelivery and RecordJobEvent insert against a unique key: of any
//     number of concurrent transactions recording the same delivery GUID or
//     (job, attempt, action), exactly one gets true; the others wait for it
//     and get false (or one of them true, should it roll back).
//   - Demand takes a transaction-scoped advisory lock on (class, scope), so
//     balancing one class in one scope runs one transaction at a time across
//     replicas, and each counts the jobs and leases the one before committed.
//   - Tx.Leases and everything outside a transaction lock nothing.
//   - Work is River's: a job is worked by one replica at a time (River fetches
//     with FOR UPDATE SKIP LOCKED), periodic jobs are enqueued by the elected
//     leader only, new work wakes the replicas through LISTEN/NOTIFY, and the
//     work of a replica that died is rescued after WorkConfig.RescueAfter.
//   - Migrations, River's and ours, run under a session advisory lock, so
//     replicas starting together apply each once.
//
// Two transactions that lock the same leases in opposite orders deadlock;
// PostgreSQL then aborts one of them with an error (40P01), which InTx
// returns like any other.
package postgres

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/riverqueue/river"
	"github.com/riverqueue/river/riverdriver/riverpgxv5"

	"github.com/crabbox/crabbox-runner/provisioner"
	"github.com/crabbox/crabbox-runner/store/internal/sqlstore"
)

// migrateLock is the advisory lock key held while migrating ("crabbox" in
// ASCII); advisory locks are per database, so it only meets other
// crabbox-runner processes on the same database.
const migrateLock int64 = 0x63726162626f78

// defaultMaxConns is the pool size unless the URL says pool_max_conns: the
// webhook handler, River's producers, its listener and the workers all draw
// on it, and pgxpool's own default (4, or one per CPU) queues them on a
// small machine.
const defaultMaxConns = 20

// Store is the PostgreSQL implementation of provisioner.Store. The reads come
// from sqlstore.Reader, the SQL shared with SQLite.
type Store struct {
	sqlstore.Reader
	pool *pgxpool.Pool
	now  func() time.Time
	work sqlstore.Queue[pgx.Tx]
}

var _ provisioner.Store = (*Store)(nil)

// Open connects to the database at url (postgres:// or postgresql://, with
// any libpq parameters pgx accepts, pool_max_conns among them) and applies
// River's migrations and crabbox's.
func Open(ctx context.Context, url string) (*Store, error) {
	cfg, err := pgxpool.ParseConfig(url)
	if err != nil {
		// pgx's message quotes the URL with its password masked.
		return nil, fmt.Errorf("postgres: %w", err)
	}
	if !strings.Contains(url, "pool_max_conns") {
		cfg.MaxConns = max(cfg.MaxConns, defaultMaxConns)
	}
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("postgres: %w", err)
	}
	s := &Store{Reader: sqlstore.NewReader(querier{pool}, sqlstore.Postgres), pool: pool, now: time.Now}
	if err := s.migrate(ctx, cfg.ConnConfig); err != nil {
		pool.Close()
		return nil, err
	}
	return s, nil
}

// migrate holds the advisory lock on a connection of its own, outside the
// pool: should anything fail, closing that connection is what releases the
// lock, and no pooled connection is left holding it.
func (s *Store) migrate(ctx context.Context, connCfg *pgx.ConnConfig) error {
	conn, err := pgx.ConnectConfig(ctx, connCfg)
	if err != nil {
		return fmt.Errorf("postgres: connect: %w", err)
	}
	defer conn.Close(context.WithoutCancel(ctx))
	if _, err := conn.Exec(ctx, `SELECT pg_advisory_lock($1)`, migrateLock); err != nil {
		return fmt.Errorf("postgres: migration lock: %w", err)
	}
	return sqlstore.Migrate(ctx, sqlstore.Postgres, riverpgxv5.New(s.pool), func(ctx context.Context, fn func(sqlstore.Querier) error) error {
		return pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error { return fn(querier{tx}) })
	}, s.now())
}

// SetNow replaces the clock, for tests.
func (s *Store) SetNow(now func() time.Time) { s.now = now }

// Pool exposes the connection pool, for tests and tools.
func (s *Store) Pool() *pgxpool.Pool { return s.pool }

// Close closes the pool. Stop the work queue first.
func (s *Store) Close() error {
	s.pool.Close()
	return nil
}

// StartWork creates the River client and, when there are workers, starts
// it: it listens for new work (LISTEN/NOTIFY, polling only as a fallback),
// takes part in leader election for the periodic jobs and rescues work left
// running longer than cfg.RescueAfter, whichever replica started it.
func (s *Store) StartWork(ctx context.Context, cfg provisioner.WorkConfig) error {
	return s.work.Start(ctx, sqlstore.Postgres, riverpgxv5.New(s.pool), sqlstore.RiverConfig(cfg), cfg, nil)
}

// StopWork stops fetching new work and waits for running work to end, or
// for ctx. Jobs it did not finish stay with River, for the next replica.
func (s *Store) StopWork(ctx context.Context) error { return s.work.Stop(ctx) }

// River exposes the River client, for tests and tools.
func (s *Store) River() *river.Client[pgx.Tx] { return s.work.Client() }

// InTx runs fn in one transaction; work it enqueues commits with it.
func (s *Store) InTx(ctx context.Context, fn func(tx provisioner.Tx) error) error {
	pgTx, err := s.pool.Begin(ctx)
	if err != nil {
		return fmt.Errorf("postgres: begin: %w", err)
	}
	defer pgTx.Rollback(ctx) // does nothing once committed
	if err := fn(sqlstore.NewTx(querier{pgTx}, sqlstore.Postgres, s.now, s.work.Enqueuer(pgTx))); err != nil {
		return err
	}
	if err := pgTx.Commit(ctx); err != nil {
		return fmt.Errorf("postgres: commit: %w", err)
	}
	return nil
}

// querier adapts *pgxpool.Pool and pgx.Tx to sqlstore.Querier.
type querier struct {
	q interface {
		Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error)
		Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
		QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
	}
}

func (q querier) Exec(ctx context.Context, query string, args ...any) (int64, error) {
	tag, err := q.q.Exec(ctx, query, args...)
	return tag.RowsAffected(), err
}

func (q querier) Query(ctx context.Context, query string, args ...any) (sqlstore.Rows, error) {
	return q.q.Query(ctx, query, args...)
}

func (q querier) QueryRow(ctx context.Context, query string, args ...any) sqlstore.Row {
	return q.q.QueryRow(ctx, query, args...)
}

// Pipeline sends the queries as one pgx batch: one round trip.
func (q querier) Pipeline(ctx context.Context, queries []sqlstore.Query, scan func(i int, row sqlstore.Row) error) error {
	sender, ok := q.q.(interface {
		SendBatch(ctx context.Context, b *pgx.Batch) pgx.BatchResults
	})
	if !ok {
		return errors.New("postgres: this handle cannot pipeline")
	}
	b := &pgx.Batch{}
	for _, qu := range queries {
		b.Queue(qu.SQL, qu.Args...)
	}
	res := sender.SendBatch(ctx, b)
	for i := range queries {
		if err := scan(i, res.QueryRow()); err != nil {
			res.Close()
			return err
		}
	}
	return res.Close()
}
