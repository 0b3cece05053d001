// Package store opens the provisioner's store named by a database URL:
// sqlite:PATH (the embedded default) or, in a later release, postgres://….
package store

import (
	"context"
	"fmt"
	"strings"

	"github.com/crabbox/crabbox-runner/provisioner"
	"github.com/crabbox/crabbox-runner/store/sqlite"
)

// Open opens and migrates the store at url.
func Open(ctx context.Context, url string) (provisioner.Store, error) {
	switch {
	case strings.HasPrefix(url, "sqlite:"):
		return sqlite.Open(ctx, strings.TrimPrefix(url, "sqlite:"))
	case strings.HasPrefix(url, "postgres://"), strings.HasPrefix(url, "postgresql://"):
		return nil, fmt.Errorf("store: PostgreSQL is not supported by this build yet")
	}
	return nil, fmt.Errorf("store: unsupported database URL (want sqlite:PATH)")
}
