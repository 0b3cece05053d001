package provisioner

// Bad machines: a machine whose host failed a lease (it did not boot in
// time, offered an SSH endpoint we refuse, failed its GPU check or host
// key) is avoided for a while. The marks live in the store, so every
// replica and a restarted server know them; each process reads them into
// a copy at most every badMachinesRefresh, so looking at offers costs no
// query per offer.

import (
	"cmp"
	"context"
	"slices"
	"sync"
	"time"
)

// DefaultBadMachineTTL is how long a machine that failed a lease is
// avoided when Config.BadMachineTTL is zero. A marketplace host that failed
// once tends to fail again the same day (a broken driver, a GPU that fell
// off the bus, a full disk), and the market has many others; forever would
// shrink it for good, since hosts do get repaired.
const DefaultBadMachineTTL = 24 * time.Hour

// DefaultBadPoolTTL is how long a capacity pool (Capabilities.MachinePools:
// a Lambda instance type in a region) is tried last after one of its hosts
// failed, when Config.BadPoolTTL is zero. A pool is not one machine: the
// next launch there most likely lands on another, so a pool is only put
// behind the other offers, never skipped, and for a shorter while.
const DefaultBadPoolTTL = time.Hour

// badMachinesRefresh bounds how stale a process's copy of the store's marks
// may be: a mark made by another replica is seen within it.
const badMachinesRefresh = 5 * time.Second

// badMachinesWriteTimeout bounds one mark's write to the store.
const badMachinesWriteTimeout = 30 * time.Second

// BadMachine is one machine being avoided. For a provider with machine
// pools, Machine names the pool.
type BadMachine struct {
	Provider string
	Machine  string
	// Until is when the machine is offered again.
	Until time.Time
	// Reason and LeaseID are the latest mark's: what failed, on which lease.
	Reason  string
	LeaseID string
	// FirstAt is the first mark's time and LastAt the latest's; Marks
	// counts the marks since the first.
	FirstAt time.Time
	LastAt  time.Time
	Marks   int
}

// BadMachineObserver is told what avoiding bad machines does (the metrics
// package implements it).
type BadMachineObserver interface {
	// OffersAvoided counts offers of a provider on bad machines, left out
	// ("skipped") or put behind the others ("tried_last", for pools), on
	// one look at the offers.
	OffersAvoided(provider, how string, n int)
}

// How an offer on a bad machine is avoided.
const (
	AvoidSkipped   = "skipped"
	AvoidTriedLast = "tried_last"
)

// BadMachineSet looks machines up among marks. The zero value holds none.
type BadMachineSet map[string]BadMachine

// NewBadMachineSet indexes marks; of two for one machine the later wins.
func NewBadMachineSet(marks []BadMachine) BadMachineSet {
	s := BadMachineSet{}
	for _, m := range marks {
		s.add(m)
	}
	return s
}

func badKey(provider, machine string) string { return provider + "/" + machine }

func (s BadMachineSet) add(m BadMachine) {
	k := badKey(m.Provider, m.Machine)
	if old, ok := s[k]; !ok || m.Until.After(old.Until) {
		s[k] = m
	}
}

// Lookup returns the machine's mark if it has not run out at now.
func (s BadMachineSet) Lookup(provider, machine string, now time.Time) (BadMachine, bool) {
	if machine == "" {
		return BadMachine{}, false
	}
	m, ok := s[badKey(provider, machine)]
	if !ok || !now.Before(m.Until) {
		return BadMachine{}, false
	}
	return m, true
}

// AvoidedOffer is an offer on a bad machine, with the mark and how it is
// avoided (AvoidSkipped, AvoidTriedLast).
type AvoidedOffer struct {
	Offer Offer
	Mark  BadMachine
	How   string
}

// AvoidBadMachines splits offers, keeping their order: those to try (the
// offers on no bad machine, then those on bad pools), and those skipped.
// pools says whether a provider's machine ids name capacity pools.
func AvoidBadMachines(offers []Offer, bad BadMachineSet, pools func(provider string) bool, now time.Time) (try []Offer, avoided []AvoidedOffer) {
	return avoidBadMachines(offers, func(provider, machine string) (BadMachine, bool) { return bad.Lookup(provider, machine, now) }, pools)
}

