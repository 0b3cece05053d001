package provisioner

import (
	"cmp"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/riverqueue/river"
)

// errWaitLater ends a provision run that is waiting for a host or runner,
// handing the worker slot back; the run comes back shortly.
var errWaitLater = errors.New("wait later")

// stage is the part of a lease's start a worker runs: the create call
// (ProvisionArgs), or what follows it up to an online runner (BootArgs).
type stage int

const (
	stageCreate stage = iota
	stageBoot
)

// provision moves a lease one step at a time through its stage. Every step
// is recorded before the cloud or GitHub call it leads to, so a run that
// dies anywhere can be run again from the lease alone.
func (p *Provisioner) provision(ctx context.Context, id string, st stage) error {
	for step := 0; ; step++ {
		if step > 50 {
			return fmt.Errorf("lease %s: no progress after %d steps", id, step)
		}
		l, err := p.cfg.Store.Lease(ctx, id)
		if errors.Is(err, ErrNotFound) {
			return nil
		}
		if err != nil {
			return err
		}
		if !l.State.Starting() {
			return nil
		}
		log := p.log.With("lease_id", l.ID, "class", l.Class, "state", string(l.State), "job_id", l.JobID)
		class := p.classes[l.Class]
		if class == nil {
			return p.failLease(ctx, l, "class "+l.Class+" is no longer configured")
		}
		if l.ReleaseReason != "" {
			return p.abandon(ctx, l)
		}
		if !l.BootDeadline.IsZero() && p.now().After(l.BootDeadline) {
			if l.State == StateBooting || l.State == StateBootstrapping {
				p.markBadMachine(l, "boot timeout")
			}
			return p.failLease(ctx, l, fmt.Sprintf("boot timeout: no runner online within %s", class.BootTimeout))
		}

		switch l.State {
		case StatePending, StateProvisioning:
			if st != stageCreate {
				// Boot work is enqueued only once the host exists.
				log.Debug("boot work for a lease not created yet; its provision work creates it")
				return nil
			}
			// A pending lease moves to provisioning in the transaction
			// that records its first create attempt (reserve), one write
			// fewer before the create call.
			if err = p.createHost(ctx, log, l, class); err == nil {
				return nil // booting, and handed to its boot work
			}
		case StateBooting, StateBootstrapping:
			if st != stageBoot {
				// Left by an earlier version, which ran every step in
				// the provision work.
				return p.handOff(ctx, l.ID)
			}
			if l.State == StateBooting {
				err = p.waitBoot(ctx, log, l, class)
			} else {
				err = p.bootstrap(ctx, log, l, class)
			}
		}
		var bw *budgetWait
		switch {
		case errors.Is(err, errWaitLater):
			return river.JobSnooze(p.cfg.PollInterval)
		case errors.Is(err, errOffersClaimed):
			if l.Error != errOffersClaimed.Error() {
				// Said once, so that `leases` shows why it waits.
				log.Info("no offer left to this lease; waiting", "error", err)
				if _, uerr := p.updateLease(ctx, l.ID, func(l *Lease) { l.Error = errOffersClaimed.Error() }); uerr != nil {
					log.Warn("recording error", "error", uerr)
				}
			}
			return river.JobSnooze(p.offerWait())
		case errors.As(err, &bw):
			return river.JobSnooze(bw.d)
		case errors.Is(err, errLookAgain):
			continue
		case IsTransitionError(err):
			// Someone else moved the lease (a job took the runner, a deadline
			// took over); look again.
			continue
		case err != nil:
			if cur, lerr := p.cfg.Store.Lease(ctx, id); lerr == nil && !cur.State.Starting() {
				// The lease moved on while this step ran (its runner took a
				// job, or it is being released): the step's failure is moot.
				log.Debug("provision step ended after the lease moved on", "state", string(cur.State), "error", err)
				return nil
			}
			log.Warn("provision step failed; will retry", "error", err)
			if _, uerr := p.updateLease(ctx, l.ID, func(l *Lease) { l.Error = err.Error() }); uerr != nil {
				log.Warn("recording error", "error", uerr)
			}
			return err
		}
	}
}

