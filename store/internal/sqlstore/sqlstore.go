// Package sqlstore is the SQL that store/sqlite and store/postgres share: the
// lease, job and dedupe queries, row scanning, the lifecycle check on every
// change of state, the reads outside a transaction, the schema migrations
// and the River settings. Each store supplies a Querier over its own driver
// (database/sql for SQLite, pgx for PostgreSQL) and a Dialect for the few
// places where the databases differ.
//
// Queries use $1, $2, … placeholders: PostgreSQL's own, and accepted by
// modernc.org/sqlite as numbered parameters.
package sqlstore

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/crabbox/crabbox-runner/provisioner"
	"github.com/crabbox/crabbox-runner/store/schema"
)

// Row is one result row: *sql.Row and pgx.Row both fit.
type Row interface {
	Scan(dest ...any) error
}

// Rows is a result set; pgx.Rows fits, *sql.Rows after wrapping Close.
type Rows interface {
	Next() bool
	Scan(dest ...any) error
	Err() error
	Close()
}

// Querier runs queries on a database handle or in a transaction. A Row's
// Scan must report no row with an error that matches sql.ErrNoRows
// (pgx.ErrNoRows does).
type Querier interface {
	Exec(ctx context.Context, query string, args ...any) (rowsAffected int64, err error)
	Query(ctx context.Context, query string, args ...any) (Rows, error)
	QueryRow(ctx context.Context, query string, args ...any) Row
}

// Query is one statement with its arguments.
type Query struct {
	SQL  string
	Args []any
}

// Pipeliner is a Querier that can send several statements in one round
// trip (PostgreSQL's pipeline, through a pgx batch). They run in order, in
// the transaction at hand; scan is given each one's first row in turn.
type Pipeliner interface {
	Pipeline(ctx context.Context, queries []Query, scan func(i int, row Row) error) error
}

// Dialect holds what differs between the databases, besides the driver.
type Dialect struct {
	// Name prefixes errors ("sqlite: …").
	Name string
	// Schema renders the migrations.
	Schema schema.Dialect
	// LockRow follows a SELECT of one lease inside a transaction. PostgreSQL
	// says FOR UPDATE so that two replicas moving the same lease take turns;
	// SQLite has one writer at a time already.
	LockRow string
	// LockDemand, when set, runs before Demand counts, with the class and
	// scope key as $1 and $2: PostgreSQL takes a transaction advisory lock
	// so that two replicas balancing one class and scope take turns and each
	// counts what the other committed.
	LockDemand string
	// EventOrder breaks ties between lease events of the same microsecond.
	EventOrder string
	// MultiRowInsert makes InsertLeases write many rows per statement: a
	// round trip saved per lease on PostgreSQL. SQLite has no round trips,
	// and a statement of a new length would be compiled anew each time
	// where one row's statement is compiled once.
	MultiRowInsert bool
	// DemandTable says the database keeps the counts of Demand in
	// crabbox_demand (SQLite, by triggers; see store/schema/003_demand.up.sql);
	// without it Demand counts rows.
	DemandTable bool
}

// The two dialects.
var (
	SQLite = &Dialect{
		Name:        "sqlite",
		Schema:      schema.SQLite,
		EventOrder:  "rowid",
		DemandTable: true,
	}
	Postgres = &Dialect{
		Name:           "postgres",
		Schema:         schema.Postgres,
		LockRow:        " FOR UPDATE",
		MultiRowInsert: true,
		LockDemand:     `SELECT pg_advisory_xact_lock(hashtext($1), hashtext($2))`,
		EventOrder:     "seq",
	}
)

func (d *Dialect) errorf(format string, args ...any) error {
	return fmt.Errorf(d.Name+": "+format, args...)
}

// marks returns "$from, $from+1, …" for n placeholders.
func marks(from, n int) string {
	var b strings.Builder
	for i := range n {
		if i > 0 {
			b.WriteString(", ")
		}
		b.WriteByte('$')
		b.WriteString(strconv.Itoa(from + i))
	}
	return b.String()
}

// availableStates lists the lease states that can still take a job, as
// query arguments.
func availableStates() []any {
	var out []any
	for _, s := range provisioner.AllStates {
		if s.Available() {
			out = append(out, string(s))
		}
	}
	return out
}

// Micros is how timestamps are stored: microseconds since the epoch, 0 for
// the zero time.
func Micros(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixMicro()
}

// FromMicros is the inverse of Micros, in UTC.
func FromMicros(v int64) time.Time {
	if v == 0 {
		return time.Time{}
	}
	return time.UnixMicro(v).UTC()
}
