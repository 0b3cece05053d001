package provisioner

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"time"

	"github.com/riverqueue/river"
	"github.com/riverqueue/river/rivertype"
)

// Queues: releases have their own so that a burst of provisioning can never
// delay the destruction of a billed host; the steps after the create call
// (boot) have theirs so that hosts waiting for SSH or installing their
// runner, minutes each, never hold up the create calls of the jobs queued
// behind them.
const (
	QueueProvision = "provision"
	QueueBoot      = "boot"
	QueueRelease   = "release"
	QueueControl   = "control"
)

// ProvisionArgs drives one lease from pending to a created host, then
// hands it to BootArgs.
type ProvisionArgs struct {
	LeaseID string `json:"lease_id"`
}

// Kind names the River job.
func (ProvisionArgs) Kind() string { return "provision" }

// InsertOpts makes provisioning unique per lease.
func (ProvisionArgs) InsertOpts() river.InsertOpts {
	return river.InsertOpts{Queue: QueueProvision, MaxAttempts: 1000, UniqueOpts: river.UniqueOpts{ByArgs: true}}
}

// BootArgs drives a lease from a created host to an online runner.
type BootArgs struct {
	LeaseID string `json:"lease_id"`
}

// Kind names the River job.
func (BootArgs) Kind() string { return "boot" }

// InsertOpts makes booting unique per lease.
func (BootArgs) InsertOpts() river.InsertOpts {
	return river.InsertOpts{Queue: QueueBoot, MaxAttempts: 1000, UniqueOpts: river.UniqueOpts{ByArgs: true}}
}

// ReleaseArgs removes a lease's runner and destroys its host.
type ReleaseArgs struct {
	LeaseID string `json:"lease_id"`
}

// Kind names the River job.
func (ReleaseArgs) Kind() string { return "release" }

// InsertOpts makes releasing unique per lease while a release is pending
// or running; it is retried until it works. A completed release does not
// count (River's default would keep it unique for as long as the job is
// kept): a release taken back because its runner took a job
// (keepBusyRunner) is released again once that job is done, and running a
// release for a lease already released is a no-op.
func (ReleaseArgs) InsertOpts() river.InsertOpts {
	return river.InsertOpts{Queue: QueueRelease, MaxAttempts: 10000, UniqueOpts: river.UniqueOpts{ByArgs: true,
		ByState: []rivertype.JobState{rivertype.JobStateAvailable, rivertype.JobStatePending, rivertype.JobStateRunning,
			rivertype.JobStateRetryable, rivertype.JobStateScheduled}}}
}

// Deadline kinds.
const (
	DeadlineBoot     = "boot"
	DeadlineIdle     = "idle"
	DeadlineLifetime = "lifetime"
)

// DeadlineArgs checks one deadline of one lease when it falls due. The
// periodic scan (DeadlinesArgs) does that now; these jobs are still worked
// for databases that have some queued from an earlier version.
type DeadlineArgs struct {
	LeaseID string `json:"lease_id"`
	Kind_   string `json:"kind"`
}

// Kind names the River job.
func (DeadlineArgs) Kind() string { return "deadline" }

// InsertOpts makes each deadline of a lease unique.
func (DeadlineArgs) InsertOpts() river.InsertOpts {
	return river.InsertOpts{Queue: QueueControl, MaxAttempts: 100, UniqueOpts: river.UniqueOpts{ByArgs: true}}
}

