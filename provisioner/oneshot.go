package provisioner

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"
	"time"
)

// OneShotRequest asks for one host, leased now and waited for, with no store
// and no queue: the Action mode, where a workflow job starts a runner for a
// later job and a stop job destroys it. The instance's marker carries the
// expiry, so gc enforces it if stop never runs.
type OneShotRequest struct {
	LeaseID    string
	Class      Class
	Scope      Scope
	RunnerName string
	// Labels are the runner's labels; in Action mode one of them is unique
	// to the workflow run, so no other job can take the runner.
	Labels  []string
	Expires time.Time
	// Timeout bounds the whole start, across offers, until the runner is
	// online; the class's BootTimeout bounds each host's part of it.
	Timeout time.Duration
	// Progress, when set, gets one readable line per step.
	Progress func(format string, args ...any)
	// Stage, when set, is told when each stage of a host's start begins
	// (the Stage* names), so a caller can time them and say which failed.
	Stage func(stage string)
	// Raced, when set, is told how a hedged start's race ended, once, if
	// a hedge was started and a runner came online.
	Raced func(RaceReport)
	// Attempts bounds the offers tried; 0 tries offers until Timeout.
	Attempts int
	// Smoke puts the smoke mark on the instance's marker (Marker.Smoke).
	Smoke bool
	// InstallOnly checks the host and installs the runner without
	// registering or starting it: for a smoke without GitHub credentials.
	// The provisioner then needs no GitHub.
	InstallOnly bool
}

// The stages of a one-shot host's start, in order, as OneShotRequest.Stage
// names them. register and online are skipped with InstallOnly.
const (
	StageCreate    = "create"    // Provider.Create with the marker
	StageBoot      = "boot"      // until SSH answers with the expected host key
	StageRegister  = "register"  // the JIT runner registered at GitHub
	StageBootstrap = "bootstrap" // host checks (architecture, GPU), runner installed and verified
	StageOnline    = "online"    // until GitHub shows the runner online
)

// LeaseNow creates a host for the request, bootstraps its runner and waits
// until GitHub shows the runner online. Offers are tried cheapest first; a
// taken offer, a host that fails to boot, has no runner online within the
// class's BootTimeout or fails its GPU check is destroyed and the next
// offer tried, until Timeout. On failure nothing it created is left
// behind: every host is destroyed and the runner removed.
// A class with HedgeAfter races a second host against a slow first
// (oneshot_hedge.go).
func (p *Provisioner) LeaseNow(ctx context.Context, req OneShotRequest) (*Lease, error) {
	if req.LeaseID == "" || req.RunnerName == "" || len(req.Labels) == 0 {
		return nil, errors.New("provisioner: LeaseNow needs a lease id, a runner name and labels")
	}
	if p.cfg.Bootstrapper == nil || (p.cfg.GitHub == nil && !req.InstallOnly) {
		return nil, errors.New("provisioner: LeaseNow needs GitHub and a bootstrapper")
	}
	if req.Progress == nil {
		req.Progress = func(string, ...any) {}
	}
	if req.Stage == nil {
		req.Stage = func(string) {}
	}
	ctx, cancel := context.WithTimeout(ctx, req.Timeout)
	defer cancel()
	started := p.now()
	creds, err := p.cfg.Bootstrapper.NewCredentials(nil, true)
	if err != nil {
		return nil, err
	}
	if req.Class.HedgeAfter > 0 && !req.InstallOnly {
		return p.leaseNowHedged(ctx, req, creds, started)
	}
	return p.newLane(req, creds, started, nil, 0).run(ctx)
}

// oneShotLane is one line of hosts for a one-shot lease: an offer, and
// when its host fails the next, one host at a time. Without hedging a
// lease has one lane; with it a second lane races the first (race).
type oneShotLane struct {
	p       *Provisioner
	req     OneShotRequest
	l       *Lease
	creds   *Credentials
	started time.Time
	race    *oneShotRace // nil without hedging
	who     int          // the lane's index in race
	// hostCreated is when the lane's current host was created, zero
	// while it has none; released and held say which host release undid
	// last and how long after its create.
	hostCreated time.Time
	released    string
	held        time.Duration
}

