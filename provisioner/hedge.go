package provisioner

// Hedged provisioning (issue 18): a class with HedgeAfter starts a second
// host for a lease whose runner is not online that long after its host's
// create call. The second lease (the hedge, Lease.HedgeOf = the first's id)
// is made for the same job; whichever gets its runner online first serves,
// and the other is released at once. A lease has at most one live hedge
// (Lease.HedgedAt is set while it has one), and a hedge is never hedged, so
// a job never has more than two leases holding or about to hold a host.
// A hedge that fails (fails fast, never boots) does not end the hedging:
// once its host is destroyed (its lease released), the first lease, if it
// still starts, may be hedged again at once (hedgeGone), under the same
// checks as the first hedge (its job still waits, room, budget). The other
// way round, a first lease that fails hands its job to its hedge
// (promoted), and once the failed lease's host is destroyed the promoted
// lease may be hedged in turn (promotedMayHedge). A warm lease is never
// hedged.
//
// Every decision is made in the transaction that records the event it
// follows (runner online, a release asked for), with the leases read there
// (locked on PostgreSQL), so no order of events can leave a third host or
// two winners.

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"
)

// HedgeObserver is told about hedges; the metrics package implements it. A
// Config.Observer without it is not told.
type HedgeObserver interface {
	// HedgeStarted: a hedge lease was made for a slow lease of the class.
	HedgeStarted(class string)
	// HedgeSkipped: a lease was due a hedge and got none; reason is one of
	// the HedgeSkip constants. Counted once per lease while the reason
	// stays the same.
	HedgeSkipped(class, reason string)
	// HedgeWon: a hedged lease's race is decided; winner is "first" (the
	// hedged lease) or "second" (the hedge).
	HedgeWon(class, winner string)
	// HedgeExtraCost adds what a host that lost its race cost: its price
	// times the time from its create call to its destroy.
	HedgeExtraCost(class string, dollars float64)
}

// Why a lease due a hedge got none.
const (
	HedgeSkipNoRoom  = "no_room" // max_leases (global or the class's) reached
	HedgeSkipBudget  = "budget"  // max_spend_per_hour would be passed
	HedgeSkipJobGone = "job_gone"
)

// The release reasons of a host that lost its race; releaseLease counts
// what such a host cost as the hedge's extra cost.
const (
	reasonHedgeNotNeeded = "hedge not needed: "
	reasonHedgeFirst     = "got its runner online first"
)

// hedgeLost reports whether a lease was released because it lost a hedge
// race (its cost is the price of hedging).
func hedgeLost(reason string) bool {
	return strings.HasPrefix(reason, reasonHedgeNotNeeded) ||
		(strings.HasPrefix(reason, "hedge ") && strings.HasSuffix(reason, reasonHedgeFirst))
}

// hedgeRetry is how soon a lease that was due a hedge and got none is
// looked at again (room may free up, the job may still wait).
const hedgeRetry = 15 * time.Second

// hedgeState is what a process remembers of hedges between polls: when a
// lease that got no hedge may be looked at again, the skips already
// counted, and the leases whose worker should look at them again now.
type hedgeState struct {
	next    sync.Map // lease id → time.Time
	skipped sync.Map // lease id → the last reason counted
	wake    sync.Map // lease id → when it was woken
}

// wakeHold is how long a wake waits for the change it announces to show
// in the store; past it, the transaction that stored it did not commit.
const wakeHold = 10 * time.Second

// forget drops what the process remembers of a released lease.
func (h *hedgeState) forget(id string) {
	h.next.Delete(id)
	h.skipped.Delete(id)
	h.wake.Delete(id)
}

// errLookAgain ends a boot step whose lease was changed under it (asked to
// release because its race was lost): the provision loop reads it again.
var errLookAgain = errors.New("lease changed; look again")

// hedgeClock is when the lease's host was asked for: the boot deadline is
// set from the create call's answer (createHost), so this costs no read.
// A lease adopted after a restart counts from its reservation, earlier.
func hedgeClock(l *Lease, class *Class) time.Time {
	return l.BootDeadline.Add(-class.BootTimeout)
}

