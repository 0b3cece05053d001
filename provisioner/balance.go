package provisioner

import (
	"context"

	"github.com/riverqueue/river"
)

// Balancing: one lease that can still take a job for every queued job of a
// class in a scope. What calls for it and when is in balancer.go; what it
// does is here.

// reasonNoQueuedJob releases a lease the balance found surplus.
const reasonNoQueuedJob = "no queued job for it"

// balanceSoon calls for the class in the scope to be balanced: at the end
// of the transaction's group where the store commits in groups (GroupTx),
// else by the balancer after the commit (later: the caller marks it then).
// Before the balancer is started, in the transaction.
func (p *Provisioner) balanceSoon(ctx context.Context, tx Tx, class string, scope Scope) (later bool, err error) {
	if !p.balancing.Load() {
		_, err := p.balanceN(ctx, tx, class, scope, 0)
		return false, err
	}
	if gt, ok := tx.(GroupTx); ok {
		p.balanceAtGroupEnd(ctx, gt, class, scope)
		return false, nil
	}
	return true, nil
}

// balanceAtGroupEnd balances the class in the scope at the end of the
// delivery's group, in the transaction that records it: one balance for
// every delivery of the group, and no wait for a transaction of the
// balancer's own before the leases exist. Should it fail, or leave more to
// make, the balancer takes over.
func (p *Provisioner) balanceAtGroupEnd(ctx context.Context, tx GroupTx, class string, scope Scope) {
	ctx = context.WithoutCancel(ctx)
	var created []string
	tx.AtGroupEnd("balance\x00"+class+"\x00"+scope.Key(), func(tx Tx) error {
		var err error
		created, err = p.balanceN(ctx, tx, class, scope, p.cfg.BalanceBatch)
		return err
	}, func(err error) {
		if err != nil {
			p.log.Warn("balancing with the deliveries failed; the balancer retries", "class", class, "scope", scope.Key(), "error", err)
			p.bal.mark(class, scope)
			return
		}
		if len(created) > 0 {
			p.announce(ctx, ProvisionArgs{LeaseID: created[0]})
		}
		if len(created) == p.cfg.BalanceBatch {
			p.bal.mark(class, scope) // maybe more to make
		}
	})
}

// balance makes the number of leases that can still take a job equal the
// number of queued jobs of the class in the scope. Missing leases are
// created and their provisioning enqueued; surplus ones are released if
// nothing has been spent on them yet (pending) or their runner sits idle.
// Leases still starting are left alone and balanced when they come online.
func (p *Provisioner) balance(ctx context.Context, tx Tx, class string, scope Scope) error {
	_, err := p.balanceN(ctx, tx, class, scope, 0)
	return err
}