func (p *Provisioner) updateLease(ctx context.Context, id string, mut func(*Lease)) (*Lease, error) {
	var out *Lease
	err := p.cfg.Store.InTx(ctx, func(tx Tx) error {
		l, err := tx.UpdateLease(ctx, id, mut)
		out = l
		return err
	})
	return out, err
}

// toBooting records a created host and hands the lease to its boot work,
// in one transaction.
func (p *Provisioner) toBooting(ctx context.Context, id, reason string, mut func(*Lease)) error {
	err := p.cfg.Store.InTx(ctx, func(tx Tx) error {
		if _, err := tx.Transition(ctx, id, StateBooting, reason, mut); err != nil {
			return err
		}
		return tx.Enqueue(ctx, BootArgs{LeaseID: id}, nil)
	})
	if err == nil {
		p.announce(ctx, BootArgs{LeaseID: id})
	}
	return err
}

// handOff enqueues the boot work of a lease created by an earlier version.
func (p *Provisioner) handOff(ctx context.Context, id string) error {
	err := p.cfg.Store.InTx(ctx, func(tx Tx) error { return tx.Enqueue(ctx, BootArgs{LeaseID: id}, nil) })
	if err == nil {
		p.announce(ctx, BootArgs{LeaseID: id})
	}
	return err
}

func (p *Provisioner) transition(ctx context.Context, id string, to State, reason string, mut func(*Lease)) error {
	return p.cfg.Store.InTx(ctx, func(tx Tx) error {
		_, err := tx.Transition(ctx, id, to, reason, mut)
		return err
	})
}

// credentials returns the lease's keys. With a KeySecret they are derived
// from it and the lease id, so a restarted server gets the same keys back
// and can finish what the crashed one started; no key is ever stored.
// Without one they are random and die with the process: a lease that lost
// them is failed and replaced.
func (p *Provisioner) credentials(id string, create bool) (*Credentials, error) {
	if c, ok := p.creds.Load(id); ok {
		return c.(*Credentials), nil
	}
	var seed []byte
	if len(p.cfg.KeySecret) > 0 {
		seed = leaseSeed(p.cfg.KeySecret, id)
	} else if !create {
		return nil, errCredentialsLost
	}
	c, err := p.cfg.Bootstrapper.NewCredentials(seed, true)
	if err != nil {
		return nil, err
	}
	if len(p.cfg.PreviousKeySecret) > 0 {
		prev, err := p.cfg.Bootstrapper.NewCredentials(leaseSeed(p.cfg.PreviousKeySecret, id), false)
		if err != nil {
			return nil, err
		}
		c.FallbackPrivatePEMs = [][]byte{prev.ClientPrivatePEM}
	}
	actual, _ := p.creds.LoadOrStore(id, c)
	return actual.(*Credentials), nil
}

// leaseSeed is the seed of one lease's keys under a KeySecret.
func leaseSeed(secret []byte, id string) []byte {
	m := hmac.New(sha256.New, secret)
	m.Write([]byte("crabbox-runner lease keys\x00" + id))
	return m.Sum(nil)
}

var errCredentialsLost = errors.New("the lease's SSH key was lost in a restart")

