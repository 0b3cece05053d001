package sqlite

import (
	"context"
	"database/sql/driver"
	"path/filepath"
	"sync/atomic"
	"testing"

	"modernc.org/sqlite"
)

// A cached statement whose LIMIT is a parameter runs with any limit without
// being compiled again. SQLite consults the authorizer on every compile, so
// its calls count the compiles. The same statement prepared as written is
// compiled again for each new limit: that is what the cache works around,
// and if a later SQLite stops doing it, this test says so.
func TestCachedStatementNotRecompiledForNewLimit(t *testing.T) {
	ctx := context.Background()
	dc, err := connector{dsn: "file:" + filepath.Join(t.TempDir(), "t.db")}.Connect(ctx)
	if err != nil {
		t.Fatal(err)
	}
	c := dc.(*cachingConn)
	defer c.Close()
	if _, err := c.ExecContext(ctx, `CREATE TABLE t (id INTEGER PRIMARY KEY, q TEXT NOT NULL, n INTEGER NOT NULL)`, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := c.ExecContext(ctx, `WITH RECURSIVE s(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM s WHERE i < 50) INSERT INTO t (q, n) SELECT 'a', i FROM s`, nil); err != nil {
		t.Fatal(err)
	}
	var compiles atomic.Int64
	if err := c.innerConn.(sqlite.AuthorizerRegisterer).RegisterAuthorizer(func(sqlite.AuthorizerActionCode, string, string, string, string) sqlite.AuthorizerReturnCode {
		compiles.Add(1)
		return sqlite.AuthorizerOK
	}); err != nil {
		t.Fatal(err)
	}
	// River's fetch has this shape: an UPDATE of the rows a limited
	// sub-select picks.
	const query = `UPDATE t SET n = n + 1 WHERE id IN (SELECT id FROM t WHERE q = ?1 ORDER BY id LIMIT ?2) RETURNING id`
	run := func(st driver.Stmt, limit int64) {
		t.Helper()
		rows, err := st.(driver.StmtQueryContext).QueryContext(ctx, []driver.NamedValue{{Ordinal: 1, Value: "a"}, {Ordinal: 2, Value: limit}})
		if err != nil {
			t.Fatal(err)
		}
		dest := make([]driver.Value, 1)
		got := int64(0)
		for rows.Next(dest) == nil {
			got++
		}
		rows.Close()
		if got != limit {
			t.Fatalf("limit %d updated %d rows", limit, got)
		}
	}
	recompiles := func(st driver.Stmt) int64 {
		run(st, 1) // the first run may compile
		before := compiles.Load()
		for limit := int64(2); limit <= 10; limit++ {
			run(st, limit)
		}
		return compiles.Load() - before
	}

	cs, err := c.statement(ctx, query)
	if err != nil {
		t.Fatal(err)
	}
	if n := recompiles(cs.stmt); n != 0 {
		t.Errorf("the cached statement was compiled again: %d authorizer calls over 9 new limits", n)
	}
	raw, err := c.innerConn.PrepareContext(ctx, query)
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	if n := recompiles(raw); n == 0 {
		t.Errorf("the statement as written was not compiled again for new limits: the rewrite in planOnce may no longer be needed")
	}
}