// hedgeDue reports whether the lease, as last read, is due a hedge now. A
// warm lease (warm.go) is never hedged: no job waits on it, and a job that
// arrives while it boots gets a lease of its own from the balance.
func (p *Provisioner) hedgeDue(l *Lease, class *Class) bool {
	if class.HedgeAfter <= 0 || l.Warm || l.HedgeOf != "" || !l.HedgedAt.IsZero() || l.ReleaseReason != "" || l.BootDeadline.IsZero() {
		return false
	}
	if l.State != StateBooting && l.State != StateBootstrapping {
		return false
	}
	return !p.now().Before(hedgeClock(l, class).Add(class.HedgeAfter))
}

// hedgeTick is called at every poll of a lease's boot: it hedges the lease
// when due, and ends the step when the lease lost its race meanwhile. A
// failure to hedge is logged; the boot goes on.
func (p *Provisioner) hedgeTick(ctx context.Context, log *slog.Logger, l *Lease, class *Class) error {
	if at, woken := p.hedges.wake.Load(l.ID); woken {
		// The wake is stored in the transaction whose change it
		// announces, before that commits: until the change shows, keep
		// it (a worker that looked too early went on waiting a whole
		// InlineWait with its release unread: seen in the benchmark).
		cur, err := p.cfg.Store.Lease(ctx, l.ID)
		if err == nil && cur.State == l.State && cur.ReleaseReason == l.ReleaseReason &&
			cur.HedgedAt.IsZero() == l.HedgedAt.IsZero() && p.now().Sub(at.(time.Time)) < wakeHold {
			return nil
		}
		p.hedges.wake.Delete(l.ID)
		return errLookAgain
	}
	if !p.hedgeDue(l, class) {
		return nil
	}
	if next, ok := p.hedges.next.Load(l.ID); ok && p.now().Before(next.(time.Time)) {
		return nil
	}
	hedged, err := p.startHedge(ctx, log, l, class)
	if err != nil {
		log.Warn("starting a hedge failed; trying again later", "error", err)
	}
	if hedged != nil && !hedged.HedgedAt.IsZero() {
		l.HedgedAt = hedged.HedgedAt
		p.hedges.next.Delete(l.ID)
		return nil
	}
	// Not hedged (no room, or the lease moved on): not again before long.
	p.hedges.next.Store(l.ID, p.now().Add(hedgeRetry))
	return nil
}

// hedgeBackstop hedges a lease found due by the deadline scan, which reads
// every live lease anyway: for a lease whose boot worker is not running
// (every worker busy, or the worker's process gone), so that its hedge
// does not wait for it.
func (p *Provisioner) hedgeBackstop(ctx context.Context, l *Lease) error {
	class := p.classes[l.Class]
	if class == nil || !p.hedgeDue(l, class) {
		return nil
	}
	if next, ok := p.hedges.next.Load(l.ID); ok && p.now().Before(next.(time.Time)) {
		return nil
	}
	log := p.log.With("lease_id", l.ID, "class", l.Class, "state", string(l.State), "job_id", l.JobID)
	hedged, err := p.startHedge(ctx, log, l, class)
	if err != nil {
		return fmt.Errorf("hedging lease %s: %w", l.ID, err)
	}
	if hedged == nil || hedged.HedgedAt.IsZero() {
		p.hedges.next.Store(l.ID, p.now().Add(hedgeRetry))
	}
	return nil
}

