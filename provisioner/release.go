package provisioner

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/riverqueue/river"
)

// releaseLease removes the lease's runner from GitHub and destroys its host,
// then marks it released. Each call is safe to repeat: a runner or host that
// is already gone counts as removed. It returns an error (and River retries)
// until the host is destroyed, because a host left running is billed.
func (p *Provisioner) releaseLease(ctx context.Context, id string) error {
	l, err := p.cfg.Store.Lease(ctx, id)
	if errors.Is(err, ErrNotFound) {
		return nil
	}
	if err != nil {
		return err
	}
	if l.State != StateReleasing {
		return nil
	}
	log := p.log.With("lease_id", l.ID, "class", l.Class, "job_id", l.BoundJobID, "instance_id", l.InstanceID)
	started := p.now()

	// The runner goes first so that GitHub cannot hand it a job while its
	// host is being destroyed. A failure here must not keep a host billed:
	// destroy anyway and come back for the runner.
	var runnerErr error
	if l.RunnerID != 0 && !runnerRemovedByGitHub(l) {
		runnerErr = p.cfg.GitHub.RemoveRunner(ctx, l.Scope, l.RunnerID)
		if errors.Is(runnerErr, ErrRunnerBusy) && releasedForNoJob(l) {
			kept, err := p.keepBusyRunner(ctx, log, l)
			if kept || err != nil {
				return err
			}
		}
		if runnerErr != nil {
			log.Warn("removing runner failed; destroying the host first", "runner_id", l.RunnerID, "error", runnerErr)
		}
	}

	p.confirmLoss(ctx, l)
	if err := p.destroyHost(ctx, l); err != nil {
		p.recordError(ctx, l.ID, err)
		return fmt.Errorf("destroying host of lease %s: %w", l.ID, err)
	}

	if runnerErr != nil {
		err := p.cfg.GitHub.RemoveRunner(ctx, l.Scope, l.RunnerID)
		switch {
		case errors.Is(err, ErrRunnerBusy):
			// Its host is gone, so the job it ran is lost with it; GitHub
			// fails the job and lets the runner go, and gc removes it then.
			// The bill stopped with the host: nothing more to hold on to.
			log.Warn("runner still busy on GitHub after its host was destroyed; gc removes it later", "runner_name", l.RunnerName)
		case err != nil:
			p.recordError(ctx, l.ID, err)
			if until, budget := RetryAt(err); budget {
				// The host is gone, the bill stopped: the runner's removal
				// waits for GitHub's budget, asked again then.
				return river.JobSnooze(min(max(until.Sub(p.now()), time.Second)+time.Second, maxBudgetWait))
			}
			return fmt.Errorf("removing runner %s: %w", l.RunnerName, err)
		}
	}

	p.creds.Delete(l.ID)
	p.hedges.forget(l.ID)
	err = p.cfg.Store.InTx(ctx, func(tx Tx) error {
		if _, err := tx.Transition(ctx, l.ID, StateReleased, "host destroyed, runner removed", func(l *Lease) {
			l.ReleasedAt = p.now()
		}); err != nil {
			return err
		}
		// A hedge that failed, its host gone now: its lease may be hedged
		// again (hedge.go).
		return p.hedgeGone(ctx, tx, l)
	})
	if err != nil {
		return err
	}
	log.Info("lease released", "reason", l.ReleaseReason, "took", p.now().Sub(started).Round(time.Millisecond))
	if p.limited() {
		// Room for a job that waits for a lease cap, in any class, and
		// then for warm hosts.
		if err := p.balanceAll(ctx); err != nil {
			log.Warn("balancing after release", "error", err)
		}
	}
	p.cfg.Observer.Phase(l.Class, l.Provider, PhaseReleaseDestroy, p.now().Sub(l.StateChangedAt))
	if l.InstanceID != "" && l.PricePerHour > 0 {
		events, _ := p.cfg.Store.LeaseEvents(ctx, l.ID)
		l.State, l.ReleasedAt = StateReleased, p.now()
		cost := Cost(l, events, p.now())
		p.cfg.Observer.Spent(l.Class, l.Provider, cost)
		p.observeHedgeCost(l, cost)
		p.noteWarmIdleSpent(l, events)
	}
	return nil
}

