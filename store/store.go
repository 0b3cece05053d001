// Package store opens the provisioner's store named by a database URL:
// sqlite:PATH (the embedded default, one serving process per file) or
// postgres://… / postgresql://… (any number of replicas on one database).
package store

import (
	"context"
	"fmt"
	"strings"

	"github.com/crabbox/crabbox-runner/provisioner"
	"github.com/crabbox/crabbox-runner/store/postgres"
	"github.com/crabbox/crabbox-runner/store/sqlite"
)

// Open opens and migrates the store at url.
func Open(ctx context.Context, url string) (provisioner.Store, error) {
	switch {
	case strings.HasPrefix(url, "sqlite:"):
		return opened(sqlite.Open(ctx, strings.TrimPrefix(url, "sqlite:")))
	case strings.HasPrefix(url, "postgres://"), strings.HasPrefix(url, "postgresql://"):
		return opened(postgres.Open(ctx, url))
	}
	return nil, fmt.Errorf("store: unsupported database URL (want sqlite:PATH or postgres://…)")
}

// opened returns a nil interface on error, not one holding a nil *Store.
func opened[S provisioner.Store](s S, err error) (provisioner.Store, error) {
	if err != nil {
		return nil, err
	}
	return s, nil
}