// startHedge makes the hedge of lease l, in one transaction with the checks
// that it is still wanted and allowed: the lease still starting and never
// hedged, its job still queued, room under max_leases and
// max_spend_per_hour. It returns the lease as updated when it made one.
func (p *Provisioner) startHedge(ctx context.Context, log *slog.Logger, l *Lease, class *Class) (*Lease, error) {
	var hedge, out *Lease
	skip := ""
	err := p.cfg.Store.InTx(ctx, func(tx Tx) error {
		hedge, out, skip = nil, nil, ""
		cur, err := tx.Lease(ctx, l.ID)
		if err != nil {
			return err
		}
		if !p.hedgeDue(cur, class) {
			out = cur // moved on, or hedged by another process
			return nil
		}
		if skip, err = p.hedgeAllowed(ctx, tx, cur); err != nil || skip != "" {
			return err
		}
		now := p.now()
		hedge = p.newLease(cur.Class, cur.Scope, nil)
		hedge.JobID, hedge.RunAttempt, hedge.QueuedAt = cur.JobID, cur.RunAttempt, cur.QueuedAt
		hedge.HedgeOf = cur.ID
		if err := tx.InsertLease(ctx, hedge); err != nil {
			return err
		}
		if out, err = tx.UpdateLease(ctx, cur.ID, func(l *Lease) { l.HedgedAt = now }); err != nil {
			return err
		}
		waited := now.Sub(hedgeClock(cur, class)).Round(time.Second)
		if err := tx.NoteLease(ctx, cur.ID, fmt.Sprintf("hedge %s started: no runner online %s after the create call", hedge.ID, waited)); err != nil {
			return err
		}
		return tx.Enqueue(ctx, ProvisionArgs{LeaseID: hedge.ID}, nil)
	})
	if err != nil {
		return nil, err
	}
	if skip != "" {
		if last, _ := p.hedges.skipped.Swap(l.ID, skip); last != skip {
			log.Info("lease due a hedge gets none", "reason", skip)
			if o, ok := p.cfg.Observer.(HedgeObserver); ok {
				o.HedgeSkipped(l.Class, skip)
			}
		}
		return nil, nil
	}
	if hedge == nil {
		return out, nil
	}
	log.Info("hedge started", "hedge_lease_id", hedge.ID, "after", class.HedgeAfter)
	if o, ok := p.cfg.Observer.(HedgeObserver); ok {
		o.HedgeStarted(l.Class)
	}
	p.announce(ctx, ProvisionArgs{LeaseID: hedge.ID})
	return out, nil
}

// hedgeAllowed says why lease l may not be hedged now ("" when it may): a
// hedge spends nothing for a job that no longer waits, nor over a limit.
func (p *Provisioner) hedgeAllowed(ctx context.Context, tx Tx, l *Lease) (string, error) {
	gone, err := p.hedgeJobGone(ctx, tx, l)
	if err == nil && gone && l.JobID != 0 {
		gone, err = p.hedgesCoverQueue(ctx, tx, l)
	}
	if err != nil {
		return "", err
	}
	if gone {
		return HedgeSkipJobGone, nil
	}
	room, err := p.leaseRoom(ctx, tx, l.Class)
	if err != nil {
		return "", err
	}
	if room <= 0 {
		return HedgeSkipNoRoom, nil
	}
	if limit := p.cfg.Limits.MaxSpendPerHour; limit > 0 {
		if err := tx.Serialize(ctx, "max_spend_per_hour"); err != nil {
			return "", err
		}
		held, err := tx.Leases(ctx, LeaseFilter{States: heldStates})
		if err != nil {
			return "", err
		}
		// The hedge's offer is not chosen yet: the first host's price
		// stands for it (offers are taken cheapest first, so the hedge's
		// is rarely cheaper).
		if heldSpend(held, "")+l.PricePerHour > limit {
			return HedgeSkipBudget, nil
		}
	}
	return "", nil
}

// hedgesCoverQueue reports, for a lease whose own job no longer waits,
// whether no other job needs it hedged either. In webhook mode any runner
// of the class takes the oldest queued job, so the job a slow lease was made
// for is often taken by a faster runner while a later job now waits on the
// slow lease: measured in the time-to-runner benchmark, most jobs ran on a
// lease made for another job (docs/benchmarks.md, "Hedging, paired"), and
// 2 of 9 and 4 of 13 hedge decisions were skipped as job_gone while jobs
// still waited. Such a lease is hedged while the queued jobs of its class
// and scope outnumber the hedges already racing there, so there is never
// more than one hedge per waiting job.
func (p *Provisioner) hedgesCoverQueue(ctx context.Context, tx Tx, l *Lease) (bool, error) {
	queued, _, err := tx.Demand(ctx, l.Class, l.Scope.Key())
	if err != nil || queued == 0 {
		return true, err
	}
	racing, err := p.startingHedges(ctx, tx, l.Class, l.Scope)
	return queued <= racing, err
}