// balanceN is balance that, given a limit, creates at most that many
// leases and returns the ids of those it made, so that one transaction of a burst
// stays short. Each new lease is made for one of the newest queued jobs
// (those that have none yet, in the usual order of things): for the logs,
// and so that its queued → create phase counts from that job's arrival.
func (p *Provisioner) balanceN(ctx context.Context, tx Tx, class string, scope Scope, limit int) (created []string, err error) {
	queued, available, err := tx.Demand(ctx, class, scope.Key())
	if err != nil {
		return nil, err
	}
	if c := p.classes[class]; c != nil && c.HedgeAfter > 0 {
		// A racing hedge serves a job that has its lease already
		// (hedge.go); Demand counts it all the same.
		hedges, err := p.startingHedges(ctx, tx, class, scope)
		if err != nil {
			return nil, err
		}
		available -= hedges
	}
	// Warm hosts (warm.go): in the class's warm scope, min_idle more.
	warm, err := p.warmTarget(ctx, tx, class, scope)
	if err != nil {
		return nil, err
	}
	if missing := queued + warm - available; missing > 0 {
		room, err := p.leaseRoom(ctx, tx, class)
		if err != nil {
			return nil, err
		}
		// The queued jobs get the room first; warm leases what is left.
		forJobs := min(max(queued-available, 0), missing)
		if forJobs > room {
			p.log.Info("lease limit reached; jobs wait", "class", class, "scope", scope.Key(), "waiting", forJobs-room)
			forJobs = room
		}
		p.noteRoomWait(class, scope, max(queued-available, 0) > room)
		forWarm := 0
		if ctx.Value(noWarmKey{}) == nil {
			// (A pass over every class makes them after every class's jobs.)
			if forWarm, err = p.warmRoom(ctx, tx, class, missing-forJobs, room-forJobs); err != nil {
				return nil, err
			}
		}
		if limit > 0 {
			forJobs = min(forJobs, limit)
			forWarm = min(forWarm, limit-forJobs)
		}
		missing = forJobs + forWarm
		jobs, err := tx.NewestQueuedJobs(ctx, class, scope.Key(), forJobs)
		if err != nil {
			return nil, err
		}
		leases := make([]*Lease, 0, missing)
		work := make([]river.InsertManyParams, 0, missing)
		for i := range missing {
			var job *Job
			if i < len(jobs) {
				job = jobs[i]
			}
			l := p.newLease(class, scope, job)
			l.Warm = i >= forJobs
			leases = append(leases, l)
			id := l.ID
			work = append(work, river.InsertManyParams{Args: ProvisionArgs{LeaseID: id}})
		}
		if err := tx.InsertLeases(ctx, leases); err != nil {
			return nil, err
		}
		wo := p.warmObserver()
		for _, l := range leases {
			p.log.Info("lease created", "lease_id", l.ID, "class", class, "scope", scope.Key(), "job_id", l.JobID, "warm", l.Warm)
			if l.Warm && wo != nil {
				wo.WarmCreated(class)
			}
		}
		if err := tx.EnqueueMany(ctx, work); err != nil {
			return nil, err
		}
		for _, l := range leases {
			created = append(created, l.ID)
		}
	} else {
		p.noteRoomWait(class, scope, false)
	}
	// Surplus never takes the class below its warm hosts.
	if surplus := available - queued - warm; surplus > 0 {
		candidates, err := tx.Leases(ctx, LeaseFilter{Class: class, ScopeKey: scope.Key(), States: []State{StatePending, StateIdle}})
		if err != nil {
			return nil, err
		}
		for _, l := range candidates {
			if surplus == 0 {
				break
			}
			if l.ReleaseReason != "" || l.HedgeOf != "" {
				continue
			}
			if err := p.requestRelease(ctx, tx, l.ID, reasonNoQueuedJob, ""); err != nil {
				return nil, err
			}
			surplus--
		}
	}
	return created, nil
}

// heldStates are the states in which a lease counts against max_leases: it
// has, or may soon have, a host.
var heldStates = []State{StatePending, StateProvisioning, StateBooting, StateBootstrapping, StateIdle, StateBusy, StateReleasing, StateFailed}

// leaseRoom is how many more leases of the class may be created now.
func (p *Provisioner) leaseRoom(ctx context.Context, tx Tx, class string) (int, error) {
	room := int(^uint(0) >> 1)
	caps := []struct {
		max   int
		class string
	}{{p.cfg.Limits.MaxLeases, ""}}
	if c := p.classes[class]; c != nil {
		caps = append(caps, struct {
			max   int
			class string
		}{c.MaxLeases, class})
	}
	for _, c := range caps {
		if c.max <= 0 {
			continue
		}
		if err := tx.Serialize(ctx, "max_leases/"+c.class); err != nil {
			return 0, err
		}
		held, err := tx.Leases(ctx, LeaseFilter{States: heldStates, Class: c.class, Limit: c.max + 1})
		if err != nil {
			return 0, err
		}
		room = min(room, max(c.max-len(held), 0))
	}
	return room, nil
}

// limited reports whether any lease cap is set; only then does a release
// have to look for jobs waiting in other classes.
func (p *Provisioner) limited() bool {
	if p.cfg.Limits.MaxLeases > 0 {
		return true
	}
	for _, c := range p.classes {
		if c.MaxLeases > 0 {
			return true
		}
	}
	return false
}

// newLease returns a new pending lease, made for job when given; the caller
// inserts it and enqueues its provisioning.
func (p *Provisioner) newLease(class string, scope Scope, job *Job) *Lease {
	id := newLeaseID()
	l := &Lease{
		ID: id, Class: class, Scope: scope, State: StatePending,
		RunnerName: p.runnerName(id),
	}
	if job != nil {
		l.JobID, l.RunAttempt, l.QueuedAt = job.ID, job.RunAttempt, job.CreatedAt
	}
	return l
}