// avoidBadMachines is AvoidBadMachines with the marks looked up by lookup.
func avoidBadMachines(offers []Offer, lookup func(provider, machine string) (BadMachine, bool), pools func(provider string) bool) (try []Offer, avoided []AvoidedOffer) {
	try = make([]Offer, 0, len(offers))
	var last []Offer
	for _, o := range offers {
		m, ok := lookup(o.Provider, o.MachineID)
		switch {
		case !ok:
			try = append(try, o)
		case pools(o.Provider):
			last = append(last, o)
			avoided = append(avoided, AvoidedOffer{Offer: o, Mark: m, How: AvoidTriedLast})
		default:
			avoided = append(avoided, AvoidedOffer{Offer: o, Mark: m, How: AvoidSkipped})
		}
	}
	return append(try, last...), avoided
}

// badMachines is this process's view of the marks: its own, kept even when
// their write failed, and the store's as last read.
type badMachines struct {
	mu     sync.Mutex
	local  BadMachineSet
	stored BadMachineSet
	readAt time.Time // wall clock of the last read; zero: read before use
	// reading lets one caller read the store while others use the copy.
	reading sync.Mutex
	writes  sync.WaitGroup
}

// badMachineTTL returns how long the lease's machine is avoided, and
// whether the machine is a pool; a negative TTL avoids nothing.
func (p *Provisioner) badMachineTTL(provider string) (time.Duration, bool) {
	if p.machinePools(provider) {
		return cmpDur(p.cfg.BadPoolTTL, DefaultBadPoolTTL), true
	}
	return cmpDur(p.cfg.BadMachineTTL, DefaultBadMachineTTL), false
}

func (p *Provisioner) machinePools(provider string) bool {
	prov, ok := p.cfg.Providers[provider]
	return ok && prov.Capabilities().MachinePools
}

// markBadMachine avoids the lease's machine for the configured while. The
// mark applies in this process at once and is written to the store in the
// background: some callers hold a transaction (on SQLite, the one writer),
// and a mark is worth keeping even if that transaction rolls back. A write
// that fails is logged; the mark still holds here.
func (p *Provisioner) markBadMachine(l *Lease, why string) {
	if l.MachineID == "" {
		return
	}
	ttl, pool := p.badMachineTTL(l.Provider)
	if ttl < 0 {
		p.log.Info("machine failed a lease; not avoided (bad_machines.avoid_for or avoid_pool_for is negative)", "provider", l.Provider, "machine_id", l.MachineID, "why", why, "lease_id", l.ID)
		return
	}
	now := p.now()
	m := BadMachine{Provider: l.Provider, Machine: l.MachineID, Until: now.Add(ttl), Reason: why, LeaseID: l.ID, FirstAt: now, LastAt: now, Marks: 1}
	p.bad.mu.Lock()
	if p.bad.local == nil {
		p.bad.local = BadMachineSet{}
	}
	// Marks that ran out go, so a long-running process keeps only a
	// day's worth (the store's are pruned by the retention pass).
	for k, old := range p.bad.local {
		if !now.Before(old.Until) {
			delete(p.bad.local, k)
		}
	}
	p.bad.local.add(m)
	p.bad.mu.Unlock()
	if pool {
		p.log.Warn("trying capacity pool last", "provider", l.Provider, "pool", l.MachineID, "for", ttl, "why", why, "lease_id", l.ID)
	} else {
		p.log.Warn("avoiding machine", "provider", l.Provider, "machine_id", l.MachineID, "for", ttl, "why", why, "lease_id", l.ID)
	}
	if p.cfg.Store == nil {
		return
	}
	p.bad.writes.Add(1)
	go func() {
		defer p.bad.writes.Done()
		ctx, cancel := context.WithTimeout(context.Background(), badMachinesWriteTimeout)
		defer cancel()
		err := p.cfg.Store.InTx(ctx, func(tx Tx) error { return tx.MarkBadMachine(ctx, m) })
		if err != nil {
			p.log.Warn("recording bad machine in the store; avoided by this process only", "provider", m.Provider, "machine_id", m.Machine, "error", err)
			return
		}
		// Read again soon: the row may carry earlier marks of others.
		p.bad.mu.Lock()
		p.bad.readAt = time.Time{}
		p.bad.mu.Unlock()
	}()
}

// waitBadMachineWrites waits for the marks being written, or for ctx.
func (p *Provisioner) waitBadMachineWrites(ctx context.Context) {
	done := make(chan struct{})
	go func() { p.bad.writes.Wait(); close(done) }()
	select {
	case <-done:
	case <-ctx.Done():
	}
}

