package provisioner

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"
)

// The host watch (issue 17). Once a lease's runner is online nothing else
// asks the provider about its host: a host that is outbid, preempted,
// stopped or dies mid-job would be noticed only when GitHub drops the
// runner, or at the lease's max lifetime, billed all the while (a stopped
// Vast instance still bills its disk). Each reconcile pass lists every
// provider's instances of this deployment once (ListOwned: one request per
// provider for up to 25 Vast instances, one for all Lambda instances),
// rather than a Get per lease, and releases the leases whose host is lost.

// DefaultUnreachableGrace is how long a running host may stay unreachable
// (Vast's "unknown": no recent heartbeat; "offline": disconnected) before
// its lease counts it lost. Vast computes both from its host daemon's
// heartbeat (vast-api.md §6), so one look can catch a blip while the
// runner works on; two minutes is two default reconcile passes, and a host
// that is really gone is gone for good. While a host boots the same states
// fail it at once (host.go): nothing is lost there yet.
const DefaultUnreachableGrace = 2 * time.Minute

// Reasons a lease's host was lost (Lease.LostReason).
const (
	LostOutbid      = "outbid"
	LostPreempted   = "preempted"
	LostStopped     = "stopped by provider"
	LostFailed      = "host failed"
	LostUnreachable = "host unreachable"
	LostGone        = "host gone"
)

// HostLossObserver is told about each host lost mid-lease; the metrics
// package implements it.
type HostLossObserver interface {
	// HostLost counts one lost host and the seconds it had been billed.
	HostLost(provider, reason string, served time.Duration)
}

// lostReason maps a status to why the host is lost ("" while it serves).
// bad: the machine is to blame (it died or its owner stopped it), not the
// market (outbid, preempted) nor an unknown hand (gone).
func lostReason(s InstanceStatus) (reason string, bad bool) {
	switch s {
	case InstancePending, InstanceRunning:
		return "", false
	case InstanceOutbid:
		return LostOutbid, false
	case InstancePreempted:
		return LostPreempted, false
	case InstanceStopped:
		return LostStopped, true
	case InstanceUnreachable:
		return LostUnreachable, true
	case InstanceGone:
		return LostGone, false
	}
	return LostFailed, true
}

// unreachableSince remembers, per lease, since when its host has been seen
// unreachable. In memory: after a restart (or a change of leader) the
// grace starts again, which delays a release by at most one grace.
type unreachableSince struct {
	mu sync.Mutex
	m  map[string]time.Time
}

// seen records the lease's host as unreachable at now and returns since when.
func (u *unreachableSince) seen(id string, now time.Time) time.Time {
	u.mu.Lock()
	defer u.mu.Unlock()
	if u.m == nil {
		u.m = map[string]time.Time{}
	}
	if t, ok := u.m[id]; ok {
		return t
	}
	u.m[id] = now
	return now
}

// keep forgets every lease not in ids.
func (u *unreachableSince) keep(ids map[string]bool) {
	u.mu.Lock()
	defer u.mu.Unlock()
	for id := range u.m {
		if !ids[id] {
			delete(u.m, id)
		}
	}
}

