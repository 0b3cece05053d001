package github

// One job's runner is looked at many times: every PollInterval while it
// comes online, and on every reconcile pass while it is idle or busy (has
// it gone?). Asked one GET per lease each time, a burst of a hundred leases
// costs hundreds of requests a minute. Instead every lease of a scope
// shares one listing of the scope's runners, refreshed at most every
// runnerViewMaxAge and only when someone asks; with ETags an unchanged
// page costs nothing (budget.go).

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/crabbox/crabbox-runner/provisioner"
)

// runnerViewMaxAge is how old a scope's listing may be to answer Runner: the
// provisioner's default poll interval.
const runnerViewMaxAge = 2 * time.Second

// maxRegistered bounds the registrations remembered.
const maxRegistered = 100_000

type runnerViews struct {
	mu      sync.Mutex
	byScope map[string]*runnerView
	// registered is when this process registered a runner (its
	// GenerateJITConfig returned): a listing asked for later must show it.
	registered map[int64]time.Time
}

type runnerView struct {
	mu       sync.Mutex
	fetching chan struct{} // closed when the listing in flight ends
	started  time.Time     // when the last listing was asked for
	runners  map[int64]provisioner.Runner
	pages    int
	err      error
}

func (v *runnerViews) init() {
	v.byScope = map[string]*runnerView{}
	v.registered = map[int64]time.Time{}
}

func (v *runnerViews) view(scope provisioner.Scope) *runnerView {
	v.mu.Lock()
	defer v.mu.Unlock()
	rv := v.byScope[scope.Key()]
	if rv == nil {
		rv = &runnerView{}
		v.byScope[scope.Key()] = rv
	}
	return rv
}

func (v *runnerViews) noteRegistered(id int64, at time.Time) {
	v.mu.Lock()
	defer v.mu.Unlock()
	if len(v.registered) >= maxRegistered {
		clear(v.registered) // then known ones are confirmed one by one
	}
	v.registered[id] = at
}

func (v *runnerViews) registeredAt(id int64) (time.Time, bool) {
	v.mu.Lock()
	defer v.mu.Unlock()
	t, ok := v.registered[id]
	return t, ok
}

// removed drops a runner removed through this client from the scope's
// listing: asked after, it is gone.
func (v *runnerViews) removed(scope provisioner.Scope, id int64) {
	v.mu.Lock()
	rv := v.byScope[scope.Key()]
	v.mu.Unlock()
	if rv != nil {
		rv.mu.Lock()
		defer rv.mu.Unlock()
		if _, ok := rv.runners[id]; !ok {
			return
		}
		// Callers read a listing's map without the lock: it is never
		// changed once handed out, so a removal makes a new one.
		m := make(map[int64]provisioner.Runner, len(rv.runners))
		for k, r := range rv.runners {
			if k != id {
				m[k] = r
			}
		}
		rv.runners = m
	}
}

// gone forgets a runner GitHub no longer has.
func (v *runnerViews) gone(id int64) {
	v.mu.Lock()
	delete(v.registered, id)
	v.mu.Unlock()
}

// listing returns a listing of the scope asked for no earlier than
// notBefore, asking for one if needed; callers asking at once share it.
func (c *Client) listing(ctx context.Context, scope provisioner.Scope, notBefore time.Time) (map[int64]provisioner.Runner, int, time.Time, error) {
	rv := c.views.view(scope)
	for {
		rv.mu.Lock()
		if rv.fetching == nil && rv.err == nil && rv.runners != nil && !rv.started.Before(notBefore) {
			runners, pages, started := rv.runners, rv.pages, rv.started
			rv.mu.Unlock()
			return runners, pages, started, nil
		}
		if ch := rv.fetching; ch != nil {
			rv.mu.Unlock()
			select {
			case <-ch:
			case <-ctx.Done():
				return nil, 0, time.Time{}, ctx.Err()
			}
			rv.mu.Lock()
			err, started := rv.err, rv.started
			rv.mu.Unlock()
			if err != nil && !started.Before(notBefore) {
				if errors.Is(err, provisioner.ErrDeferred) && !provisioner.IsBackground(ctx) {
					// Refused to a background caller; this one may ask.
					notBefore = time.Now()
					continue
				}
				return nil, 0, time.Time{}, err
			}
			continue
		}
		ch := make(chan struct{})
		rv.fetching = ch
		started := time.Now()
		rv.mu.Unlock()

		// The listing outlives a waiter that gives up; the client's
		// timeout bounds it.
		list, pages, err := c.listAll(context.WithoutCancel(ctx), scope)

		rv.mu.Lock()
		rv.fetching, rv.started, rv.err = nil, started, err
		if err == nil {
			m := make(map[int64]provisioner.Runner, len(list))
			for _, r := range list {
				m[r.ID] = r
			}
			rv.runners, rv.pages = m, pages
		}
		rv.mu.Unlock()
		close(ch)
		if err != nil {
			return nil, 0, time.Time{}, err
		}
		return rv.runnersSnapshot()
	}
}

func (rv *runnerView) runnersSnapshot() (map[int64]provisioner.Runner, int, time.Time, error) {
	rv.mu.Lock()
	defer rv.mu.Unlock()
	return rv.runners, rv.pages, rv.started, nil
}

// Runner returns one runner, or provisioner.ErrNotFound, from the scope's
// shared listing (at most runnerViewMaxAge old). A runner this process
// registered after that listing was asked for is not in it yet: it is
// offline (it was registered offline, and is shown online only once its
// host polls), which the next listing will tell. Absent from a listing
// asked for after its registration, the runner is gone if the listing was
// one page (pages can shift under a listing); otherwise, and for runners
// this process did not register (after a restart), a GET of the runner
// decides.
func (c *Client) Runner(ctx context.Context, scope provisioner.Scope, id int64) (*provisioner.Runner, error) {
	if _, err := parseScope(scope); err != nil {
		return nil, err
	}
	regAt, known := c.views.registeredAt(id)
	runners, pages, started, err := c.listing(ctx, scope, time.Now().Add(-runnerViewMaxAge))
	if err != nil {
		return nil, fmt.Errorf("github: get runner %d in %s: %w", id, scope, err)
	}
	if r, ok := runners[id]; ok {
		return &r, nil
	}
	if known && started.Before(regAt) {
		return &provisioner.Runner{ID: id, Status: "offline"}, nil
	}
	if known && pages <= 1 {
		c.views.gone(id)
		return nil, fmt.Errorf("github: runner %d in %s: %w", id, scope, provisioner.ErrNotFound)
	}
	r, err := c.runnerByID(ctx, scope, id)
	if errors.Is(err, provisioner.ErrNotFound) {
		c.views.gone(id)
	}
	return r, err
}
