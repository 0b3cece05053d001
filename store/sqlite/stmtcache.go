package sqlite

import (
	"container/list"
	"context"
	"database/sql/driver"
	"errors"
	"regexp"

	"modernc.org/sqlite"
)

// modernc.org/sqlite compiles every query it is handed through ExecContext
// or QueryContext, and database/sql cannot hold prepared statements for us:
// with one connection, a statement prepared outside a transaction would wait
// for the connection the transaction holds. Compiling was a third of the
// time of a webhook delivery (River's insert alone is a long statement), so
// the connection keeps its compiled statements, keyed by their text, as any
// SQLite program would. database/sql serialises the use of one connection,
// so the cache needs no lock of its own.

// SQLite plans a statement whose LIMIT or OFFSET is a bound parameter for
// the value bound when it compiles, and so compiles it again whenever a run
// binds another value (with SQLITE_DBCONFIG_ENABLE_QPSG off, which the
// driver gives no way to set). River's fetch binds the number of workers
// free, different on nearly every fetch: recompiling that long statement
// was 7% of the server's CPU in the burst benchmark, and under -race the
// largest cost of the tests. A unary plus leaves the value as it is and
// keeps SQLite from planning for it, so a compiled statement stays
// compiled.
var limitParam = regexp.MustCompile(`(?i)\b(LIMIT|OFFSET)(\s+)([?$:@])`)

func planOnce(query string) string { return limitParam.ReplaceAllString(query, "$1$2+$3") }

// stmtCacheSize bounds the statements kept per connection: ours are a few
// dozen, River's about as many.
const stmtCacheSize = 256

// connector opens modernc connections wrapped in a statement cache.
type connector struct{ dsn string }

func (c connector) Connect(ctx context.Context) (driver.Conn, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	conn, err := c.Driver().Open(c.dsn)
	if err != nil {
		return nil, err
	}
	inner, ok := conn.(innerConn)
	if !ok {
		conn.Close()
		return nil, errors.New("sqlite: driver connection lacks the context methods")
	}
	return &cachingConn{innerConn: inner, lru: list.New(), byQuery: map[string]*list.Element{}}, nil
}

func (connector) Driver() driver.Driver { return &sqlite.Driver{} }

// innerConn is what database/sql uses of a modernc connection.
type innerConn interface {
	driver.Conn
	driver.ConnBeginTx
	driver.ConnPrepareContext
	driver.ExecerContext
	driver.QueryerContext
	driver.Pinger
	driver.SessionResetter
	driver.Validator
}

type cachedStmt struct {
	query string
	stmt  driver.Stmt
	// busy is set while rows read from the statement are open: running it
	// again then would reset the rows under their reader.
	busy bool
}

type cachingConn struct {
	innerConn
	lru     *list.List // of *cachedStmt, most recent first
	byQuery map[string]*list.Element
}

// statement returns the compiled statement for query, compiling it on first
// use; nil when it is in use by open rows.
func (c *cachingConn) statement(ctx context.Context, query string) (*cachedStmt, error) {
	if e, ok := c.byQuery[query]; ok {
		cs := e.Value.(*cachedStmt)
		if cs.busy {
			return nil, nil
		}
		c.lru.MoveToFront(e)
		return cs, nil
	}
	st, err := c.innerConn.PrepareContext(ctx, planOnce(query))
	if err != nil {
		return nil, err
	}
	cs := &cachedStmt{query: query, stmt: st}
	c.byQuery[query] = c.lru.PushFront(cs)
	for c.lru.Len() > stmtCacheSize {
		old := c.lru.Back()
		ocs := old.Value.(*cachedStmt)
		if ocs.busy {
			break // rare: keep it until its rows close
		}
		c.lru.Remove(old)
		delete(c.byQuery, ocs.query)
		ocs.stmt.Close()
	}
	return cs, nil
}

func (c *cachingConn) ExecContext(ctx context.Context, query string, args []driver.NamedValue) (driver.Result, error) {
	cs, err := c.statement(ctx, query)
	if err != nil || cs == nil {
		// Uncompilable here (several statements in one string are fine for
		// the driver but not for one prepared statement) or busy: let the
		// driver run it as it would.
		return c.innerConn.ExecContext(ctx, query, args)
	}
	return cs.stmt.(driver.StmtExecContext).ExecContext(ctx, args)
}

func (c *cachingConn) QueryContext(ctx context.Context, query string, args []driver.NamedValue) (driver.Rows, error) {
	cs, err := c.statement(ctx, query)
	if err != nil || cs == nil {
		return c.innerConn.QueryContext(ctx, query, args)
	}
	rows, err := cs.stmt.(driver.StmtQueryContext).QueryContext(ctx, args)
	if err != nil {
		return nil, err
	}
	full, ok := rows.(innerRows)
	if !ok {
		rows.Close()
		return nil, errors.New("sqlite: driver rows lack the column type methods")
	}
	cs.busy = true
	return &cachedRows{innerRows: full, cs: cs}, nil
}

func (c *cachingConn) Close() error {
	for e := c.lru.Front(); e != nil; e = e.Next() {
		e.Value.(*cachedStmt).stmt.Close()
	}
	c.lru.Init()
	clear(c.byQuery)
	return c.innerConn.Close()
}

// innerRows is what database/sql may use of modernc's rows.
type innerRows interface {
	driver.Rows
	driver.RowsColumnTypeDatabaseTypeName
	driver.RowsColumnTypeLength
	driver.RowsColumnTypeNullable
	driver.RowsColumnTypePrecisionScale
	driver.RowsColumnTypeScanType
}

// cachedRows frees its statement for the next use when closed.
type cachedRows struct {
	innerRows
	cs *cachedStmt
}

func (r *cachedRows) Close() error {
	err := r.innerRows.Close()
	r.cs.busy = false
	return err
}
