package provisioner

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
)

// waitingForSpend marks, in a lease's Error, that it waits for room under
// max_spend_per_hour; the oldest such lease goes first.
const waitingForSpend = "waiting for max_spend_per_hour"

// reserve records the offer a lease is about to rent, in one transaction
// with the spend check, so that two leases cannot both take the last room
// under max_spend_per_hour. Over the cap, or behind an older lease that
// waits, it returns errWaitLater and the lease keeps its place.
func (p *Provisioner) reserve(ctx context.Context, log *slog.Logger, id string, offer Offer, class *Class) (*Lease, error) {
	var reserved *Lease
	limit := p.cfg.Limits.MaxSpendPerHour
	waited, wait := false, false
	var warmReleased *Lease
	var waitedFor string
	// attempt records the create call about to be made.
	attempt := func(l *Lease) {
		l.Attempts++
		l.Provider, l.OfferID, l.GPU, l.PricePerHour, l.Region = offer.Provider, offer.ID, offer.GPU, offer.PricePerHour, offer.Region
		l.Interruptible = offer.Interruptible
		l.MachineID = offer.MachineID
		l.GPUCount, l.GPUMemoryGB = offer.GPUCount, offer.GPUMemoryGB
	}
	err := p.cfg.Store.InTx(ctx, func(tx Tx) error {
		me, err := tx.Lease(ctx, id)
		if err != nil {
			return err
		}
		if me.State == StatePending {
			// Its first attempt: the lease starts provisioning here, with
			// its deadlines (checked by this worker at every step, and by
			// the deadline scan, CheckDeadlines). Without a spend cap there
			// is nothing to check first, and the attempt is recorded in
			// the same write.
			now := p.now()
			me, err = tx.Transition(ctx, id, StateProvisioning, "provisioning started", func(l *Lease) {
				l.BootDeadline = now.Add(class.BootTimeout)
				l.ExpiresAt = now.Add(class.MaxLifetime)
				if limit <= 0 && l.ReleaseReason == "" {
					attempt(l)
				}
			})
			if err != nil {
				return err
			}
			if limit <= 0 && me.ReleaseReason == "" {
				reserved = me
				return nil
			}
		}
		if me.State != StateProvisioning || me.ReleaseReason != "" {
			// Released, or asked to be, while the offers were looked up.
			return &TransitionError{LeaseID: id, From: me.State, To: StateProvisioning}
		}
		if limit > 0 {
			// Replicas take turns, so two cannot both take the last room.
			if err := tx.Serialize(ctx, "max_spend_per_hour"); err != nil {
				return err
			}
			held, err := tx.Leases(ctx, LeaseFilter{States: heldStates})
			if err != nil {
				return err
			}
			spend, ahead := heldSpend(held, me.ID), false
			jobsAhead := 0 // for a warm lease: job leases yet to rent, which go first
			for _, l := range held {
				if l.ID == me.ID {
					continue
				}
				if me.Warm && !l.Warm && l.InstanceID == "" && l.ReleaseReason == "" && (l.State == StatePending ||
					(l.State == StateProvisioning && (l.Attempts == 0 || strings.HasPrefix(l.Error, waitingForSpend)))) {
					jobsAhead++
				}
				if strings.HasPrefix(l.Error, waitingForSpend) && l.State == StateProvisioning &&
					(l.CreatedAt.Before(me.CreatedAt) || (l.CreatedAt.Equal(me.CreatedAt) && l.ID < me.ID)) {
					ahead = true
				}
			}
			if me.Warm && (spend+offer.PricePerHour*float64(1+jobsAhead) > limit || ahead) {
				// A warm lease does not wait in line: it would hold room a
				// job needs (warm.go). Its class is balanced again after
				// the commit (taking the max_leases lock here, under the
				// spend lock, could deadlock with a balance), so a job
				// counted on it gets a lease of its own.
				warmReleased = me
				p.warm.noSpendUntil.Store(me.Class, p.now().Add(warmSpendBackoff))
				return p.release(ctx, tx, me, "warm host: no room under max_spend_per_hour", "")
			}
			if spend+offer.PricePerHour > limit || ahead {
				why := fmt.Sprintf("%s: $%.2f/h running, this host $%.2f/h, cap $%.2f/h", waitingForSpend, spend, offer.PricePerHour, limit)
				if ahead {
					why = waitingForSpend + ": behind an older lease"
				}
				_, err := tx.UpdateLease(ctx, id, func(l *Lease) {
					if !strings.HasPrefix(l.Error, waitingForSpend) {
						log.Info("spend cap reached; lease waits", "spend_per_hour", spend, "price_per_hour", offer.PricePerHour, "cap", limit)
					}
					l.Error = why
					// Waiting for budget is not booting: the boot deadline
					// starts again when the host is rented.
					l.BootDeadline = p.now().Add(class.BootTimeout)
				})
				if err != nil {
					return err
				}
				wait = true // committed, so the lease keeps its place in line
				return nil
			}
			waited = strings.HasPrefix(me.Error, waitingForSpend)
		}
		reserved, err = tx.UpdateLease(ctx, id, func(l *Lease) {
			attempt(l)
			if waited {
				waitedFor = l.Error
				l.Error = ""
				l.BootDeadline = p.now().Add(class.BootTimeout)
			}
		})
		if err == nil && waited {
			p.cfg.Observer.LimitWait("max_spend_per_hour", p.now().Sub(me.StateChangedAt))
		}
		return err
	})
	if err != nil {
		return nil, err
	}
	if wait {
		return nil, errWaitLater
	}
	if warmReleased != nil {
		p.rebalance(ctx, warmReleased.Class, warmReleased.Scope)
		return nil, &TransitionError{LeaseID: id, From: StateProvisioning, To: StateProvisioning}
	}
	if waited {
		log.Info("room under the spend cap; going on", "waited_on", waitedFor)
	}
	return reserved, nil
}

// heldSpend is the hourly price of the hosts rented and being rented among
// the held leases, leaving out the lease except.
func heldSpend(held []*Lease, except string) float64 {
	spend := 0.0
	for _, l := range held {
		if l.ID == except {
			continue
		}
		if l.InstanceID != "" || (l.State == StateProvisioning && l.Attempts > 0 && !strings.HasPrefix(l.Error, waitingForSpend)) {
			spend += l.PricePerHour
		}
	}
	return spend
}
