package provisioner

import (
	"context"
	"sync"
	"time"
)

// The balancer takes balancing out of the delivery's transaction. A
// delivery records its job and returns; the class and scope it touched are
// marked, and the balancer balances each marked one in a transaction of its
// own, for every delivery that marked it since the last pass. Under a burst
// one count and one transaction serve many deliveries, and deliveries never
// wait for each other on the balance (on PostgreSQL, the advisory lock of
// one class and scope was held by each delivery until its commit).
//
// Nothing is lost if the process dies between a delivery's commit and its
// balance: the job is recorded as queued, and the reconcile pass, which the
// leader runs at start and every minute, balances every class and scope.

type balanceKey struct{ class, scope string }

type balanceWork struct {
	scope Scope
}

type balancer struct {
	p    *Provisioner
	mu   sync.Mutex
	work map[balanceKey]*balanceWork
	wake chan struct{}
	stop context.CancelFunc
	done chan struct{}

	// marked counts marks; balanced is the count whose balance has been
	// committed, and passed is closed (and replaced) when it moves.
	marked, balanced uint64
	passed           chan struct{}
}

func newBalancer(p *Provisioner) *balancer {
	return &balancer{p: p, work: map[balanceKey]*balanceWork{}, wake: make(chan struct{}, 1), passed: make(chan struct{})}
}

// wait returns once every mark made before the call is balanced.
func (b *balancer) wait(ctx context.Context) error {
	b.mu.Lock()
	target := b.marked
	for b.balanced < target {
		ch := b.passed
		b.mu.Unlock()
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-ch:
		}
		b.mu.Lock()
	}
	b.mu.Unlock()
	return nil
}

// mark asks for the class in the scope to be balanced.
func (b *balancer) mark(class string, scope Scope) {
	b.mu.Lock()
	k := balanceKey{class, scope.Key()}
	if b.work[k] == nil {
		b.work[k] = &balanceWork{scope: scope}
	}
	b.marked++
	b.mu.Unlock()
	select {
	case b.wake <- struct{}{}:
	default:
	}
}

// remark puts back the work of a pass that may have more leases to make.
func (b *balancer) remark(k balanceKey, w *balanceWork) {
	b.mu.Lock()
	if b.work[k] == nil {
		b.work[k] = w
	}
	b.marked++
	b.mu.Unlock()
	select {
	case b.wake <- struct{}{}:
	default:
	}
}

func (b *balancer) start() {
	ctx, cancel := context.WithCancel(context.Background())
	b.stop, b.done = cancel, make(chan struct{})
	go b.run(ctx)
}

// close stops the balancer after the pass under way. Marks not yet
// balanced are left to the reconcile pass.
func (b *balancer) close() {
	if b.stop == nil {
		return
	}
	b.stop()
	<-b.done
	b.stop = nil
}

func (b *balancer) run(ctx context.Context) {
	defer close(b.done)
	failures := 0
	for {
		select {
		case <-ctx.Done():
			return
		case <-b.wake:
		}
		b.mu.Lock()
		batch, taken := b.work, b.marked
		b.work = map[balanceKey]*balanceWork{}
		b.mu.Unlock()

		failed, more := false, false
		for k, w := range batch {
			var created []string
			err := b.p.cfg.Store.InTx(ctx, func(tx Tx) error {
				var err error
				created, err = b.p.balanceN(ctx, tx, k.class, w.scope, b.p.cfg.BalanceBatch)
				return err
			})
			if err == nil {
				if len(created) > 0 {
					b.p.announce(ctx, ProvisionArgs{LeaseID: created[0]})
				}
				if len(created) == b.p.cfg.BalanceBatch {
					// Maybe more to make: again, in a transaction of its own.
					b.remark(k, w)
					more = true
				}
				continue
			}
			if ctx.Err() != nil {
				return
			}
			b.p.log.Warn("balancing failed; will retry", "class", k.class, "scope", k.scope, "error", err)
			failed = true
			b.mu.Lock()
			if b.work[k] == nil {
				b.work[k] = w
			}
			b.mu.Unlock()
		}
		if !failed {
			failures = 0
			if !more {
				// Every mark taken is balanced; a pass that left more to
				// make is not done with them.
				b.mu.Lock()
				b.balanced = taken
				close(b.passed)
				b.passed = make(chan struct{})
				b.mu.Unlock()
			}
			continue
		}
		failures++
		select {
		case <-ctx.Done():
			return
		case <-time.After(retryDelay(failures, 100*time.Millisecond, 10*time.Second)):
		}
		select {
		case b.wake <- struct{}{}:
		default:
		}
	}
}