// hedgeJobGone reports whether the job lease l was made for no longer
// waits; for a lease made for no job, whether no job of its class waits in
// its scope.
func (p *Provisioner) hedgeJobGone(ctx context.Context, tx Tx, l *Lease) (bool, error) {
	if l.JobID == 0 {
		queued, _, err := tx.Demand(ctx, l.Class, l.Scope.Key())
		return queued == 0, err
	}
	job, err := tx.Job(ctx, l.JobID, l.RunAttempt)
	if errors.Is(err, ErrNotFound) {
		return true, nil
	}
	if err != nil {
		return false, err
	}
	return job.Status != JobQueued || job.Unservable.Kind != "", nil
}

// hedgeOnline settles a race when lease l's runner came online or took a
// job while starting; l is the lease as the transaction just left it.
//   - l is a hedge whose first lease still starts: l won. It becomes the
//     job's lease (HedgeOf cleared) and the first lease is released.
//   - l is a hedge whose first lease is online already (both came up
//     together): l lost, and is released, unless its runner took a job.
//   - l was hedged and its hedge still starts: l won, the hedge is released.
func (p *Provisioner) hedgeOnline(ctx context.Context, tx Tx, l *Lease) error {
	switch {
	case l.HedgeOf != "":
		first, lerr := tx.Lease(ctx, l.HedgeOf)
		if lerr != nil && !errors.Is(lerr, ErrNotFound) {
			return lerr
		}
		firstOnline := lerr == nil && (first.State == StateIdle || first.State == StateBusy) && first.ReleaseReason == ""
		if firstOnline && l.State != StateBusy {
			return p.requestRelease(ctx, tx, l.ID, reasonHedgeNotNeeded+first.ID+" "+reasonHedgeFirst, "")
		}
		if _, err := tx.UpdateLease(ctx, l.ID, func(l *Lease) { l.HedgeOf = "" }); err != nil {
			return err
		}
		if lerr != nil || !first.State.Starting() {
			// Gone meanwhile without promoting l (it does, as a rule: see
			// hedgeReleased); l is the job's lease now either way.
			return nil
		}
		if err := tx.NoteLease(ctx, l.ID, fmt.Sprintf("hedge of %s won: its runner came online first", first.ID)); err != nil {
			return err
		}
		p.observeWin(l.Class, "second")
		p.hedges.wake.Store(first.ID, p.now())
		return p.requestRelease(ctx, tx, first.ID, fmt.Sprintf("hedge %s %s", l.ID, reasonHedgeFirst), "")
	case !l.HedgedAt.IsZero():
		hedges, err := tx.Leases(ctx, LeaseFilter{HedgeOf: l.ID})
		if err != nil {
			return err
		}
		for _, h := range hedges {
			if !hedgeLive(h) {
				continue
			}
			if h.State == StateBusy {
				// Its runner took a job too: it serves that one.
				if _, err := tx.UpdateLease(ctx, h.ID, func(l *Lease) { l.HedgeOf = "" }); err != nil {
					return err
				}
				continue
			}
			p.observeWin(l.Class, "first")
			p.hedges.wake.Store(h.ID, p.now())
			if err := p.requestRelease(ctx, tx, h.ID, reasonHedgeNotNeeded+l.ID+" "+reasonHedgeFirst, ""); err != nil {
				return err
			}
		}
	}
	return nil
}

