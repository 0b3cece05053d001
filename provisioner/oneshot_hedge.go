package provisioner

// Hedged one-shot leases (issue 18, the Action mode): a class with
// HedgeAfter whose first host has not got its runner online that long after
// its first create call gets a second lane of hosts, racing the first. The
// lanes share the lease id (stop and gc find both hosts by the marker), the
// SSH credentials and the runner name. A runner name is unique in its scope
// (GitHub answers 409 to a second registration, reference
// github-runners.md §3), so the lanes register it in turn: the first host
// that passes its checks registers the runner; a host ready while the other
// holds the name waits, and registers only if the other fails and has
// removed its runner. The first runner online serves; the other lane is
// cancelled and destroys its host before LeaseNow returns, so a job queued
// for the label finds one runner and one host. Each lane holds at most one
// host at a time: never more than two hosts for the lease.

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"
)

// errLostRace ends the lane that lost: the other lane's runner came online.
// errNotCleaned marks a lane's end that left its host or runner behind.
var (
	errLostRace   = errors.New("the other host's runner came online first")
	errNotCleaned = errors.New("cleaning up failed too")
)

// oneShotRace is what a hedged lease's two lanes share.
type oneShotRace struct {
	mu sync.Mutex
	// offer and instance are what each lane holds now: the offer it
	// creates on or created on, its instance once the create answered.
	offer    [2]*Offer
	instance [2]string
	// registrant is the lane holding the runner name, -1 none; freed is
	// closed when it lets go.
	registrant int
	freed      chan struct{}
	// firstCreate is closed at the first lane's first create call: the
	// hedge's clock starts there, as a webhook lease's does (hedgeClock).
	firstCreate chan struct{}
	winner      int // -1 until a lane's runner is online
}

func newOneShotRace() *oneShotRace {
	return &oneShotRace{registrant: -1, winner: -1, freed: make(chan struct{}), firstCreate: make(chan struct{})}
}

// besideOther drops the offers on the other lane's machine: a hedge on the
// machine it hedges shares its fate.
func (r *oneShotRace) besideOther(who int, offers []Offer) ([]Offer, error) {
	r.mu.Lock()
	other := r.offer[1-who]
	r.mu.Unlock()
	if other == nil {
		return offers, nil
	}
	out := offers[:0:0]
	for _, o := range offers {
		if o.Provider == other.Provider && (o.ID == other.ID || (o.MachineID != "" && o.MachineID == other.MachineID)) {
			continue
		}
		out = append(out, o)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("%w beside the other host's machine", ErrNoOffer)
	}
	return out, nil
}

func (r *oneShotRace) creating(who int, o Offer) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.offer[who] = &o
	if who == 0 {
		select {
		case <-r.firstCreate:
		default:
			close(r.firstCreate)
		}
	}
}

func (r *oneShotRace) created(who int, id string) {
	r.mu.Lock()
	r.instance[who] = id
	r.mu.Unlock()
}

