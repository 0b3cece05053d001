package provisioner

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"time"

	"github.com/riverqueue/river"
)

// Extra hosts. A create whose outcome the provider could not tell
// (ErrCreateUncertain) may have rented a host that shows up later, while
// the lease has gone on to another offer: two hosts billed for one lease.
// Such a host carries the lease's marker, so a sweep that lists the
// provider's instances finds it: it runs right after the uncertain create
// and again every ExtraHostSweepInterval until ExtraHostWindow has passed,
// and destroys every instance with the lease's marker that is not the
// lease's own host. The sweep is durable work (River), so it survives a
// crash; a host that shows up after the window is gc's ("lease runs on
// instance X, not this one", or "lease is released").

// Defaults of Config.ExtraHostSweepInterval and Config.ExtraHostWindow:
// a late host is destroyed within about 20 s of showing up, and looked for
// during five minutes, more than a provider takes to answer a create (Vast:
// the official CLI waits 120 s) plus its listing's delay.
const (
	defaultExtraHostSweepInterval = 20 * time.Second
	defaultExtraHostWindow        = 5 * time.Minute
)

// ExtraHostObserver is told of every extra host a sweep destroyed (the
// metrics package implements it).
type ExtraHostObserver interface {
	ExtraHostDestroyed(provider string)
}

// SweepArgs looks for a lease's extra hosts on one provider until Until.
type SweepArgs struct {
	LeaseID  string    `json:"lease_id"`
	Provider string    `json:"provider"`
	Until    time.Time `json:"until"`
}

// Kind names the River job.
func (SweepArgs) Kind() string { return "extra_hosts" }

// InsertOpts: on the release queue, which a burst of provisioning cannot
// hold up; snoozed between passes.
func (SweepArgs) InsertOpts() river.InsertOpts {
	return river.InsertOpts{Queue: QueueRelease, MaxAttempts: 1000}
}

type sweepWorker struct {
	river.WorkerDefaults[SweepArgs]
	p *Provisioner
}

func (w *sweepWorker) Timeout(*river.Job[SweepArgs]) time.Duration { return 2 * time.Minute }

func (w *sweepWorker) NextRetry(job *river.Job[SweepArgs]) time.Time {
	return time.Now().Add(retryDelay(job.Attempt, time.Second, w.p.cfg.ExtraHostSweepInterval))
}

func (w *sweepWorker) Work(ctx context.Context, job *river.Job[SweepArgs]) error {
	return w.p.sweepExtraHosts(ctx, job.Args)
}

// watchExtraHosts schedules the sweeps of a lease after an uncertain create
// on the provider. If that cannot be recorded, gc is left to find the host.
func (p *Provisioner) watchExtraHosts(ctx context.Context, log *slog.Logger, leaseID, provider string) {
	args := SweepArgs{LeaseID: leaseID, Provider: provider, Until: p.now().Add(p.cfg.ExtraHostWindow)}
	// Due at once rather than scheduled: River moves scheduled work to
	// the queue only every few seconds. Its first pass mostly finds the
	// lease still creating and snoozes (a snooze is exact), at no call.
	ctx = context.WithoutCancel(ctx)
	err := p.cfg.Store.InTx(ctx, func(tx Tx) error { return tx.Enqueue(ctx, args, nil) })
	if err != nil {
		log.Error("scheduling the look for an extra host failed; gc will find it", "provider", provider, "error", err)
	}
}

// sweepExtraHosts runs one pass for a lease: every instance on the provider
// with the lease's marker that is not the lease's own host is destroyed.
// While the lease has no host yet and is still being created, nothing is
// extra (its create may be under way, and its next run adopts or destroys
// what an earlier attempt left, recoverByMarker): the pass waits.
func (p *Provisioner) sweepExtraHosts(ctx context.Context, a SweepArgs) error {
	prov, ok := p.cfg.Providers[a.Provider]
	if !ok {
		return nil
	}
	l, err := p.cfg.Store.Lease(ctx, a.LeaseID)
	if errors.Is(err, ErrNotFound) {
		l, err = nil, nil
	}
	if err != nil {
		return err
	}
	creating := l != nil && l.InstanceID == "" && (l.State == StatePending || l.State == StateProvisioning)
	if !creating {
		owned, err := p.sweepListing(ctx, a.Provider, prov)
		if err != nil {
			return err
		}
		for _, inst := range owned {
			if inst.Marker.Deployment != p.cfg.Deployment || inst.Marker.LeaseID != a.LeaseID || inst.Status == InstanceGone {
				continue
			}
			if l != nil && l.Provider == a.Provider && l.InstanceID == inst.ID {
				continue // the lease's own host; its release destroys it
			}
			if !p.sweepLists.take(a.Provider, inst.ID) {
				continue // another sweep of the lease destroyed it
			}
			extra := *inst // the listing is shared: not changed here
			extra.Provider = a.Provider
			if err := prov.Destroy(ctx, &extra); err != nil {
				p.sweepLists.untake(a.Provider, inst.ID)
				return err
			}
			own := ""
			if l != nil {
				own = l.Provider + " " + l.InstanceID
			}
			p.log.Warn("destroyed an extra host of a lease (its create's outcome was unknown)", "lease_id", a.LeaseID,
				"provider", a.Provider, "instance_id", inst.ID, "lease_host", own)
			if o, ok := p.cfg.Observer.(ExtraHostObserver); ok {
				o.ExtraHostDestroyed(a.Provider)
			}
		}
	}
	if now := p.now(); creating || now.Before(a.Until) {
		return river.JobSnooze(p.cfg.ExtraHostSweepInterval)
	}
	return nil
}

// sweepLists shares one provider listing among the sweeps of a burst:
// after a provider lost many create answers, each lease's sweep would list
// the provider on its own every interval, against the listing endpoint's
// rate limit. A listing is reused for half an interval, so a host shows
// up in a sweep at most that much later.
type sweepLists struct {
	mu   sync.Mutex
	last map[string]sweepList
	// taken: provider/instance → when a sweep destroyed it. A lease with
	// two uncertain creates has two sweeps, which must neither destroy
	// nor count a host twice (the shared listing shows it until renewed).
	taken map[string]time.Time
}

type sweepList struct {
	at    time.Time
	owned []*Instance
}

func (p *Provisioner) sweepListing(ctx context.Context, name string, prov Provider) ([]*Instance, error) {
	c := &p.sweepLists
	c.mu.Lock()
	l, ok := c.last[name]
	c.mu.Unlock()
	if ok && time.Since(l.at) < p.cfg.ExtraHostSweepInterval/2 {
		return l.owned, nil
	}
	at := time.Now()
	owned, err := prov.ListOwned(ctx, p.cfg.Deployment)
	if err != nil {
		return nil, err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.last == nil {
		c.last = map[string]sweepList{}
	}
	c.last[name] = sweepList{at: at, owned: owned}
	return owned, nil
}

// take reports whether the instance is this sweep's to destroy; the first
// sweep to ask gets it.
func (c *sweepLists) take(provider, id string) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	now := time.Now()
	if c.taken == nil {
		c.taken = map[string]time.Time{}
	}
	for k, at := range c.taken {
		if now.Sub(at) > time.Hour {
			delete(c.taken, k)
		}
	}
	k := provider + "/" + id
	if _, ok := c.taken[k]; ok {
		return false
	}
	c.taken[k] = now
	delete(c.last, provider) // it changed: the next sweep lists again
	return true
}

// untake hands the instance back after a failed destroy, to be tried again.
func (c *sweepLists) untake(provider, id string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	delete(c.taken, provider+"/"+id)
}
