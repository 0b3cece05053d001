package provisioner

import (
	"math/rand/v2"
	"sync"
	"time"
)

// Offer claims. An exclusive offer (a Vast ask) is one machine: the first
// create takes it and every later create of it is refused (404
// no_such_ask). The leases of a burst all read the same cheapest-first
// list, so without a claim each of them goes after the same first offers
// (seen: 20 leases, 173 refused creates in 28 s). The book hands each
// exclusive offer to one lease at a time, and an offer found taken is
// skipped by every lease of the process at once, not one 404 each.
//
// The book lives in memory, per process: replicas sharing a PostgreSQL
// store may still send two creates for one offer; the provider refuses the
// second (ErrOfferUnavailable) and that replica marks the offer taken. A
// claim in the store would cost a write per create attempt on every
// replica to save a rare refused call.

// offerTakenFor is the default of Config.OfferTakenFor: how long an offer
// stays skipped once rented (by us) or refused as taken. A provider's offer
// listing may show a rented machine for a while; five minutes outlasts
// that, and a machine given back to the market is offered again after it.
const offerTakenFor = 5 * time.Minute

// maxSettled bounds the settled-attempt marks kept (see attemptsSettled).
const maxSettled = 10000

type offerBook struct {
	mu sync.Mutex
	// claims: provider/offer id → the lease whose create is under way.
	claims map[string]string
	// taken: provider/offer id → skipped until then.
	taken map[string]time.Time
	// settled: lease id → its attempts, when every one of them ended with
	// a known outcome in this process (no host, or the host recorded):
	// the lease's next run need not look for a host by its marker. -1: an
	// attempt's outcome is unknown (ErrCreateUncertain); the next run
	// always looks.
	settled map[string]int
}

type claimResult int

const (
	claimed      claimResult = iota
	claimBusy                // another lease is creating it now; it may come back
	claimIsTaken             // rented or refused lately
)

func offerKey(o Offer) string { return o.Provider + "/" + o.ID }

// claim hands an exclusive offer to the lease, unless another lease is
// creating it or it was taken lately.
func (b *offerBook) claim(o Offer, lease string, now time.Time) claimResult {
	k := offerKey(o)
	b.mu.Lock()
	defer b.mu.Unlock()
	if until, ok := b.taken[k]; ok {
		if now.Before(until) {
			return claimIsTaken
		}
		delete(b.taken, k)
	}
	if holder, ok := b.claims[k]; ok && holder != lease {
		return claimBusy
	}
	if b.claims == nil {
		b.claims = map[string]string{}
	}
	b.claims[k] = lease
	return claimed
}

// end ends the lease's claim. taken: the offer was rented (by this lease,
// or maybe: an uncertain create) or refused as taken, so every lease skips
// it for a while; otherwise it is free for the next lease.
func (b *offerBook) end(o Offer, lease string, taken bool, now time.Time, takenFor time.Duration) {
	k := offerKey(o)
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.claims[k] == lease {
		delete(b.claims, k)
	}
	if !taken {
		return
	}
	if b.taken == nil {
		b.taken = map[string]time.Time{}
	}
	b.taken[k] = now.Add(takenFor)
	if len(b.taken) > 4096 {
		// Expired marks are dropped when met; a market of thousands of
		// asks that are never met again is dropped here.
		for k, until := range b.taken {
			if now.After(until) {
				delete(b.taken, k)
			}
		}
	}
}

// settle records the lease's attempts as all known; unsure marks one
// unknown for good (the lease's later runs look for its hosts by marker).
func (b *offerBook) settle(lease string, attempts int, unsure bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.settled == nil || len(b.settled) >= maxSettled {
		// Forgetting only costs a lease one look by its marker.
		b.settled = map[string]int{}
	}
	if unsure || b.settled[lease] < 0 {
		b.settled[lease] = -1
		return
	}
	b.settled[lease] = attempts
}

// attemptsSettled reports whether every create attempt the lease made was
// seen to end in this process, with no host left over.
func (b *offerBook) attemptsSettled(lease string, attempts int) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	n, ok := b.settled[lease]
	return ok && n == attempts
}

// forget drops the lease's marks once it has its host.
func (b *offerBook) forget(lease string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	delete(b.settled, lease)
}

// errOffersClaimed: every fitting offer is being created by another lease
// or was taken lately. The lease waits (offerWait) and looks again, rather
// than send creates that would be refused.
var errOffersClaimed = errorString("every fitting offer is being created by another lease or was taken")

type errorString string

func (e errorString) Error() string { return string(e) }

// offerWait is how long a lease with no offer left waits before it looks
// again: a few poll intervals, with jitter so that the waiting leases of a
// burst do not all ask the provider for offers at the same moment.
func (p *Provisioner) offerWait() time.Duration {
	d := 2 * p.cfg.PollInterval
	return d + rand.N(3*p.cfg.PollInterval+1)
}
