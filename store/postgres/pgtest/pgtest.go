// Package pgtest gives each test its own PostgreSQL database, so tests and
// benchmarks that need one can run in parallel on one server.
//
// The server is named by CRABBOX_TEST_POSTGRES_URL (scripts/test.sh starts a
// throwaway one and sets it), a postgres:// URL of a role that may create
// databases. Without it a test is skipped, except in CI (CI non-empty),
// where it fails: CI must run the PostgreSQL tests, not skip them quietly.
package pgtest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"net/url"
	"os"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// EnvURL names the environment variable with the server's URL.
const EnvURL = "CRABBOX_TEST_POSTGRES_URL"

// ServerURL returns the server's URL, or skips tb (fails it in CI) when
// there is none.
func ServerURL(tb testing.TB) string {
	tb.Helper()
	u := os.Getenv(EnvURL)
	if u == "" {
		if os.Getenv("CI") != "" {
			tb.Fatalf("%s is not set, and CI must run the PostgreSQL tests (scripts/test.sh starts a server)", EnvURL)
		}
		tb.Skipf("%s is not set; scripts/test.sh starts a PostgreSQL server and sets it", EnvURL)
	}
	return u
}

// NewDatabase creates an empty database on the server and returns its URL;
// the database is dropped when tb ends, whatever still connects to it.
func NewDatabase(tb testing.TB) string {
	tb.Helper()
	server := ServerURL(tb)
	u, err := url.Parse(server)
	if err != nil || (u.Scheme != "postgres" && u.Scheme != "postgresql") {
		tb.Fatalf("%s must be a postgres:// URL", EnvURL)
	}
	var b [8]byte
	rand.Read(b[:])
	name := "crabbox_test_" + hex.EncodeToString(b[:])
	admin(tb, server, "CREATE DATABASE "+name)
	tb.Cleanup(func() { admin(tb, server, "DROP DATABASE IF EXISTS "+name+" WITH (FORCE)") })
	u.Path = "/" + name
	return u.String()
}

func admin(tb testing.TB, server, stmt string) {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	conn, err := pgx.Connect(ctx, server)
	if err != nil {
		tb.Fatalf("pgtest: connect to %s: %v", EnvURL, err)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, stmt); err != nil {
		tb.Fatalf("pgtest: %s: %v", stmt, err)
	}
}
