package provisioner

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"time"

	"github.com/riverqueue/river"
)

// Reconciliation assumes any event may be lost, late or repeated, and any
// process may have died: a periodic pass, run by the elected leader only,
// brings the store, the clouds and GitHub back in line.

// JobSource is the part of GitHub that tells what webhooks may have missed.
type JobSource interface {
	// QueuedJobs lists the jobs GitHub has queued in the scope now.
	QueuedJobs(ctx context.Context, scope Scope) ([]JobEvent, error)
	// JobStatus reports one job's current state as a job event (action =
	// its status), or ErrNotFound.
	JobStatus(ctx context.Context, scope Scope, repo string, jobID int64) (*JobEvent, error)
	// Scopes lists where to look besides the known leases' scopes (App
	// installations, configured orgs and repositories).
	Scopes(ctx context.Context) ([]Scope, error)
}

// Redeliverer asks GitHub to send again the deliveries that failed.
type Redeliverer interface {
	// RedeliverFailed redelivers each event delivered since then that never
	// got a 2xx, once; it returns how many it asked for.
	RedeliverFailed(ctx context.Context, since time.Time) (int, error)
}

// ReconcileConfig turns the periodic passes on.
type ReconcileConfig struct {
	// Interval of the lease pass: deadlines, stuck work, class balance, and
	// missed webhooks when Jobs is set (default 1m; negative: off).
	Interval time.Duration
	// GCInterval of the gc pass (default 5m; negative: off).
	GCInterval time.Duration
	// DeadlineInterval is how often leases are looked at for a boot,
	// idle or lifetime deadline that has fallen due (default 5s; negative:
	// off). A deadline is acted on this much late at most.
	DeadlineInterval time.Duration
	Jobs             JobSource
	Deliveries       Redeliverer
	// Scopes are always looked at (github.scopes).
	Scopes []Scope
	// Walk has a JobScanner walk every repository of each scope, spread
	// over passes, besides the hot ones (scan.go): on when nothing else
	// finds what webhooks missed (poll mode, or a token, which has no
	// delivery log to redeliver from).
	Walk bool
	// Retention is the age past which deliveries and job events are
	// deleted, a batch per pass (default 30 days; negative: never).
	Retention time.Duration
	// History is the age past which released leases (with their lease
	// events) and completed jobs are deleted, a batch per pass (default
	// 90 days; negative: never).
	History time.Duration
	// UnreachableGrace is how long an idle or busy lease's host may stay
	// unreachable before it counts as lost (default
	// DefaultUnreachableGrace; hostwatch.go).
	UnreachableGrace time.Duration

	// LostJobAfter is how long after a lost lease's release its job is
	// asked for on GitHub when its completed event has not come
	// (rerun_lost_jobs; rerun.go). GitHub fails such a job about ten
	// minutes after the runner's last renewal; default 15m.
	LostJobAfter time.Duration
}

// ReconcileArgs runs one lease pass.
type ReconcileArgs struct{}

// Kind names the River job.
func (ReconcileArgs) Kind() string { return "reconcile" }

// InsertOpts keeps one pass queued at a time.
func (ReconcileArgs) InsertOpts() river.InsertOpts {
	return river.InsertOpts{Queue: QueueControl, MaxAttempts: 3,
		UniqueOpts: river.UniqueOpts{ByArgs: true, ByPeriod: 10 * time.Second}}
}

// DeadlinesArgs looks at every live lease for deadlines that have fallen
// due. One scan of the leases replaces a scheduled job per lease and
// deadline: fewer writes on the way to a running job, and no job that
// waits hours for a lifetime to run out.
type DeadlinesArgs struct{}

// Kind names the River job.
func (DeadlinesArgs) Kind() string { return "deadlines" }

// InsertOpts: one attempt; the next scan comes soon.
func (DeadlinesArgs) InsertOpts() river.InsertOpts {
	return river.InsertOpts{Queue: QueueControl, MaxAttempts: 1}
}

type deadlinesWorker struct {
	river.WorkerDefaults[DeadlinesArgs]
	p *Provisioner
}

func (w *deadlinesWorker) Work(ctx context.Context, job *river.Job[DeadlinesArgs]) error {
	_, err := w.p.CheckDeadlines(ctx)
	return err
}

// liveStates are the states of leases that hold, or may soon hold, a host.
var liveStates = []State{StatePending, StateProvisioning, StateBooting, StateBootstrapping, StateIdle, StateBusy,
	StateReleasing, StateFailed}