func (p *Provisioner) workConfig() WorkConfig {
	workers := river.NewWorkers()
	river.AddWorker(workers, &provisionWorker{p: p})
	river.AddWorker(workers, &bootWorker{p: p})
	river.AddWorker(workers, &releaseWorker{p: p})
	river.AddWorker(workers, &deadlineWorker{p: p})
	river.AddWorker(workers, &reconcileWorker{p: p})
	river.AddWorker(workers, &gcWorker{p: p})
	river.AddWorker(workers, &deadlinesWorker{p: p})
	river.AddWorker(workers, &sweepWorker{p: p})
	river.AddWorker(workers, &rerunWorker{p: p})
	return WorkConfig{
		Workers:      workers,
		PeriodicJobs: p.periodicJobs(),
		Queues: map[string]int{
			QueueProvision: p.cfg.ProvisionWorkers,
			QueueBoot:      p.cfg.BootWorkers,
			QueueRelease:   p.cfg.ReleaseWorkers,
			QueueControl:   10,
		},
		FetchGaps:    map[string]time.Duration{QueueBoot: bootFetchGap},
		PollInterval: p.cfg.QueuePollInterval,
		RescueAfter:  p.cfg.RescueAfter,
		Logger:       p.log,
	}
}

// bootFetchGap spaces the boot queue's looks for work. A host boots for
// minutes; its boot work starting some milliseconds later costs nothing,
// while each look is a write that a burst's create calls wait behind (on
// SQLite, one writer). In the burst benchmark one look every 25 ms rather
// than every 5 cut the queued → create p99 by about a fifth.
const bootFetchGap = 25 * time.Millisecond

// retryDelay is a capped exponential backoff with jitter, so a burst of
// failing leases does not retry in lockstep against a struggling API.
func retryDelay(attempt int, base, ceiling time.Duration) time.Duration {
	d := base
	for i := 1; i < attempt && d < ceiling; i++ {
		d *= 2
	}
	d = min(d, ceiling)
	return d/2 + rand.N(d/2+1)
}

type provisionWorker struct {
	river.WorkerDefaults[ProvisionArgs]
	p *Provisioner
}

// Timeout: a run waits at most InlineWait for a host, but installing the
// runner on a slow host can take minutes.
func (w *provisionWorker) Timeout(*river.Job[ProvisionArgs]) time.Duration { return w.p.cfg.JobTimeout }

func (w *provisionWorker) NextRetry(job *river.Job[ProvisionArgs]) time.Time {
	return time.Now().Add(retryDelay(job.Attempt, time.Second, 30*time.Second))
}

func (w *provisionWorker) Work(ctx context.Context, job *river.Job[ProvisionArgs]) error {
	return w.p.provision(ctx, job.Args.LeaseID, stageCreate)
}

type bootWorker struct {
	river.WorkerDefaults[BootArgs]
	p *Provisioner
}

// Timeout: installing the runner on a slow host can take minutes.
func (w *bootWorker) Timeout(*river.Job[BootArgs]) time.Duration { return w.p.cfg.JobTimeout }

func (w *bootWorker) NextRetry(job *river.Job[BootArgs]) time.Time {
	return time.Now().Add(retryDelay(job.Attempt, time.Second, 30*time.Second))
}

func (w *bootWorker) Work(ctx context.Context, job *river.Job[BootArgs]) error {
	w.p.bootRuns.Add(1)
	defer w.p.bootRuns.Add(-1)
	return w.p.provision(ctx, job.Args.LeaseID, stageBoot)
}

type releaseWorker struct {
	river.WorkerDefaults[ReleaseArgs]
	p *Provisioner
}

func (w *releaseWorker) Timeout(*river.Job[ReleaseArgs]) time.Duration {
	return min(5*time.Minute, w.p.cfg.JobTimeout)
}

func (w *releaseWorker) NextRetry(job *river.Job[ReleaseArgs]) time.Time {
	return time.Now().Add(retryDelay(job.Attempt, time.Second, time.Minute))
}

func (w *releaseWorker) Work(ctx context.Context, job *river.Job[ReleaseArgs]) error {
	return w.p.releaseLease(ctx, job.Args.LeaseID)
}

type deadlineWorker struct {
	river.WorkerDefaults[DeadlineArgs]
	p *Provisioner
}

func (w *deadlineWorker) Work(ctx context.Context, job *river.Job[DeadlineArgs]) error {
	return w.p.checkDeadline(ctx, job.Args.LeaseID, job.Args.Kind_)
}

// bootGrace is how long after its boot deadline a lease may still be owned
// by its provision worker before the deadline check takes it over: the
// worker may be in the middle of a bounded call.
const bootGrace = 2 * time.Minute