// hedgeReleased settles what becomes of the hedge of lease l, which is
// about to be released (or flagged for release) while still starting:
//   - l failed (failure set, or reason "failed"), or was released while
//     its job still waits (`release` by hand): its hedge is promoted
//     (HedgeOf cleared), before the balance of the same transaction, so the
//     balance counts it for the job and rents no third host;
//   - l is not needed any more (its job went): neither is its hedge.
//
// A hedge being released leaves its first lease as it is here; once the
// hedge's host is destroyed, hedgeGone decides whether it may be hedged
// again.
func (p *Provisioner) hedgeReleased(ctx context.Context, tx Tx, l *Lease, reason, failure string) error {
	if l.HedgeOf != "" || l.HedgedAt.IsZero() || l.State == StateIdle || l.State == StateBusy || l.State == StateReleasing || l.State == StateReleased {
		return nil
	}
	hedges, err := tx.Leases(ctx, LeaseFilter{HedgeOf: l.ID})
	if err != nil {
		return err
	}
	failed := failure != "" || reason == "failed" || l.State == StateFailed
	promote := failed
	for _, h := range hedges {
		if !hedgeLive(h) {
			continue
		}
		if !promote {
			// A hedge already booting serves a job that still waits
			// sooner than a new lease would.
			skip, err := p.hedgeJobGone(ctx, tx, l)
			if err != nil {
				return err
			}
			promote = !skip
		}
		if !promote {
			p.hedges.wake.Store(h.ID, p.now())
			if err := p.requestRelease(ctx, tx, h.ID, reasonHedgeNotNeeded+l.ID+" released: "+reason, ""); err != nil {
				return err
			}
			continue
		}
		// Promoted: the job's lease from now on, and not hedged (its
		// HedgedAt set) until l's host is destroyed (hedgeGone), so the
		// job never has a third host.
		if _, err := tx.UpdateLease(ctx, h.ID, func(h *Lease) {
			h.HedgeOf = ""
			h.HedgedAt = p.now()
			h.PromotedFrom = l.ID
		}); err != nil {
			return err
		}
		why := fmt.Sprintf("hedge of %s promoted: %s failed (%s)", l.ID, l.ID, firstNonEmpty(failure, l.Error, reason))
		if !failed {
			why = fmt.Sprintf("hedge of %s promoted: %s released (%s) while its job waits", l.ID, l.ID, reason)
		}
		if err := tx.NoteLease(ctx, h.ID, why); err != nil {
			return err
		}
		p.observeWin(l.Class, "second")
	}
	return nil
}

// hedgeGone is called in the transaction that marks lease l released (its
// host destroyed). When l was a hedge that did not lose a race (it failed,
// or was released by hand) and the lease it hedged still starts, waiting,
// with no other hedge holding a host, that lease may be hedged again: its
// HedgedAt is cleared, and its boot worker is woken to look (the deadline
// scan's backstop does when the worker is elsewhere). Only now, with l's
// host gone, so that the job never has three hosts at once. A hedge that
// lost its race (hedgeLost) leaves its first online or released: nothing
// to do.
func (p *Provisioner) hedgeGone(ctx context.Context, tx Tx, l *Lease) error {
	if l.HedgeOf == "" {
		return p.promotedMayHedge(ctx, tx, l)
	}
	if hedgeLost(l.ReleaseReason) {
		return nil
	}
	first, err := tx.Lease(ctx, l.HedgeOf)
	if errors.Is(err, ErrNotFound) {
		return nil
	}
	if err != nil {
		return err
	}
	if first.HedgedAt.IsZero() || first.HedgeOf != "" || first.Warm || first.ReleaseReason != "" ||
		(first.State != StateBooting && first.State != StateBootstrapping) {
		return nil
	}
	hedges, err := tx.Leases(ctx, LeaseFilter{HedgeOf: first.ID})
	if err != nil {
		return err
	}
	for _, h := range hedges {
		if h.ID != l.ID && h.State != StateReleased {
			return nil // another hedge still holds (or is about to hold) a host
		}
	}
	if _, err := tx.UpdateLease(ctx, first.ID, func(f *Lease) { f.HedgedAt = time.Time{} }); err != nil {
		return err
	}
	why := firstNonEmpty(l.Error, l.ReleaseReason)
	if err := tx.NoteLease(ctx, first.ID, fmt.Sprintf("hedge %s gone (%s) while this lease still starts: it may be hedged again", l.ID, why)); err != nil {
		return err
	}
	p.hedges.next.Delete(first.ID)
	p.hedges.wake.Store(first.ID, p.now())
	return nil
}

