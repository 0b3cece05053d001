package provisioner

import (
	"context"

	"github.com/riverqueue/river"
)

// announce tells a store whose work queue does not hear of new work by
// itself (Notifier) of work a committed transaction enqueued, so that it is
// picked up at once rather than at the next poll.
func (p *Provisioner) announce(ctx context.Context, args river.JobArgs) {
	if n, ok := p.cfg.Store.(Notifier); ok {
		n.Notify(ctx, args)
	}
}