func (p *Provisioner) destroyHost(ctx context.Context, l *Lease) error {
	switch {
	case l.InstanceID != "":
		prov, ok := p.cfg.Providers[l.Provider]
		if !ok {
			return fmt.Errorf("provider %q of instance %s is not configured", l.Provider, l.InstanceID)
		}
		return prov.Destroy(ctx, &Instance{Provider: l.Provider, ID: l.InstanceID, Marker: Marker{Deployment: p.cfg.Deployment, LeaseID: l.ID}})
	case l.Attempts > 0:
		// A create call was made but its answer never recorded.
		return p.destroyByMarker(ctx, l)
	}
	return nil
}

func (p *Provisioner) recordError(ctx context.Context, id string, err error) {
	if _, uerr := p.updateLease(ctx, id, func(l *Lease) { l.Error = err.Error() }); uerr != nil {
		p.log.Warn("recording error", "lease_id", id, "error", uerr)
	}
}

// runnerRemovedByGitHub: the lease's runner ran its one job, or GitHub
// already said it is gone. GitHub removes a just-in-time runner after its
// job (docs: "JIT runners … are automatically removed"; reference §3.4),
// so a DELETE would be a request spent for a 404; gc removes whatever an
// exception leaves (an offline runner of a released lease).
func runnerRemovedByGitHub(l *Lease) bool {
	return l.ReleaseReason == "job completed" || l.ReleaseReason == reasonRunnerGone || l.ReleaseReason == reasonRunnerDone
}

// reasonRunnerDone releases a starting lease whose runner GitHub no longer
// has after a good bootstrap: it ran a short job before it was seen online.
const reasonRunnerDone = "runner gone from GitHub after it started: its job is done"

// releasedForNoJob reports whether the provisioner let the lease go because
// its runner had no job as far as it knew: the boot ran out or failed, the
// runner idled, another host won the hedge race, no queued job wanted it.
// Between that decision and the runner's removal GitHub may still hand the
// runner a job (webhook mode: any matching runner takes the oldest job), and
// destroying the host then kills that job. A lease whose job was bound, that
// reached its max lifetime, whose host is gone, that the spend cap or an
// operator released, goes whatever it runs.
func releasedForNoJob(l *Lease) bool {
	if l.BoundJobID != 0 {
		return false
	}
	switch r := l.ReleaseReason; {
	case r == "failed", r == "boot timeout", r == "idle timeout", r == ReasonUnusedRunner,
		r == reasonNoQueuedJob, hedgeLost(r), strings.HasPrefix(r, reasonHedgeNotNeeded):
		return true
	}
	return false
}

// keepBusyRunner takes back the release of a lease whose runner GitHub
// refused to remove (422) because it runs a job: the lease goes to busy and
// its job's events bind and end it as any other's. GitHub documents 422 for
// the removal without saying it means busy (reference github-runners.md §4,
// UNSURE), so the runner's own busy flag decides; anything else, or no
// answer, and the release goes on (a host left running is billed).
func (p *Provisioner) keepBusyRunner(ctx context.Context, log *slog.Logger, l *Lease) (bool, error) {
	r, err := p.cfg.GitHub.Runner(ctx, l.Scope, l.RunnerID)
	if err != nil || !r.Busy {
		log.Info("GitHub refused the runner's removal but does not say it is busy; releasing", "runner_id", l.RunnerID, "error", err)
		return false, nil
	}
	kept := false
	err = p.cfg.Store.InTx(ctx, func(tx Tx) error {
		cur, err := tx.Lease(ctx, l.ID)
		if err != nil || cur.State != StateReleasing {
			return err
		}
		_, err = tx.Transition(ctx, l.ID, StateBusy, "its runner took a job as it was released ("+l.ReleaseReason+")", func(l *Lease) {
			l.BusySince = p.now()
			l.ReleaseReason, l.Error = "", ""
		})
		if err != nil {
			return err
		}
		kept = true
		if cur.ReleaseReason == ReasonUnusedRunner {
			return p.unusedRunnerTakenBack(ctx, tx, cur)
		}
		return nil
	})
	if kept {
		log.Warn("the runner took a job as its lease was released; the host stays for the job", "runner_name", l.RunnerName, "reason", l.ReleaseReason)
	}
	return kept, err
}