// CheckDeadlines acts on every deadline that has fallen due and returns how
// many it looked at.
func (p *Provisioner) CheckDeadlines(ctx context.Context) (int, error) {
	live, err := p.cfg.Store.Leases(ctx, LeaseFilter{States: liveStates})
	if err != nil {
		return 0, err
	}
	n, errs := 0, []error(nil)
	// A back-off that ran out is a deadline too.
	if _, err := p.ReviewUnservable(ctx, false); err != nil {
		errs = append(errs, err)
	}
	for _, l := range live {
		if err := p.hedgeBackstop(ctx, l); err != nil {
			errs = append(errs, err)
		}
		for _, kind := range p.dueDeadlines(l, p.now()) {
			n++
			if err := p.checkDeadline(ctx, l.ID, kind); err != nil && !isSnooze(err) {
				errs = append(errs, err)
			}
		}
	}
	return n, errors.Join(errs...)
}

// dueDeadlines lists the deadlines of l that have fallen due at now.
func (p *Provisioner) dueDeadlines(l *Lease, now time.Time) []string {
	var due []string
	if l.State.Starting() && !l.BootDeadline.IsZero() && !now.Before(l.BootDeadline) {
		due = append(due, DeadlineBoot)
	}
	if !l.ExpiresAt.IsZero() && !now.Before(l.ExpiresAt) && l.State != StateReleasing && l.State != StateReleased {
		due = append(due, DeadlineLifetime)
	}
	if c := p.classes[l.Class]; l.State == StateIdle && c != nil && !now.Before(l.IdleSince.Add(c.IdleTimeout)) {
		due = append(due, DeadlineIdle)
	}
	return due
}

// GCArgs runs one gc pass.
type GCArgs struct{}

// Kind names the River job.
func (GCArgs) Kind() string { return "gc" }

// InsertOpts keeps one pass queued at a time.
func (GCArgs) InsertOpts() river.InsertOpts {
	return river.InsertOpts{Queue: QueueControl, MaxAttempts: 3,
		UniqueOpts: river.UniqueOpts{ByArgs: true, ByPeriod: 30 * time.Second}}
}

type reconcileWorker struct {
	river.WorkerDefaults[ReconcileArgs]
	p *Provisioner
}

func (w *reconcileWorker) Timeout(*river.Job[ReconcileArgs]) time.Duration {
	return min(5*time.Minute, w.p.cfg.JobTimeout)
}

func (w *reconcileWorker) Work(ctx context.Context, job *river.Job[ReconcileArgs]) error {
	_, err := w.p.Reconcile(ctx)
	return err
}

type gcWorker struct {
	river.WorkerDefaults[GCArgs]
	p *Provisioner
}

func (w *gcWorker) Timeout(*river.Job[GCArgs]) time.Duration {
	return min(10*time.Minute, w.p.cfg.JobTimeout)
}

func (w *gcWorker) Work(ctx context.Context, job *river.Job[GCArgs]) error {
	plan, err := w.p.PlanGC(ctx, GCOptions{Scopes: w.p.cfg.Reconcile.Scopes})
	if err != nil {
		return err
	}
	if failed := w.p.ApplyGC(ctx, plan); failed > 0 {
		return fmt.Errorf("%d of %d gc actions failed", failed, len(plan.Actions))
	}
	return nil
}

func (p *Provisioner) periodicJobs() []*river.PeriodicJob {
	var jobs []*river.PeriodicJob
	rc := p.cfg.Reconcile
	if rc.Interval >= 0 {
		every := cmpDur(rc.Interval, time.Minute)
		// One pass queued at a time, but no fewer passes than asked for:
		// poll mode's interval may be shorter than the usual 10 s.
		opts := ReconcileArgs{}.InsertOpts()
		opts.UniqueOpts.ByPeriod = min(opts.UniqueOpts.ByPeriod, every)
		jobs = append(jobs, river.NewPeriodicJob(river.PeriodicInterval(every),
			func() (river.JobArgs, *river.InsertOpts) { return ReconcileArgs{}, &opts },
			&river.PeriodicJobOpts{RunOnStart: true}))
	}
	if rc.DeadlineInterval >= 0 {
		jobs = append(jobs, river.NewPeriodicJob(river.PeriodicInterval(cmpDur(rc.DeadlineInterval, 5*time.Second)),
			func() (river.JobArgs, *river.InsertOpts) { return DeadlinesArgs{}, nil },
			&river.PeriodicJobOpts{RunOnStart: true}))
	}
	if rc.GCInterval >= 0 {
		jobs = append(jobs, river.NewPeriodicJob(river.PeriodicInterval(cmpDur(rc.GCInterval, 5*time.Minute)),
			func() (river.JobArgs, *river.InsertOpts) { return GCArgs{}, nil },
			&river.PeriodicJobOpts{RunOnStart: true}))
	}
	return jobs
}