// waitBoot waits until the provider reports the host running with an SSH
// endpoint and an SSH connection succeeds with the expected host key.
func (p *Provisioner) waitBoot(ctx context.Context, log *slog.Logger, l *Lease, class *Class) error {
	creds, err := p.credentials(l.ID, false)
	if err != nil {
		return p.failLease(ctx, l, err.Error())
	}
	prov := p.cfg.Providers[l.Provider]
	if prov == nil {
		return p.failLease(ctx, l, "provider "+l.Provider+" is no longer configured")
	}
	p.adoptBooting(ctx, log, l, prov, class)
	until := p.waitUntil(l)
	for {
		inst, key, failure, err := p.checkBoot(ctx, l.Provider, prov, l.InstanceID, creds, l.HostKey)
		switch {
		case failure != nil:
			if !errors.Is(failure, ErrHostKeyMismatch) {
				p.markBadMachine(l, failure.Error())
			}
			return p.failLease(ctx, l, failure.Error())
		case inst != nil:
			log.Info("host reachable over SSH", "instance_id", inst.ID, "ssh", inst.SSH.Addr())
			p.cfg.Observer.Phase(l.Class, l.Provider, PhaseCreateToSSH, p.now().Sub(l.StateChangedAt))
			return p.transition(ctx, l.ID, StateBootstrapping, "SSH reachable at "+inst.SSH.Addr(), func(l *Lease) {
				l.SSH = inst.SSH
				l.HostKey = key
			})
		}
		if err := p.hedgeTick(ctx, log, l, class); err != nil {
			return err
		}
		if p.now().After(until) {
			if err != nil {
				log.Info("host not ready yet", "error", err)
			}
			return errWaitLater
		}
		if err := sleep(ctx, p.cfg.PollInterval); err != nil {
			return err
		}
	}
}

// bootstrap checks the host (the GPU gate), registers the JIT runner,
// installs and starts it on the host, and waits until GitHub shows it
// online.
func (p *Provisioner) bootstrap(ctx context.Context, log *slog.Logger, l *Lease, class *Class) error {
	creds, err := p.credentials(l.ID, false)
	if err != nil {
		return p.failLease(ctx, l, err.Error())
	}
	if l.BootstrappedAt.IsZero() {
		// The lease became bootstrapping when SSH answered.
		sshUp := l.StateChangedAt
		// The install below may take long: hedge first if due.
		if err := p.hedgeTick(ctx, log, l, class); err != nil {
			return err
		}
		ep, err := p.dialEndpoint(ctx, l.Provider, l.SSH)
		if errors.Is(err, ErrEndpointRefused) {
			// Recorded by an earlier version, or allowed by a config since changed.
			p.markBadMachine(l, "SSH endpoint refused")
			return p.failLease(ctx, l, err.Error())
		}
		if err != nil {
			return err
		}
		started := p.now()
		// The runner is registered only once the host passed its GPU
		// gate (ready), within the one SSH connection of the bootstrap.
		ready := func(ctx context.Context, res *BootstrapResult) (*JITConfig, error) {
			// The host came up, but its boot ran out or its release was asked
			// for while it was checked: a runner registered now could take a
			// job on a host about to be destroyed. The loop reads the lease
			// again and lets it go.
			if cur, err := p.cfg.Store.Lease(ctx, l.ID); err != nil {
				return nil, err
			} else if cur.ReleaseReason != "" || (!cur.BootDeadline.IsZero() && p.now().After(cur.BootDeadline)) {
				return nil, errLookAgain
			}
			g, err := p.judgeHost(log, l, class, res)
			if err != nil {
				return nil, err
			}
			if class.CheckGPU {
				if l, err = p.updateLease(ctx, l.ID, func(l *Lease) { l.GPUCheck = g.String() }); err != nil {
					return nil, err
				}
			}
			jit, err := p.cfg.GitHub.GenerateJITConfig(ctx, l.Scope, l.RunnerName, class.Labels)
			if until, budget := RetryAt(err); budget {
				// The host is up but GitHub takes no registration before
				// then: wait for it (within the boot deadline), not retry.
				log.Info("GitHub request budget used up; the registration waits", "until", until)
				return nil, &budgetWait{d: min(max(until.Sub(p.now()), time.Second)+time.Second, maxBudgetWait)}
			}
			if err != nil {
				return nil, fmt.Errorf("registering runner %s: %w", l.RunnerName, err)
			}
			// The runner exists on GitHub from now on: record it before
			// anything else so a release removes it whatever happens next.
			if l, err = p.updateLease(ctx, l.ID, func(l *Lease) { l.RunnerID = jit.RunnerID }); err != nil {
				return nil, err
			}
			return jit, nil
		}
		res, err := p.cfg.Bootstrapper.Bootstrap(ctx, BootstrapRequest{
			ProbeRequest: ProbeRequest{Endpoint: ep, Credentials: creds, KnownHostKey: l.HostKey},
			JIT:          &JITConfig{RunnerName: l.RunnerName},
			CheckGPU:     class.CheckGPU,
			Scope:        l.Scope,
			Ready:        ready,
		})
		var bw *budgetWait
		if g, failed := GateFailure(err); failed {
			return p.failGate(ctx, l, g)
		}
		switch {
		case errors.As(err, &bw):
			return err
		case errors.Is(err, ErrGPUCheck), errors.Is(err, ErrHostKeyMismatch):
			p.markBadMachine(l, "GPU check or host key failed")
			return p.failLease(ctx, l, err.Error())
		case err != nil:
			return fmt.Errorf("bootstrapping %s: %w", l.SSH.Addr(), err)
		}
		log.Info("runner started on host", "runner_name", l.RunnerName, "gpu", res.GPUInfo, "arch", res.Arch,
			"runner_version", res.RunnerVersion, "runner_sha256", res.RunnerSHA256, "runner", res.RunnerGot, "deps", res.Deps,
			"phases", phaseSummary(res), "took", p.now().Sub(started).Round(time.Millisecond), fetchAttrs(res, sshUp))
		p.observeBootstrap(l.Provider, res, sshUp)
		if l, err = p.updateLease(ctx, l.ID, func(l *Lease) { l.BootstrappedAt = p.now() }); err != nil {
			return err
		}
	}

	until := p.waitUntil(l)
	for {
		r, err := p.cfg.GitHub.Runner(ctx, l.Scope, l.RunnerID)
		switch {
		case errors.Is(err, ErrNotFound):
			// GitHub removes a JIT runner once its one job is done: a
			// runner gone after a good bootstrap most likely ran a short
			// job before it was seen online (its in_progress webhook may
			// still be on the way). The host's work is over either way,
			// and that is no failure of the host.
			return p.releaseStarting(ctx, l.ID, reasonRunnerDone)
		case err != nil:
			if until, budget := RetryAt(err); budget {
				// Asking again before then is refused anyway.
				return &budgetWait{d: min(max(until.Sub(p.now()), time.Second), maxBudgetWait)}
			}
			log.Warn("reading runner status", "error", err)
		case r.Online() || r.Busy:
			return p.becameIdle(ctx, log, l.ID, class)
		}
		if err := p.hedgeTick(ctx, log, l, class); err != nil {
			return err
		}
		if p.now().After(until) {
			return errWaitLater
		}
		if err := sleep(ctx, p.cfg.PollInterval); err != nil {
			return err
		}
	}
}