func (p *Provisioner) newLane(req OneShotRequest, creds *Credentials, started time.Time, race *oneShotRace, who int) *oneShotLane {
	l := &Lease{
		ID: req.LeaseID, Class: req.Class.Name, Scope: req.Scope, State: StatePending,
		RunnerName: req.RunnerName, CreatedAt: started, ExpiresAt: req.Expires, BootDeadline: started.Add(req.Timeout),
	}
	return &oneShotLane{p: p, req: req, l: l, creds: creds, started: started, race: race, who: who}
}

func (ln *oneShotLane) run(ctx context.Context) (*Lease, error) {
	p, l, req, progress := ln.p, ln.l, ln.req, ln.req.Progress
	class := req.Class
	var failures []string
	for attempt := 1; ; attempt++ {
		offers, err := p.offers(ctx, &class)
		if err == nil && ln.race != nil {
			offers, err = ln.race.besideOther(ln.who, offers)
		}
		if err != nil {
			return nil, p.oneShotFailed(l, failures, err)
		}
		offer := offers[0]
		progress("offer %d: %s %dx %s at $%.3f/h (%s)", attempt, offer.Provider, offer.GPUCount, offer.GPU, offer.PricePerHour, offer.ID)
		failure := p.oneShotHost(ctx, ln, &class, offer)
		if failure == nil {
			l.State = StateIdle
			l.IdleSince = p.now()
			if req.InstallOnly {
				progress("host checked and runner %s installed after %s", l.RunnerName, p.now().Sub(ln.started).Round(time.Second))
			} else {
				progress("runner %s online after %s", l.RunnerName, p.now().Sub(ln.started).Round(time.Second))
			}
			return l, nil
		}
		lost := ln.race != nil && ln.race.lostBy(ln.who)
		if !lost {
			failures = append(failures, fmt.Sprintf("%s %s: %v", offer.Provider, offer.ID, failure))
			progress("offer %s failed: %v", offer.ID, failure)
		}
		// Clean up this attempt before the next; the cleanup itself must
		// not be cut short by the timeout that may have caused it.
		cleanCtx, cleanCancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Minute)
		cerr := ln.release(cleanCtx, failure)
		cleanCancel()
		if lost {
			if cerr != nil {
				return nil, fmt.Errorf("lost the race; %w: %w", errNotCleaned, cerr)
			}
			return nil, errLostRace
		}
		if cerr != nil {
			return nil, fmt.Errorf("%w; %w: %w", p.oneShotFailed(l, failures, failure), errNotCleaned, cerr)
		}
		if req.Attempts > 0 && attempt >= req.Attempts {
			return nil, p.oneShotFailed(l, failures[:len(failures)-1], failure)
		}
		if ctx.Err() != nil {
			return nil, p.oneShotFailed(l, failures, ctx.Err())
		}
		if !errors.Is(failure, ErrOfferUnavailable) {
			p.markBadMachine(l, failure.Error())
		}
		l.InstanceID, l.RunnerID, l.HostKey, l.SSH = "", 0, "", Endpoint{}
	}
}

// release undoes the lane's current host: all of the lease without a race;
// with one, only this lane's runner and host (oneshot_hedge.go).
func (ln *oneShotLane) release(ctx context.Context, failure error) error {
	if !ln.hostCreated.IsZero() {
		ln.released, ln.held = ln.l.InstanceID, ln.p.now().Sub(ln.hostCreated)
		ln.hostCreated = time.Time{}
	}
	if ln.race == nil {
		return ln.p.ReleaseNow(ctx, ln.l)
	}
	return ln.race.release(ctx, ln.p, ln.who, ln.l, failure)
}

func (p *Provisioner) oneShotFailed(l *Lease, failures []string, last error) error {
	if errors.Is(last, context.DeadlineExceeded) {
		last = fmt.Errorf("no runner online within the timeout")
	}
	if len(failures) == 0 {
		return fmt.Errorf("lease %s: %w", l.ID, last)
	}
	return fmt.Errorf("lease %s: %w (tried: %s)", l.ID, last, strings.Join(failures, "; "))
}

