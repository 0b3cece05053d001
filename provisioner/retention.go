package provisioner

import (
	"context"
	"time"
)

// DefaultRetention is how long deliveries and job events are kept when
// ReconcileConfig.Retention is zero.
const DefaultRetention = 30 * 24 * time.Hour

// DefaultHistory is how long released leases and completed jobs are kept
// when ReconcileConfig.History is zero: long enough for a month's cost
// questions on the status page and in `leases`, short enough that the
// database does not grow with every job ever run.
const DefaultHistory = 90 * 24 * time.Hour

// pruneBatch bounds the rows one pass deletes from each table, so the
// transaction stays short; a backlog goes over the next passes.
const pruneBatch = 5000

// EventPruner is a Tx that can delete old deliveries and job events
// (store/internal/sqlstore implements it for SQLite and PostgreSQL).
type EventPruner interface {
	// PruneEvents deletes at most limit deliveries and at most limit job
	// events received before the time, keeping the job events of jobs not
	// completed and of leases not released, and says how many rows went.
	PruneEvents(ctx context.Context, before time.Time, limit int) (int, error)
}

// HistoryPruner is a Tx that can delete released leases and completed jobs.
type HistoryPruner interface {
	// PruneHistory deletes at most limit released leases (and their lease
	// events) released before the time, and at most limit completed jobs
	// last updated before it that no unreleased lease was made for or is
	// bound to, and says how many leases and jobs went.
	PruneHistory(ctx context.Context, before time.Time, limit int) (int, error)
}

// pruneEvents deletes one batch of the deliveries and job events older than
// the retention. Nothing is pruned while it is negative.
func (p *Provisioner) pruneEvents(ctx context.Context, now time.Time) (int, error) {
	return p.pruneBefore(ctx, now, cmpDur(p.cfg.Reconcile.Retention, DefaultRetention), func(tx Tx, before time.Time) (int, error) {
		if pr, ok := tx.(EventPruner); ok {
			return pr.PruneEvents(ctx, before, pruneBatch)
		}
		return 0, nil
	})
}

// pruneHistory deletes one batch of the released leases and completed jobs
// older than the history retention. Nothing is pruned while it is negative.
func (p *Provisioner) pruneHistory(ctx context.Context, now time.Time) (int, error) {
	return p.pruneBefore(ctx, now, cmpDur(p.cfg.Reconcile.History, DefaultHistory), func(tx Tx, before time.Time) (int, error) {
		if pr, ok := tx.(HistoryPruner); ok {
			return pr.PruneHistory(ctx, before, pruneBatch)
		}
		return 0, nil
	})
}

// pruneBefore runs one pruning transaction for rows older than keep; a
// negative keep prunes nothing.
func (p *Provisioner) pruneBefore(ctx context.Context, now time.Time, keep time.Duration, prune func(Tx, time.Time) (int, error)) (int, error) {
	if keep < 0 {
		return 0, nil
	}
	var n int
	err := p.cfg.Store.InTx(ctx, func(tx Tx) error {
		var err error
		n, err = prune(tx, now.Add(-keep))
		return err
	})
	return n, err
}