func (p *Provisioner) becameIdle(ctx context.Context, log *slog.Logger, id string, class *Class) error {
	var l *Lease
	later := false
	err := p.cfg.Store.InTx(ctx, func(tx Tx) error {
		cur, err := tx.Lease(ctx, id)
		if err != nil {
			return err
		}
		if cur.ReleaseReason != "" && cur.State.Starting() {
			// Asked to release while it started (a hedge race lost, a
			// deadline, by hand) after its runner was registered: the
			// runner came online all the same, and the lease goes now,
			// as it would have at the worker's next look, rather than sit
			// idle with the request unread until its idle timeout.
			log.Info("runner online on a lease asked to release; releasing", "reason", cur.ReleaseReason)
			return p.abandonTx(ctx, tx, cur)
		}
		now := p.now()
		var from State
		var changed time.Time
		l, err = tx.Transition(ctx, id, StateIdle, "runner online", func(l *Lease) {
			from, changed = l.State, l.StateChangedAt
			l.IdleSince = now
			l.Error = ""
		})
		if err != nil {
			return err
		}
		if from == StateBootstrapping {
			p.cfg.Observer.Phase(l.Class, l.Provider, PhaseSSHToOnline, now.Sub(changed))
		}
		if err := p.hedgeOnline(ctx, tx, l); err != nil {
			return err
		}
		log.Info("runner online", "runner_name", l.RunnerName, "boot_time", now.Sub(l.CreatedAt).Round(time.Millisecond))
		// The job this lease was made for may have been taken by another
		// runner meanwhile: the balance releases the lease if nothing else
		// is queued for it.
		later, err = p.balanceSoon(ctx, tx, l.Class, l.Scope)
		return err
	})
	if err == nil && later {
		p.bal.mark(l.Class, l.Scope)
	}
	return err
}

