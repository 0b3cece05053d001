// Package schema is crabbox-runner's database schema, written once for
// SQLite and PostgreSQL: the files NNN_name.up.sql, applied in order of NNN
// by store/sqlite and store/postgres (River's own tables come from River's
// migrator).
//
// Most SQL is accepted by both databases as it is (TEXT, BIGINT, INTEGER,
// DOUBLE PRECISION, ON CONFLICT, timestamps as BIGINT microseconds). Where
// the two must differ, a file says {{.Field}} and Dialect holds the text for
// each database, or, for a whole part that only one database has, wraps it
// in {{if eq .Name "sqlite"}} … {{end}}; the files are Go text/template
// templates for that reason only. Keep the differences few and give each a
// comment, here or in the file.
//
// A migration, once released, never changes for SQLite: its version is
// recorded in crabbox_migration and existing databases do not run it again.
// Change the schema with a new file.
package schema

import (
	"bytes"
	"embed"
	"fmt"
	"io/fs"
	"sort"
	"strconv"
	"strings"
	"text/template"
)

//go:embed *.up.sql
var files embed.FS

// Dialect is what the migrations of one database fill their templates with.
type Dialect struct {
	Name string // "sqlite" or "postgres"

	// EventSeqColumn declares the column that orders a lease's events when
	// two share a timestamp. SQLite tables have an implicit rowid for that;
	// PostgreSQL needs an identity column (seq).
	EventSeqColumn string
}

// The two dialects.
var (
	SQLite   = Dialect{Name: "sqlite"}
	Postgres = Dialect{Name: "postgres", EventSeqColumn: "\n    seq        BIGINT GENERATED ALWAYS AS IDENTITY,"}
)

// Migration is one schema change, rendered for a dialect.
type Migration struct {
	Version int    // from the file name's NNN prefix
	Name    string // the file name, as recorded in crabbox_migration
	SQL     string
}

// Migrations returns every migration rendered for d, in version order.
func Migrations(d Dialect) ([]Migration, error) {
	names, err := fs.Glob(files, "*.up.sql")
	if err != nil {
		return nil, err
	}
	sort.Strings(names)
	out := make([]Migration, 0, len(names))
	for _, name := range names {
		prefix, _, _ := strings.Cut(name, "_")
		version, err := strconv.Atoi(prefix)
		if err != nil || version < 1 {
			return nil, fmt.Errorf("schema: %s: the name must start with a version, NNN_", name)
		}
		if len(out) > 0 && out[len(out)-1].Version >= version {
			return nil, fmt.Errorf("schema: %s: version %d is not after %s", name, version, out[len(out)-1].Name)
		}
		body, err := files.ReadFile(name)
		if err != nil {
			return nil, err
		}
		tmpl, err := template.New(name).Option("missingkey=error").Parse(string(body))
		if err != nil {
			return nil, fmt.Errorf("schema: %w", err)
		}
		var buf bytes.Buffer
		if err := tmpl.Execute(&buf, d); err != nil {
			return nil, fmt.Errorf("schema: %w", err)
		}
		out = append(out, Migration{Version: version, Name: name, SQL: buf.String()})
	}
	return out, nil
}