// refreshBadMachines reads the store's marks when the copy is older than
// badMachinesRefresh. The first read is waited for (a restarted server
// must not rent a bad machine before it knows it); later ones are left to
// whichever caller got there first. A failed read keeps the old copy.
func (p *Provisioner) refreshBadMachines(ctx context.Context) {
	if p.cfg.Store == nil {
		return
	}
	p.bad.mu.Lock()
	fresh, first := time.Since(p.bad.readAt) < badMachinesRefresh, p.bad.stored == nil
	p.bad.mu.Unlock()
	if fresh {
		return
	}
	if first {
		p.bad.reading.Lock()
	} else if !p.bad.reading.TryLock() {
		return
	}
	defer p.bad.reading.Unlock()
	p.bad.mu.Lock()
	fresh = time.Since(p.bad.readAt) < badMachinesRefresh
	p.bad.mu.Unlock()
	if fresh {
		return
	}
	marks, err := p.cfg.Store.BadMachines(ctx, p.now())
	p.bad.mu.Lock()
	p.bad.readAt = time.Now()
	if err == nil {
		p.bad.stored = NewBadMachineSet(marks)
	} else if p.bad.stored == nil {
		p.bad.stored = BadMachineSet{}
	}
	p.bad.mu.Unlock()
	if err != nil {
		p.log.Warn("reading bad machines from the store; using the marks known here", "error", err)
	}
}

// badMachine returns the machine's mark, from this process's or the
// store's, whichever ends later.
func (p *Provisioner) badMachine(provider, machine string) (BadMachine, bool) {
	now := p.now()
	p.bad.mu.Lock()
	defer p.bad.mu.Unlock()
	a, okA := p.bad.local.Lookup(provider, machine, now)
	b, okB := p.bad.stored.Lookup(provider, machine, now)
	if okA && (!okB || a.Until.After(b.Until)) {
		return a, true
	}
	return b, okB
}

func (p *Provisioner) isBadMachine(provider, machine string) bool {
	_, bad := p.badMachine(provider, machine)
	return bad
}

// badMachineSet merges this process's marks and the store's.
func (p *Provisioner) badMachineSet() BadMachineSet {
	p.bad.mu.Lock()
	defer p.bad.mu.Unlock()
	s := make(BadMachineSet, len(p.bad.local)+len(p.bad.stored))
	for _, m := range p.bad.stored {
		s.add(m)
	}
	for _, m := range p.bad.local {
		s.add(m)
	}
	return s
}

// BadMachines returns the machines this process avoids now (its own marks
// and the store's as last read), by provider and machine.
func (p *Provisioner) BadMachines(ctx context.Context) []BadMachine {
	p.refreshBadMachines(ctx)
	now := p.now()
	var out []BadMachine
	for _, m := range p.badMachineSet() {
		if now.Before(m.Until) {
			out = append(out, m)
		}
	}
	slices.SortFunc(out, func(a, b BadMachine) int {
		return cmp.Or(cmp.Compare(a.Provider, b.Provider), cmp.Compare(a.Machine, b.Machine))
	})
	return out
}

// observeAvoided counts the offers avoided on one look at the offers.
func (p *Provisioner) observeAvoided(avoided []AvoidedOffer) {
	o, ok := p.cfg.Observer.(BadMachineObserver)
	if !ok || len(avoided) == 0 {
		return
	}
	type key struct{ provider, how string }
	n := map[key]int{}
	for _, a := range avoided {
		n[key{a.Offer.Provider, a.How}]++
	}
	for k, c := range n {
		o.OffersAvoided(k.provider, k.how, c)
	}
}

// pruneBadMachines deletes one batch of the marks that ran out.
func (p *Provisioner) pruneBadMachines(ctx context.Context, now time.Time) (int, error) {
	return p.pruneBefore(ctx, now, 0, func(tx Tx, before time.Time) (int, error) {
		if pr, ok := tx.(BadMachinePruner); ok {
			return pr.PruneBadMachines(ctx, before, pruneBatch)
		}
		return 0, nil
	})
}

// BadMachinePruner is a Tx that can delete the bad-machine marks that ran
// out (store/internal/sqlstore implements it).
type BadMachinePruner interface {
	PruneBadMachines(ctx context.Context, before time.Time, limit int) (int, error)
}