// register waits until the runner name is free or this lane's, and takes it.
func (r *oneShotRace) register(ctx context.Context, who int, progress func(string, ...any)) error {
	said := false
	for {
		r.mu.Lock()
		if r.registrant < 0 || r.registrant == who {
			r.registrant = who
			r.mu.Unlock()
			return nil
		}
		ch := r.freed
		r.mu.Unlock()
		if !said {
			progress("host ready, but the other host registered the runner first: waiting to see whether it comes online")
			said = true
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// decide names the winner; the other lane, cancelled next, sees that it lost.
func (r *oneShotRace) decide(who int) {
	r.mu.Lock()
	r.winner = who
	r.mu.Unlock()
}

func (r *oneShotRace) lostBy(who int) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.winner >= 0 && r.winner != who
}

// release removes this lane's runner and destroys its host, and nothing of
// the other lane's. A create whose outcome is unknown (ErrCreateUncertain)
// may have left an instance with the lease's marker and no id: those are
// found by the marker, sparing the other lane's instance. The runner name
// is let go only once its runner is removed.
func (r *oneShotRace) release(ctx context.Context, p *Provisioner, who int, l *Lease, failure error) error {
	var errs []error
	if l.RunnerID != 0 {
		if err := p.cfg.GitHub.RemoveRunner(ctx, l.Scope, l.RunnerID); err != nil && !errors.Is(err, ErrNotFound) {
			errs = append(errs, fmt.Errorf("removing runner %s: %w", l.RunnerName, err))
		}
	}
	prov := p.cfg.Providers[l.Provider]
	switch {
	case prov == nil:
	case l.InstanceID != "":
		inst := &Instance{Provider: l.Provider, ID: l.InstanceID, Marker: Marker{Deployment: p.cfg.Deployment, LeaseID: l.ID, Expires: l.ExpiresAt}}
		if err := prov.Destroy(ctx, inst); err != nil && !errors.Is(err, ErrNotFound) {
			errs = append(errs, fmt.Errorf("destroying %s instance %s: %w", l.Provider, l.InstanceID, err))
		}
	case errors.Is(failure, ErrCreateUncertain):
		owned, err := prov.ListOwned(ctx, p.cfg.Deployment)
		if err != nil {
			errs = append(errs, fmt.Errorf("listing %s instances: %w", l.Provider, err))
			break
		}
		r.mu.Lock()
		other := r.instance[1-who]
		r.mu.Unlock()
		for _, inst := range owned {
			if inst.Marker.LeaseID != l.ID || inst.ID == other {
				continue
			}
			if err := prov.Destroy(ctx, inst); err != nil && !errors.Is(err, ErrNotFound) {
				errs = append(errs, fmt.Errorf("destroying %s instance %s: %w", l.Provider, inst.ID, err))
			}
		}
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.offer[who], r.instance[who] = nil, ""
	if r.registrant == who && len(errs) == 0 {
		r.registrant = -1
		close(r.freed)
		r.freed = make(chan struct{})
	}
	return errors.Join(errs...)
}

// leaseNowHedged runs the first lane, and the hedge lane once the first has
// no runner online HedgeAfter after its first create call. The first lane
// whose runner is online wins; LeaseNow returns once the other has
// destroyed its host.
func (p *Provisioner) leaseNowHedged(ctx context.Context, req OneShotRequest, creds *Credentials, started time.Time) (*Lease, error) {
	race := newOneShotRace()
	type result struct {
		who int
		l   *Lease
		err error
	}
	results := make(chan result, 2)
	var lanes [2]*oneShotLane
	var cancels [2]context.CancelFunc
	defer func() {
		for _, c := range cancels {
			if c != nil {
				c()
			}
		}
	}()
	start := func(who int, req OneShotRequest) {
		lctx, cancel := context.WithCancel(ctx)
		cancels[who] = cancel
		lanes[who] = p.newLane(req, creds, started, race, who)
		go func(ln *oneShotLane) {
			l, err := ln.run(lctx)
			results <- result{ln.who, l, err}
		}(lanes[who])
	}
	hedgeReq := req
	hedgeReq.Stage = func(string) {}
	hedgeReq.Progress = func(format string, args ...any) { req.Progress("hedge: "+format, args...) }

	start(0, req)
	running := 1
	firstCreate := race.firstCreate
	var hedgeAt <-chan time.Time
	var hedgedAt time.Time
	var errs [2]error
	for running > 0 {
		select {
		case <-firstCreate:
			firstCreate = nil
			t := time.NewTimer(req.Class.HedgeAfter)
			defer t.Stop()
			hedgeAt = t.C
		case <-hedgeAt:
			hedgeAt = nil
			hedgedAt = p.now()
			req.Progress("no runner online %s after the first create: starting a second host to race the first (hedge_after)", req.Class.HedgeAfter)
			start(1, hedgeReq)
			running++
		case r := <-results:
			running--
			if r.err != nil {
				errs[r.who] = r.err
				if r.who == 0 && hedgedAt.IsZero() {
					// The first lane gave up (timeout, attempts, a failed
					// cleanup) before a hedge was due: none is started.
					running = 0
				}
				continue
			}
			race.decide(r.who)
			if c := cancels[1-r.who]; c != nil {
				c()
			}
			for ; running > 0; running-- {
				// The loser cannot hold the runner name (the winner
				// registered it), so all it may leave is its host, which
				// carries the lease's marker: stop or gc destroys it.
				if o := <-results; errors.Is(o.err, errNotCleaned) {
					p.log.Warn("one-shot lease: the host that lost the race was not destroyed; stop or gc destroys it with the lease", "lease_id", r.l.ID, "error", o.err)
					req.Progress("the other host could not be destroyed (%v); the stop step (or gc) destroys it with the lease", o.err)
				}
			}
			r.l.HedgedAt = hedgedAt
			p.reportRace(req, r.who, hedgedAt, lanes)
			return r.l, nil
		}
	}
	if errs[1] == nil {
		return nil, errs[0]
	}
	return nil, fmt.Errorf("%w; hedge: %w", errs[0], errs[1])
}

// RaceReport is how a hedged one-shot start ended (OneShotRequest.Raced):
// when the hedge started, who won, and what the loser's last host was held
// for (zero when the loser never got a host).
type RaceReport struct {
	HedgedAt          time.Time
	HedgeWon          bool
	LoserProvider     string
	LoserInstance     string
	LoserHeld         time.Duration
	LoserPricePerHour float64
}

// LoserCost is the most the loser's last host can have cost: its price for
// the time it was held.
func (r RaceReport) LoserCost() float64 { return r.LoserPricePerHour * r.LoserHeld.Hours() }

// reportRace says who won and what the loser's host was held for.
func (p *Provisioner) reportRace(req OneShotRequest, winner int, hedgedAt time.Time, lanes [2]*oneShotLane) {
	if hedgedAt.IsZero() {
		return
	}
	rep := RaceReport{HedgedAt: hedgedAt, HedgeWon: winner == 1}
	held := ""
	if loser := lanes[1-winner]; loser != nil && loser.released != "" {
		rep.LoserProvider, rep.LoserInstance, rep.LoserHeld, rep.LoserPricePerHour = loser.l.Provider, loser.released, loser.held, loser.l.PricePerHour
		held = fmt.Sprintf("; its last host (%s %s) was held %s at $%.3f/h: at most $%.4f", rep.LoserProvider, rep.LoserInstance,
			rep.LoserHeld.Round(time.Second), rep.LoserPricePerHour, rep.LoserCost())
	}
	if req.Raced != nil {
		req.Raced(rep)
	}
	if rep.HedgeWon {
		req.Progress("the hedge won: its runner came online first; the first host is destroyed%s", held)
		return
	}
	req.Progress("the first host won; the hedge is destroyed%s", held)
}
