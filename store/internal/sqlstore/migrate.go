package sqlstore

import (
	"context"
	"time"

	"github.com/riverqueue/river/riverdriver"
	"github.com/riverqueue/river/rivermigrate"

	"github.com/crabbox/crabbox-runner/store/schema"
)

// Migrate applies River's migrations through driver, then every migration
// of store/schema that crabbox_migration does not list yet, recording it
// there, all in the one transaction that inTx runs: a migration half
// applied is never recorded. The table and its
// rows are the same as the SQLite store has always written (version from the
// file name, the file name, applied_at in microseconds), so existing
// databases carry on where they are.
//
// Migrate does not keep two processes from migrating at once; PostgreSQL's
// store holds an advisory lock around it.
func Migrate[TTx any](ctx context.Context, d *Dialect, driver riverdriver.Driver[TTx],
	inTx func(context.Context, func(Querier) error) error, now time.Time) error {
	m, err := rivermigrate.New(driver, nil)
	if err != nil {
		return d.errorf("river migrator: %w", err)
	}
	if _, err := m.Migrate(ctx, rivermigrate.DirectionUp, nil); err != nil {
		return d.errorf("river migrations: %w", err)
	}
	migrations, err := schema.Migrations(d.Schema)
	if err != nil {
		return err
	}
	return inTx(ctx, func(q Querier) error {
		if _, err := q.Exec(ctx, `CREATE TABLE IF NOT EXISTS crabbox_migration (
			version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at BIGINT NOT NULL)`); err != nil {
			return d.errorf("migration table: %w", err)
		}
		applied := map[int]bool{}
		rows, err := q.Query(ctx, `SELECT version FROM crabbox_migration`)
		if err != nil {
			return d.errorf("read migrations: %w", err)
		}
		for rows.Next() {
			var v int
			if err := rows.Scan(&v); err != nil {
				rows.Close()
				return d.errorf("read migrations: %w", err)
			}
			applied[v] = true
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return d.errorf("read migrations: %w", err)
		}
		for _, m := range migrations {
			if applied[m.Version] {
				continue
			}
			// No arguments: both drivers then run the several statements
			// of a file in one call.
			if _, err := q.Exec(ctx, m.SQL); err != nil {
				return d.errorf("migration %s: %w", m.Name, err)
			}
			if _, err := q.Exec(ctx, `INSERT INTO crabbox_migration (version, name, applied_at) VALUES ($1, $2, $3)`,
				m.Version, m.Name, now.UnixMicro()); err != nil {
				return d.errorf("migration %s: %w", m.Name, err)
			}
		}
		return nil
	})
}