func cmpDur(d, def time.Duration) time.Duration {
	if d == 0 {
		return def
	}
	return d
}

// ReconcileReport says what one pass did.
type ReconcileReport struct {
	DeadlinesChecked int
	Requeued         int // leases whose work was lost and was enqueued again
	MissedJobs       int // queued jobs found on GitHub that no webhook told of
	StaleJobs        int // jobs we thought queued that GitHub has moved on
	Redelivered      int
	RunnerGone       int // idle or busy leases whose runner GitHub no longer has
	HostsLost        int // idle or busy leases whose host was lost (hostwatch.go)
	Servable         int // jobs marked unservable whose mark was cleared
	Pruned           int // deliveries, job events, released leases and completed jobs past their retention, and bad-machine marks that ran out, deleted
	// Deferred: some background GitHub work was refused for budget
	// (ErrDeferred) and waits for a later pass.
	Deferred bool
}

// Reconcile runs one lease pass: every deadline of every live lease is
// checked (a lost deadline job cannot leave a host running), work that was
// lost is enqueued again, missed webhooks are made up from GitHub's own
// view, failed deliveries are redelivered, and every class is balanced.
func (p *Provisioner) Reconcile(ctx context.Context) (*ReconcileReport, error) {
	rep := &ReconcileReport{}
	var errs []error
	live, err := p.cfg.Store.Leases(ctx, LeaseFilter{States: liveStates})
	if err != nil {
		return nil, err
	}
	scopes := map[string]Scope{}
	for _, s := range p.cfg.Reconcile.Scopes {
		scopes[s.Key()] = s
	}
	now := p.now()
	for _, l := range live {
		scopes[l.Scope.Key()] = l.Scope
		for _, kind := range p.dueDeadlines(l, now) {
			if err := p.checkDeadline(ctx, l.ID, kind); err != nil && !isSnooze(err) {
				errs = append(errs, err)
			}
			rep.DeadlinesChecked++
		}
		// Work that should be running for this lease but is not: enqueue it
		// again. Unique jobs make this a no-op when it is still there.
		if now.Sub(l.StateChangedAt) > time.Minute {
			var args river.JobArgs
			switch {
			case l.State == StateReleasing || l.State == StateFailed:
				args = ReleaseArgs{LeaseID: l.ID}
			case l.State == StateBooting || l.State == StateBootstrapping:
				args = BootArgs{LeaseID: l.ID}
			case l.State.Starting():
				args = ProvisionArgs{LeaseID: l.ID}
			}
			if args != nil {
				if err := p.cfg.Store.InTx(ctx, func(tx Tx) error {
					if l.State == StateFailed {
						cur, err := tx.Lease(ctx, l.ID)
						if err != nil || cur.State != StateFailed {
							return err
						}
						return p.release(ctx, tx, cur, "failed", cur.Error)
					}
					return tx.Enqueue(ctx, args, nil)
				}); err != nil {
					errs = append(errs, err)
				} else {
					rep.Requeued++
				}
			}
		}
	}

	// The host watch goes before the runner check: a host lost mid-job
	// takes its runner with it, and the lease must say why (LostReason).
	lost, err := p.watchHosts(ctx, live)
	rep.HostsLost = len(lost)
	if err != nil {
		// Not the pass's error: a retried pass would repeat its GitHub
		// scans for a provider's hiccup; the next pass looks again.
		p.log.Warn("host watch incomplete; the next pass looks again", "error", err)
	}
	if len(lost) > 0 {
		live = slices.DeleteFunc(slices.Clone(live), func(l *Lease) bool { return lost[l.ID] })
	}
	n, err := p.releaseRunnerless(ctx, live)
	rep.RunnerGone = n
	if err != nil {
		errs = append(errs, err)
	}

	// Background GitHub work refused for budget is not an error: it is
	// done on a later pass (scan.go).
	keep := func(err error) {
		if errors.Is(err, ErrDeferred) {
			rep.Deferred = true
			return
		}
		errs = append(errs, err)
	}
	if src := p.cfg.Reconcile.Jobs; src != nil {
		more, err := src.Scopes(ctx)
		if err != nil {
			keep(fmt.Errorf("listing scopes: %w", err))
		}
		for _, s := range more {
			scopes[s.Key()] = s
		}
		keys := slices.Sorted(maps.Keys(scopes))
		sc, scanning := src.(JobScanner)
		var hot map[string][]string
		if scanning {
			if hot, err = p.hotRepos(ctx, live, scopes); err != nil {
				errs = append(errs, err)
				scanning = false
			}
		}
		for _, key := range keys {
			var n int
			if scanning {
				n, err = p.scanScope(ctx, sc, scopes[key], hot[key])
			} else {
				n, err = p.catchUpScope(ctx, src, scopes[key])
			}
			rep.MissedJobs += n
			if err != nil {
				keep(err)
			}
		}
		// The scan follows every queued job's repository on every pass;
		// asking for each job then is only a backstop.
		age := time.Minute
		if scanning {
			age = 10 * time.Minute
		}
		n, err := p.refreshQueuedJobs(ctx, src, age)
		rep.StaleJobs += n
		if err != nil {
			keep(err)
		}
		n, err = p.catchLostJobs(ctx, src)
		rep.StaleJobs += n
		if err != nil {
			keep(err)
		}
	}
	if d := p.cfg.Reconcile.Deliveries; d != nil {
		since := now.Add(-3 * 24 * time.Hour) // GitHub keeps deliveries for 3 days
		n, err := d.RedeliverFailed(ctx, since)
		rep.Redelivered = n
		if err != nil {
			keep(fmt.Errorf("redelivering failed deliveries: %w", err))
		}
	}
	// Marked jobs whose back-off ran out or whose runner group may serve
	// them now (asked again here, outside any transaction).
	n, err = p.ReviewUnservable(ctx, true)
	rep.Servable = n
	if err != nil {
		keep(err)
	}
	if rep.Deferred {
		if p.deferred.note(now) {
			p.log.Warn("GitHub request budget low: background reconcile work (scans, redeliveries, job refreshes) deferred to later passes; jobs are still served")
		}
	} else if n, since := p.deferred.clear(); n > 0 {
		p.log.Info("GitHub request budget recovered: deferred reconcile work done", "deferred_passes", n, "since", since)
	}
	if err := p.balanceAll(ctx); err != nil {
		errs = append(errs, err)
	}
	if rep.Pruned, err = p.pruneEvents(ctx, now); err != nil {
		errs = append(errs, err)
	}
	if n, err = p.pruneHistory(ctx, now); err != nil {
		errs = append(errs, err)
	}
	rep.Pruned += n
	if n, err = p.pruneBadMachines(ctx, now); err != nil {
		errs = append(errs, err)
	}
	rep.Pruned += n
	if rep.MissedJobs+rep.StaleJobs+rep.Redelivered+rep.Requeued+rep.RunnerGone+rep.HostsLost+rep.Servable+rep.Pruned > 0 {
		p.log.Info("reconciled", "missed_jobs", rep.MissedJobs, "stale_jobs", rep.StaleJobs,
			"redelivered", rep.Redelivered, "requeued", rep.Requeued, "runner_gone", rep.RunnerGone, "hosts_lost", rep.HostsLost,
			"servable_again", rep.Servable, "pruned", rep.Pruned)
	}
	return rep, errors.Join(errs...)
}