// unusedRunnerTakenBack undoes what the release of lease l as an unused
// runner did to the job l was made for (unusedRunner in unservable.go): its
// runner did get a job after all, so GitHub does route the job's labels to
// our runners, and the job, if it still waits (its runner took another),
// gets its next lease now rather than after a back-off, and is not marked
// unservable for a second unused lease that was not one (a mark only a new
// delivery of the job or a policy change clears: the job would wait). (The host's cost
// already counted as unused spend stays counted: a counter only grows.)
func (p *Provisioner) unusedRunnerTakenBack(ctx context.Context, tx Tx, l *Lease) error {
	if l.BoundJobID != 0 || l.JobID == 0 {
		return nil
	}
	job, err := tx.Job(ctx, l.JobID, l.RunAttempt)
	if errors.Is(err, ErrNotFound) {
		return nil
	}
	if err != nil || job.Status != JobQueued || job.UnusedLeases == 0 {
		return err
	}
	job.UnusedLeases--
	if k := job.Unservable.Kind; k == UnservableBackoff || k == UnservableUnassigned {
		job.Unservable = Unservable{}
	}
	if err := tx.PutJob(ctx, job); err != nil {
		return err
	}
	return p.balance(ctx, tx, l.Class, l.Scope)
}

// requestRelease asks for a lease to be released. A lease whose provision
// worker is running (provisioning, booting, bootstrapping) is only flagged:
// that worker owns it and stops at its next step, so nothing it creates
// meanwhile escapes the release. Any other lease moves to releasing now.
// failure, when set, is recorded as the lease's error and routes it through
// failed.
func (p *Provisioner) requestRelease(ctx context.Context, tx Tx, id, reason, failure string) error {
	l, err := tx.Lease(ctx, id)
	if err != nil {
		return err
	}
	switch {
	case l.State == StateReleasing || l.State == StateReleased:
		return nil
	case l.State.Starting() && l.State != StatePending:
		if l.ReleaseReason != "" {
			return nil
		}
		if err := p.hedgeReleased(ctx, tx, l, reason, failure); err != nil {
			return err
		}
		_, err := tx.UpdateLease(ctx, id, func(l *Lease) {
			l.ReleaseReason = reason
			if failure != "" {
				l.Error = failure
			}
		})
		return err
	}
	return p.release(ctx, tx, l, reason, failure)
}

// release moves a lease (not owned by a running provision worker) to
// releasing, through failed when it failed, and enqueues the release work.
func (p *Provisioner) release(ctx context.Context, tx Tx, l *Lease, reason, failure string) error {
	if err := p.hedgeReleased(ctx, tx, l, reason, failure); err != nil {
		return err
	}
	if failure != "" && l.State != StateFailed {
		if _, err := tx.Transition(ctx, l.ID, StateFailed, failure, func(l *Lease) { l.Error = failure }); err != nil {
			return err
		}
	}
	if _, err := tx.Transition(ctx, l.ID, StateReleasing, reason, func(l *Lease) {
		if l.ReleaseReason == "" {
			l.ReleaseReason = reason
		}
	}); err != nil {
		return err
	}
	p.log.Info("lease releasing", "lease_id", l.ID, "reason", reason, "error", failure)
	return tx.Enqueue(ctx, ReleaseArgs{LeaseID: l.ID}, nil)
}

// Release asks for one lease to be released, as `crabbox-runner release` does.
func (p *Provisioner) Release(ctx context.Context, id, reason string) error {
	return p.cfg.Store.InTx(ctx, func(tx Tx) error {
		l, err := tx.Lease(ctx, id)
		if err != nil {
			return err
		}
		if err := p.requestRelease(ctx, tx, id, reason, ""); err != nil {
			return err
		}
		// A lease released by hand is not replaced unless its job still waits.
		return p.balance(ctx, tx, l.Class, l.Scope)
	})
}

const leaseIDAlphabet = "abcdefghijkmnpqrstuvwxyz23456789"