// failLease records a failure and releases the lease; the class is then
// balanced, so a job still queued gets a new lease on another offer.
func (p *Provisioner) failLease(ctx context.Context, l *Lease, why string) error {
	p.log.Warn("lease failed", "lease_id", l.ID, "class", l.Class, "error", why)
	return p.cfg.Store.InTx(ctx, func(tx Tx) error {
		cur, err := tx.Lease(ctx, l.ID)
		if err != nil {
			return err
		}
		if cur.State == StateReleasing || cur.State == StateReleased {
			return nil
		}
		if err := p.release(ctx, tx, cur, "failed", why); err != nil {
			return err
		}
		return p.balance(ctx, tx, cur.Class, cur.Scope)
	})
}

// releaseStarting releases a lease its provision worker owns, without
// calling it a failure.
func (p *Provisioner) releaseStarting(ctx context.Context, id, reason string) error {
	p.log.Info("lease releasing", "lease_id", id, "reason", reason)
	return p.cfg.Store.InTx(ctx, func(tx Tx) error {
		cur, err := tx.Lease(ctx, id)
		if err != nil {
			return err
		}
		if !cur.State.Starting() {
			return nil
		}
		// No balance here: the runner took a job off the queue, and until
		// that job's own event (its webhook, or in poll mode the next
		// reconcile scan, which balances after it) says which, a balance
		// would lease again for a job no longer waiting: a host paid for
		// nothing.
		return p.release(ctx, tx, cur, reason, "")
	})
}

// abandon releases a starting lease someone asked to release.
func (p *Provisioner) abandon(ctx context.Context, l *Lease) error {
	return p.cfg.Store.InTx(ctx, func(tx Tx) error {
		cur, err := tx.Lease(ctx, l.ID)
		if err != nil {
			return err
		}
		if !cur.State.Starting() {
			return nil
		}
		return p.abandonTx(ctx, tx, cur)
	})
}

// abandonTx is abandon in the caller's transaction, cur read there.
func (p *Provisioner) abandonTx(ctx context.Context, tx Tx, cur *Lease) error {
	// Released because it missed a deadline: that is a failure worth
	// recording; released because it was not needed is not.
	failure := ""
	now := p.now()
	if (!cur.BootDeadline.IsZero() && now.After(cur.BootDeadline)) || (!cur.ExpiresAt.IsZero() && now.After(cur.ExpiresAt)) {
		failure = cmp.Or(cur.Error, cur.ReleaseReason)
		if cur.State == StateBooting || cur.State == StateBootstrapping {
			// Its host never came up in time: do not rent that machine again soon.
			p.markBadMachine(cur, "boot timeout")
		}
	}
	if err := p.release(ctx, tx, cur, cur.ReleaseReason, failure); err != nil {
		return err
	}
	return p.balance(ctx, tx, cur.Class, cur.Scope)
}

// waitUntil is how long one run may wait inline: InlineWait, but never past
// the boot deadline, so a missed deadline is acted on at once.
//
// While every boot worker of this process is busy, more hosts may be
// waiting for one, and a host that is ready would wait out the inline waits
// of those ahead of it: with 1,000 hosts booting and 100 workers, each host
// got a worker for 20 s in every 200. Then a run looks about twice and
// gives its worker back (it snoozes for PollInterval), so the workers go
// round the hosts. Snoozing is a write, which is why a run with a worker to
// spare waits inline instead.
func (p *Provisioner) waitUntil(l *Lease) time.Time {
	wait := p.cfg.InlineWait
	if p.bootRuns.Load() >= int64(p.cfg.BootWorkers) {
		wait = min(wait, 2*p.cfg.PollInterval)
	}
	until := p.now().Add(wait)
	if !l.BootDeadline.IsZero() && l.BootDeadline.Before(until) {
		until = l.BootDeadline
	}
	return until
}

func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}