// runnerGrace is how long a lease's state must be settled before its
// runner's absence on GitHub counts: GitHub removes a JIT runner once its
// job ends, moments before the completed webhook arrives.
const runnerGrace = 30 * time.Second

// reasonRunnerGone releases a lease whose runner GitHub no longer has.
const reasonRunnerGone = "runner gone from GitHub"

// releaseRunnerless releases idle and busy leases whose runner GitHub no
// longer has. An ephemeral runner is removed after its one job: if the
// completed webhook was lost, this is what ends the lease (and its bill)
// rather than the max lifetime.
func (p *Provisioner) releaseRunnerless(ctx context.Context, live []*Lease) (int, error) {
	n := 0
	var errs []error
	now := p.now()
	for _, l := range live {
		if (l.State != StateIdle && l.State != StateBusy) || l.RunnerID == 0 || now.Sub(l.StateChangedAt) < runnerGrace {
			continue
		}
		// Background: under the budget's reserve it waits for a later pass.
		_, err := p.cfg.GitHub.Runner(Background(ctx), l.Scope, l.RunnerID)
		if !errors.Is(err, ErrNotFound) {
			if _, budget := RetryAt(err); err != nil && !budget {
				errs = append(errs, fmt.Errorf("runner of lease %s: %w", l.ID, err))
			}
			continue
		}
		err = p.cfg.Store.InTx(ctx, func(tx Tx) error {
			if err := p.requestRelease(ctx, tx, l.ID, reasonRunnerGone, ""); err != nil {
				return err
			}
			return p.balance(ctx, tx, l.Class, l.Scope)
		})
		if err != nil {
			errs = append(errs, err)
			continue
		}
		n++
		p.log.Info("runner gone from GitHub; releasing", "lease_id", l.ID, "runner_name", l.RunnerName, "state", string(l.State))
	}
	return n, errors.Join(errs...)
}

