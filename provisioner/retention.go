package provisioner

import (
	"context"
	"time"
)

// DefaultRetention is how long deliveries and job events are kept when
// ReconcileConfig.Retention is zero.
const DefaultRetention = 30 * 24 * time.Hour

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

// pruneEvents deletes one batch of the deliveries and job events older than
// the retention. Nothing is pruned while it is negative.
func (p *Provisioner) pruneEvents(ctx context.Context, now time.Time) (int, error) {
	keep := cmpDur(p.cfg.Reconcile.Retention, DefaultRetention)
	if keep < 0 {
		return 0, nil
	}
	var n int
	err := p.cfg.Store.InTx(ctx, func(tx Tx) error {
		pr, ok := tx.(EventPruner)
		if !ok {
			return nil
		}
		var err error
		n, err = pr.PruneEvents(ctx, now.Add(-keep), pruneBatch)
		return err
	})
	return n, err
}