// hostClock bounds one host's start, from its creation (the create call's
// answer) to its runner online, by the class's BootTimeout: a host that
// never boots is destroyed and the next offer tried, instead of holding the
// lease until Timeout. As serve's boot deadline, it starts at the creation:
// waiting for the provider's create pace is not boot time. It pauses while
// the host waits for the runner name the other lane of a race holds: that
// wait is not the host's either.
type hostClock struct {
	ctx    context.Context
	cancel context.CancelCauseFunc
	limit  time.Duration
	cause  error // ErrBootTimeout, saying the limit

	mu    sync.Mutex
	timer *time.Timer
	left  time.Duration
	since time.Time
}

func startHostClock(ctx context.Context, limit time.Duration) *hostClock {
	c := &hostClock{limit: limit, left: limit,
		cause: fmt.Errorf("%w: no runner online %s after this host's creation", ErrBootTimeout, limit)}
	c.ctx, c.cancel = context.WithCancelCause(ctx)
	return c
}

func (c *hostClock) pause() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.timer != nil && c.timer.Stop() {
		c.left -= time.Since(c.since)
	}
	c.timer = nil
}

func (c *hostClock) resume() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.limit <= 0 || c.timer != nil {
		return
	}
	c.since = time.Now()
	c.timer = time.AfterFunc(max(c.left, 0), func() { c.cancel(c.cause) })
}

func (c *hostClock) stop() {
	c.pause()
	c.cancel(nil)
}

// explain says that a failure was the host's boot timeout, when it was
// and the failure does not say so already.
func (c *hostClock) explain(parent context.Context, err error) error {
	if err == nil || parent.Err() != nil || errors.Is(err, ErrBootTimeout) || !errors.Is(context.Cause(c.ctx), ErrBootTimeout) {
		return err
	}
	return fmt.Errorf("%w (%w)", c.cause, err)
}

// oneShotHost creates one host from one offer and brings its runner online
// within the class's BootTimeout of its creation. It fills the lease as it goes, so that
// ReleaseNow can undo every step.
func (p *Provisioner) oneShotHost(ctx context.Context, ln *oneShotLane, class *Class, offer Offer) error {
	clock := startHostClock(ctx, class.BootTimeout)
	defer clock.stop()
	return clock.explain(ctx, p.startOneShotHost(clock.ctx, clock, ln, class, offer))
}