func isSnooze(err error) bool {
	var s *river.JobSnoozeError
	return errors.As(err, &s)
}

// catchUpScope records the queued jobs GitHub shows in a scope. Jobs already
// known are repeats and change nothing.
func (p *Provisioner) catchUpScope(ctx context.Context, src JobSource, s Scope) (int, error) {
	jobs, err := src.QueuedJobs(ctx, s)
	if err != nil {
		return 0, fmt.Errorf("queued jobs in %s: %w", s.Key(), err)
	}
	n := 0
	for _, ev := range jobs {
		out, err := p.HandleJobEvent(ctx, ev)
		if err != nil {
			return n, err
		}
		if out == Accepted {
			n++
			p.log.Info("queued job found without its webhook", "job_id", ev.JobID, "repo", ev.Repo)
		}
	}
	return n, nil
}

// refreshQueuedJobs asks GitHub about jobs we still think queued for more
// than a minute: a lost in_progress or completed would otherwise keep a
// lease for them forever.
func (p *Provisioner) refreshQueuedJobs(ctx context.Context, src JobSource, age time.Duration) (int, error) {
	queued, err := p.cfg.Store.QueuedJobs(ctx, p.now().Add(-age))
	if err != nil {
		return 0, err
	}
	n := 0
	var errs []error
	for _, j := range queued {
		ev, err := src.JobStatus(ctx, j.Scope, j.Repo, j.ID)
		if errors.Is(err, ErrNotFound) {
			// Deleted with its run: nothing will ever take it.
			ev = &JobEvent{Action: "completed", Status: "completed", Conclusion: "cancelled", JobID: j.ID, RunAttempt: j.RunAttempt,
				Labels: j.Labels, Repo: j.Repo, Org: j.Scope.Org, InstallationID: j.Scope.InstallationID}
		} else if errors.Is(err, ErrDeferred) {
			// The rest waits for the budget too.
			errs = append(errs, err)
			break
		} else if err != nil {
			errs = append(errs, err)
			continue
		}
		if ev.Action == "queued" || ev.Action == "waiting" || RunAttempt(ev.RunAttempt) != RunAttempt(j.RunAttempt) {
			continue
		}
		// The same attempt, however each side spelled a missing one: the
		// event must reach the job as it is recorded.
		ev.RunAttempt = j.RunAttempt
		out, err := p.HandleJobEvent(ctx, *ev)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if out == Accepted {
			n++
		}
	}
	return n, errors.Join(errs...)
}

// balanceAll balances every class in every scope that has leases or
// queued jobs, then tops up the warm hosts (warm.go): queued jobs of every
// class get the room first.
func (p *Provisioner) balanceAll(ctx context.Context) error {
	pairs, err := p.cfg.Store.ClassScopes(ctx)
	if err != nil {
		return err
	}
	var errs []error
	// Every pair with queued jobs is balanced here and says again whether
	// its jobs wait for room; a pair whose jobs went away says nothing.
	p.warm.roomWaits.Clear()
	jobsOnly := withoutWarm(ctx)
	for _, cs := range pairs {
		if _, ok := p.classes[cs.Class]; !ok {
			continue
		}
		err := p.cfg.Store.InTx(ctx, func(tx Tx) error { return p.balance(jobsOnly, tx, cs.Class, cs.Scope) })
		if err != nil {
			errs = append(errs, err)
		}
	}
	if err := p.balanceWarm(ctx); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}