// watchHosts looks at the host of every idle and busy lease and releases
// those whose host is lost. It returns the ids of the leases it released.
func (p *Provisioner) watchHosts(ctx context.Context, live []*Lease) (map[string]bool, error) {
	byProvider := map[string][]*Lease{}
	for _, l := range live {
		if (l.State == StateIdle || l.State == StateBusy) && l.InstanceID != "" {
			byProvider[l.Provider] = append(byProvider[l.Provider], l)
		}
	}
	released := map[string]bool{}
	// Leases whose host is unreachable now (or could not be looked at):
	// their marks are kept, every other mark goes.
	unreachable := map[string]bool{}
	var errs []error
	for _, name := range sortedKeys(byProvider) {
		prov, ok := p.cfg.Providers[name]
		if !ok {
			continue
		}
		owned, err := prov.ListOwned(ctx, p.cfg.Deployment)
		if err != nil {
			errs = append(errs, fmt.Errorf("watching %s hosts: %w", name, err))
			for _, l := range byProvider[name] {
				unreachable[l.ID] = true
			}
			continue
		}
		byID := make(map[string]*Instance, len(owned))
		for _, inst := range owned {
			byID[inst.ID] = inst
		}
		for _, l := range byProvider[name] {
			inst, listed := byID[l.InstanceID]
			if !listed {
				// Not listed: ask for it (a listing may leave out ended
				// instances, such as Lambda's terminated ones).
				inst, err = prov.Get(ctx, l.InstanceID)
				switch {
				case errors.Is(err, ErrNotFound):
					inst = &Instance{ID: l.InstanceID, Status: InstanceGone, StatusMessage: "the provider no longer has it"}
				case err != nil:
					unreachable[l.ID] = true
					errs = append(errs, fmt.Errorf("host of lease %s: %w", l.ID, err))
					continue
				}
			}
			reason, bad := lostReason(inst.Status)
			if reason == "" {
				continue
			}
			now := p.now()
			if reason == LostUnreachable {
				unreachable[l.ID] = true
				since := p.unreachable.seen(l.ID, now)
				if now.Sub(since) < p.unreachableGrace() {
					p.log.Info("host unreachable; waiting before counting it lost", "lease_id", l.ID, "instance_id", l.InstanceID,
						"since", since, "detail", inst.StatusMessage)
					continue
				}
			}
			if bad {
				// Before the release: its balance may start the
				// replacement lease at once, which must skip the machine.
				// Only while the lease still holds the host: one released
				// meanwhile (a deadline) was ended by us, not by the host.
				cur, err := p.cfg.Store.Lease(ctx, l.ID)
				if err != nil || (cur.State != StateIdle && cur.State != StateBusy) || cur.InstanceID != l.InstanceID {
					continue
				}
				p.markBadMachine(l, "host lost mid-lease: "+reason)
			}
			ok, err := p.loseHost(ctx, l, reason, inst.StatusMessage)
			if err != nil {
				errs = append(errs, err)
				continue
			}
			if !ok {
				continue
			}
			released[l.ID] = true
			delete(unreachable, l.ID)
		}
	}
	p.unreachable.keep(unreachable)
	return released, errors.Join(errs...)
}

func (p *Provisioner) unreachableGrace() time.Duration {
	if g := p.cfg.Reconcile.UnreachableGrace; g > 0 {
		return g
	}
	return DefaultUnreachableGrace
}

// loseHost records why the lease's host is lost and asks for its release,
// in one transaction, so that whoever reads the released lease (part
// rerun) finds the reason. ok is false when the lease had moved on.
func (p *Provisioner) loseHost(ctx context.Context, l *Lease, reason, detail string) (bool, error) {
	done := false
	err := p.cfg.Store.InTx(ctx, func(tx Tx) error {
		cur, err := tx.Lease(ctx, l.ID)
		if err != nil {
			return err
		}
		if (cur.State != StateIdle && cur.State != StateBusy) || cur.InstanceID != l.InstanceID {
			return nil
		}
		if _, err := tx.UpdateLease(ctx, l.ID, func(l *Lease) {
			l.LostReason = reason
			if detail != "" {
				l.Error = "host lost (" + reason + "): " + detail
			}
		}); err != nil {
			return err
		}
		if err := p.requestRelease(ctx, tx, l.ID, "host lost: "+reason, ""); err != nil {
			return err
		}
		done = true
		return p.balance(ctx, tx, l.Class, l.Scope)
	})
	if err != nil || !done {
		done = false
		return false, err
	}
	p.noteHostLost(ctx, l, reason)
	p.log.Warn("host lost; releasing the lease", "lease_id", l.ID, "class", l.Class, "provider", l.Provider,
		"instance_id", l.InstanceID, "machine_id", l.MachineID, "interruptible", l.Interruptible, "state", string(l.State),
		"reason", reason, "detail", detail, "job_id", l.BoundJobID)
	return true, nil
}

// noteHostLost counts a lost host and the seconds it had been billed.
func (p *Provisioner) noteHostLost(ctx context.Context, l *Lease, reason string) {
	var served time.Duration
	if events, err := p.cfg.Store.LeaseEvents(ctx, l.ID); err == nil {
		if from, to, ok := Billed(l, events, p.now()); ok {
			served = to.Sub(from)
		}
	}
	if o, ok := p.cfg.Observer.(HostLossObserver); ok {
		o.HostLost(l.Provider, reason, served)
	}
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}