func (p *Provisioner) startOneShotHost(ctx context.Context, clock *hostClock, ln *oneShotLane, class *Class, offer Offer) error {
	l, creds, req, progress := ln.l, ln.creds, ln.req, ln.req.Progress
	prov := p.cfg.Providers[offer.Provider]
	req.Stage(StageCreate)
	cr, err := p.createRequest(offer, class, Marker{Deployment: p.cfg.Deployment, LeaseID: l.ID, Expires: l.ExpiresAt, Smoke: req.Smoke}, creds)
	if err != nil {
		return err
	}
	l.Provider, l.OfferID, l.GPU, l.PricePerHour, l.Region, l.MachineID = offer.Provider, offer.ID, offer.GPU, offer.PricePerHour, offer.Region, offer.MachineID
	l.Interruptible = offer.Interruptible
	l.GPUCount, l.GPUMemoryGB = offer.GPUCount, offer.GPUMemoryGB
	l.Attempts++
	if ln.race != nil {
		ln.race.creating(ln.who, offer)
	}
	inst, err := prov.Create(ctx, cr)
	if err != nil {
		if ctx.Err() != nil && !errors.Is(err, ErrCreateUncertain) {
			// Cut short (a timeout, a lost race): the call may have
			// reached the provider, and its instance carries the marker.
			err = fmt.Errorf("%w: the create call was cut short: %w", ErrCreateUncertain, err)
		}
		return err
	}
	clock.resume()
	l.InstanceID, l.State = inst.ID, StateBooting
	ln.hostCreated = p.now()
	if ln.race != nil {
		ln.race.created(ln.who, inst.ID)
	}
	if inst.PricePerHour > 0 {
		l.PricePerHour = inst.PricePerHour
	}
	progress("instance %s created; waiting for SSH", inst.ID)
	req.Stage(StageBoot)
	known := p.expectedHostKey(offer.Provider, creds)
	for {
		ready, key, failure, notYet := p.checkBoot(ctx, offer.Provider, prov, inst.ID, creds, known)
		if failure != nil {
			return failure
		}
		if ready != nil {
			l.SSH, l.HostKey = ready.SSH, key
			break
		}
		if err := sleep(ctx, p.cfg.PollInterval); err != nil {
			return fmt.Errorf("host not reachable over SSH (last: %v): %w", notYet, context.Cause(ctx))
		}
	}
	l.State = StateBootstrapping
	sshUp := p.now()
	if req.InstallOnly {
		progress("SSH up at %s; checking the host and installing runner %s (not registered: no GitHub)", l.SSH.Addr(), l.RunnerName)
	} else {
		progress("SSH up at %s; checking the host, then registering runner %s and installing it", l.SSH.Addr(), l.RunnerName)
	}
	req.Stage(StageBootstrap)
	ep, err := p.dialEndpoint(ctx, offer.Provider, l.SSH)
	if err != nil {
		return err
	}
	// The runner is registered only once the host passed its GPU gate.
	ready := func(ctx context.Context, res *BootstrapResult) (*JITConfig, error) {
		g, err := p.judgeHost(p.log.With("lease_id", l.ID), l, class, res)
		if class.CheckGPU {
			l.GPUCheck = g.String()
			if res.GPU != nil {
				// nvidia-smi's other words (the host's operator chooses
				// them): shown as they were said, for the person reading.
				for _, s := range res.GPU.Said {
					progress("nvidia-smi said: %s", s)
				}
				var names []string
				for _, gpu := range res.GPU.GPUs {
					if !slices.Contains(names, gpu.Name) {
						names = append(names, gpu.Name)
					}
				}
				if len(names) > 0 {
					progress("GPU: %s", strings.Join(names, ", "))
				}
			}
			progress("GPU gate %s", g.String())
		}
		if err != nil {
			return nil, err
		}
		if req.InstallOnly {
			return &JITConfig{RunnerName: l.RunnerName}, nil
		}
		if ln.race != nil {
			// One runner name for the lease: the lanes register it in turn.
			clock.pause()
			err := ln.race.register(ctx, ln.who, progress)
			clock.resume()
			if err != nil {
				return nil, err
			}
		}
		req.Stage(StageRegister)
		jit, err := p.cfg.GitHub.GenerateJITConfig(ctx, l.Scope, l.RunnerName, req.Labels)
		if err != nil {
			return nil, fmt.Errorf("registering runner: %w", err)
		}
		l.RunnerID = jit.RunnerID
		req.Stage(StageBootstrap)
		return jit, nil
	}
	res, err := p.cfg.Bootstrapper.Bootstrap(ctx, BootstrapRequest{
		ProbeRequest: ProbeRequest{Endpoint: ep, Credentials: creds, KnownHostKey: l.HostKey},
		JIT:          &JITConfig{RunnerName: l.RunnerName}, CheckGPU: class.CheckGPU, Scope: l.Scope, InstallOnly: req.InstallOnly,
		Ready: ready,
	})
	if err != nil {
		return err
	}
	if res.RunnerVersion != "" {
		progress("host %s; runner %s installed, its tarball's sha256 verified (%s)", res.Arch, res.RunnerVersion, res.RunnerSHA256)
	}
	if f := fetchSummary(res, sshUp); f != "" {
		progress("runner tarball fetched by the %s", f)
	}
	p.observeBootstrap(offer.Provider, res, sshUp)
	if req.InstallOnly {
		return nil
	}
	req.Stage(StageOnline)
	progress("runner started; waiting for GitHub to show it online")
	for {
		r, err := p.cfg.GitHub.Runner(ctx, l.Scope, l.RunnerID)
		switch {
		case errors.Is(err, ErrNotFound):
			return fmt.Errorf("runner %s disappeared from GitHub before coming online", l.RunnerName)
		case err == nil && (r.Online() || r.Busy):
			return nil
		}
		if err := sleep(ctx, p.cfg.PollInterval); err != nil {
			return fmt.Errorf("runner not online: %w", context.Cause(ctx))
		}
	}
}