// promotedMayHedge is hedgeGone's other half: l, released now (its host
// destroyed), was a lease whose hedge was promoted to serve its job when l
// failed. While l's host stood, the promoted lease was not hedged (two
// hosts for the job already); now it may be, at once if it is past
// hedge_after, under the usual checks. Without this, a job whose first
// host and hedge both never boot waits for the hedge's own boot timeout,
// hedge_after past the first's: the benchmark's 14-minute job
// (docs/benchmarks.md, "The 14m00s job").
func (p *Provisioner) promotedMayHedge(ctx context.Context, tx Tx, l *Lease) error {
	if l.HedgedAt.IsZero() {
		return nil // never hedged, so nothing was promoted from it
	}
	starting, err := tx.Leases(ctx, LeaseFilter{States: []State{StateBooting, StateBootstrapping}, Class: l.Class, ScopeKey: l.Scope.Key()})
	if err != nil {
		return err
	}
	for _, c := range starting {
		if c.PromotedFrom != l.ID || c.HedgeOf != "" || c.HedgedAt.IsZero() || c.ReleaseReason != "" || c.Warm {
			continue
		}
		hedges, err := tx.Leases(ctx, LeaseFilter{HedgeOf: c.ID})
		if err != nil {
			return err
		}
		live := false
		for _, h := range hedges {
			live = live || h.State != StateReleased
		}
		if live {
			continue // hedged already; one hedge at a time
		}
		if _, err := tx.UpdateLease(ctx, c.ID, func(c *Lease) { c.HedgedAt = time.Time{} }); err != nil {
			return err
		}
		if err := tx.NoteLease(ctx, c.ID, fmt.Sprintf("%s, whose hedge this lease was, is gone (host destroyed): this lease may be hedged in turn", l.ID)); err != nil {
			return err
		}
		p.hedges.next.Delete(c.ID)
		p.hedges.wake.Store(c.ID, p.now())
	}
	return nil
}

// hedgeLive: a hedge still racing (not released nor asked to be).
func hedgeLive(h *Lease) bool {
	return h.ReleaseReason == "" && h.State != StateReleasing && h.State != StateReleased && h.State != StateFailed
}

func firstNonEmpty(s ...string) string {
	for _, v := range s {
		if v != "" {
			return v
		}
	}
	return ""
}

func (p *Provisioner) observeWin(class, winner string) {
	if o, ok := p.cfg.Observer.(HedgeObserver); ok {
		o.HedgeWon(class, winner)
	}
}

// startingHedges counts the hedges of the class in the scope still racing:
// the balance does not count them as leases that can take a job, as they
// serve a job that has its lease already.
func (p *Provisioner) startingHedges(ctx context.Context, tx Tx, class string, scope Scope) (int, error) {
	hs, err := tx.Leases(ctx, LeaseFilter{Class: class, ScopeKey: scope.Key(), Hedges: true,
		States: []State{StatePending, StateProvisioning, StateBooting, StateBootstrapping, StateIdle}})
	if err != nil {
		return 0, err
	}
	n := 0
	for _, h := range hs {
		if h.ReleaseReason == "" {
			n++
		}
	}
	return n, nil
}

// observeHedgeCost counts what a host that lost its race cost. The cost
// runs from the create call's answer to the destroy, in seconds: the
// provider's billing increment is not known here (Lambda bills by the
// started minute, lambda-cloud-api.md §9), so a Lambda loser's figure is
// up to a minute's price low.
func (p *Provisioner) observeHedgeCost(l *Lease, dollars float64) {
	if !hedgeLost(l.ReleaseReason) {
		return
	}
	if o, ok := p.cfg.Observer.(HedgeObserver); ok {
		o.HedgeExtraCost(l.Class, dollars)
	}
}

// hedgeOffers leaves out, for a hedge, the offer and the machine of the
// lease it hedges: a second host on the machine that is slow to boot the
// first would likely be as slow, and an exclusive offer is taken anyway.
func (p *Provisioner) hedgeOffers(ctx context.Context, l *Lease, offers []Offer) []Offer {
	if l.HedgeOf == "" {
		return offers
	}
	first, err := p.cfg.Store.Lease(ctx, l.HedgeOf)
	if err != nil {
		return offers
	}
	out := offers[:0:0]
	for _, o := range offers {
		if o.Provider == first.Provider && (o.ID == first.OfferID || (first.MachineID != "" && o.MachineID == first.MachineID)) {
			continue
		}
		out = append(out, o)
	}
	return out
}