func (p *Provisioner) checkDeadline(ctx context.Context, leaseID, kind string) error {
	var again time.Duration
	var notes []unservableNote
	var unusedLease *Lease
	err := p.cfg.Store.InTx(ctx, func(tx Tx) error {
		l, err := tx.Lease(ctx, leaseID)
		if errors.Is(err, ErrNotFound) {
			return nil
		}
		if err != nil {
			return err
		}
		now := p.now()
		class := p.classes[l.Class]
		switch kind {
		case DeadlineIdle:
			if l.State != StateIdle || class == nil || now.Before(l.IdleSince.Add(class.IdleTimeout)) {
				return nil
			}
			// No lease loop: a runner that sat idle while its job stayed
			// queued was not given the job; the job waits, or is marked.
			unused, err := p.unusedRunner(ctx, tx, l)
			if err != nil {
				return err
			}
			reason := "idle timeout"
			notes, unusedLease = nil, nil
			if unused != nil {
				reason, unusedLease = ReasonUnusedRunner, l
				notes = []unservableNote{{job: unused}}
			}
			if err := p.requestRelease(ctx, tx, l.ID, reason, ""); err != nil {
				return err
			}
			p.noteWarmExpired(l)
			// A warm lease's replacement is made here (warm.go).
			return p.balance(ctx, tx, l.Class, l.Scope)
		case DeadlineBoot, DeadlineLifetime:
			due := l.BootDeadline
			reason := "boot timeout"
			if kind == DeadlineLifetime {
				due, reason = l.ExpiresAt, "max lifetime reached"
			}
			if due.IsZero() || l.State == StateReleasing || l.State == StateReleased {
				return nil
			}
			if now.Before(due) {
				// The deadline moved (a lease waiting for budget, or a boot
				// clock restarted at the create call): follow it.
				again = due.Sub(now)
				return nil
			}
			if kind == DeadlineBoot && !l.State.Starting() {
				return nil
			}
			failure := ""
			if l.State.Starting() {
				failure = fmt.Sprintf("%s: no runner online after %s", reason, now.Sub(l.StateChangedAt).Round(time.Second))
				if kind == DeadlineBoot && class != nil {
					failure = fmt.Sprintf("%s: no runner online within %s", reason, class.BootTimeout)
				}
				if now.Before(due.Add(bootGrace)) && l.State != StatePending {
					// Its worker owns it: flag it and take over later if it
					// does not let go.
					again = due.Add(bootGrace).Sub(now)
					return p.requestRelease(ctx, tx, l.ID, reason, failure)
				}
				if kind == DeadlineBoot && (l.State == StateBooting || l.State == StateBootstrapping) {
					p.markBadMachine(l, "boot timeout")
				}
				if err := p.release(ctx, tx, l, reason, failure); err != nil {
					return err
				}
			} else if err := p.requestRelease(ctx, tx, l.ID, reason, ""); err != nil {
				return err
			}
			return p.balance(ctx, tx, l.Class, l.Scope)
		}
		return fmt.Errorf("unknown deadline kind %q", kind)
	})
	if err == nil {
		p.notePolicy(notes)
		if unusedLease != nil {
			p.noteUnusedSpend(ctx, unusedLease)
		}
	}
	if err == nil && again > 0 {
		return river.JobSnooze(again)
	}
	return err
}

// noteUnusedSpend tells the PolicyObserver what a host whose runner never
// got its job has cost (to now: its release follows in seconds).
func (p *Provisioner) noteUnusedSpend(ctx context.Context, l *Lease) {
	po, ok := p.cfg.Observer.(PolicyObserver)
	if !ok {
		return
	}
	events, err := p.cfg.Store.LeaseEvents(ctx, l.ID)
	if err != nil {
		p.log.Warn("reading lease events for its cost", "lease_id", l.ID, "error", err)
	}
	po.UnusedSpent(l.Class, l.Provider, Cost(l, events, p.now()))
}