// ReleaseNow removes the lease's runner and destroys every instance that
// carries its marker, on every configured provider. It needs nothing but
// the lease id, the scope and the runner name, so a stop step that knows
// only those can run it; everything already gone counts as done.
func (p *Provisioner) ReleaseNow(ctx context.Context, l *Lease) error {
	var errs []error
	switch {
	case p.cfg.GitHub == nil:
		// An InstallOnly lease registered no runner.
	case l.RunnerID != 0:
		if err := p.cfg.GitHub.RemoveRunner(ctx, l.Scope, l.RunnerID); err != nil {
			errs = append(errs, fmt.Errorf("removing runner %s: %w", l.RunnerName, err))
		}
	case l.RunnerName != "":
		r, err := p.cfg.GitHub.RunnerByName(ctx, l.Scope, l.RunnerName)
		switch {
		case errors.Is(err, ErrNotFound):
		case err != nil:
			errs = append(errs, fmt.Errorf("looking up runner %s: %w", l.RunnerName, err))
		default:
			if err := p.cfg.GitHub.RemoveRunner(ctx, l.Scope, r.ID); err != nil {
				errs = append(errs, fmt.Errorf("removing runner %s: %w", l.RunnerName, err))
			}
		}
	}
	for name, prov := range p.cfg.Providers {
		if l.Provider != "" && name != l.Provider && l.InstanceID != "" {
			continue
		}
		owned, err := prov.ListOwned(ctx, p.cfg.Deployment)
		if err != nil {
			errs = append(errs, fmt.Errorf("listing %s instances: %w", name, err))
			continue
		}
		for _, inst := range owned {
			if inst.Marker.LeaseID != l.ID && !(name == l.Provider && inst.ID == l.InstanceID) {
				continue
			}
			if err := prov.Destroy(ctx, inst); err != nil {
				errs = append(errs, fmt.Errorf("destroying %s instance %s: %w", name, inst.ID, err))
			}
		}
	}
	return errors.Join(errs...)
}

// FindLease rebuilds what is known of a one-shot lease from the providers'
// markers alone: its instance, provider, price and start. ErrNotFound when no
// instance carries the lease id. A lease whose start was cut short in a
// hedged race may have two instances: LeaseInstances lists every one.
func (p *Provisioner) FindLease(ctx context.Context, leaseID string) (*Lease, *Instance, error) {
	insts, err := p.LeaseInstances(ctx, leaseID)
	if err != nil {
		return nil, nil, err
	}
	inst := insts[0]
	return &Lease{ID: leaseID, Provider: inst.Provider, InstanceID: inst.ID, PricePerHour: inst.PricePerHour,
		GPU: inst.GPU, ExpiresAt: inst.Marker.Expires, CreatedAt: inst.CreatedAt}, inst, nil
}

// LeaseInstances lists every instance carrying the lease's marker, on every
// configured provider, oldest first. ErrNotFound when there is none.
func (p *Provisioner) LeaseInstances(ctx context.Context, leaseID string) ([]*Instance, error) {
	var out []*Instance
	for _, name := range slices.Sorted(maps.Keys(p.cfg.Providers)) {
		owned, err := p.cfg.Providers[name].ListOwned(ctx, p.cfg.Deployment)
		if err != nil {
			return nil, fmt.Errorf("listing %s instances: %w", name, err)
		}
		for _, inst := range owned {
			if inst.Marker.LeaseID == leaseID {
				if inst.Provider == "" {
					inst.Provider = name
				}
				out = append(out, inst)
			}
		}
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("lease %s: no instance carries it: %w", leaseID, ErrNotFound)
	}
	slices.SortStableFunc(out, func(a, b *Instance) int { return a.CreatedAt.Compare(b.CreatedAt) })
	return out, nil
}
