package provisioner

// rerun_lost_jobs: a job whose host was lost under it (Lease.LostReason,
// set where the loss is detected) fails on GitHub once the runner stops
// renewing the job (GitHub: conclusion failure, "The self-hosted runner: …
// lost communication with the server"). When its completed event arrives
// and the class asks for it, the job is re-run once through GitHub's API;
// the re-run's queued event makes a new lease like any job's.
//
// At most once per job: the decision is recorded on the job (RerunAt) in
// the transaction that enqueues the work, so a redelivered webhook or a
// restart does nothing more, and a later attempt of a job re-run before
// (same id, or same run and name) is not re-run again.

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/riverqueue/river"
)

// RerunObserver counts re-runs by class and result (the Rerun* values);
// the metrics package implements it. Optional, as PolicyObserver.
type RerunObserver interface {
	JobRerun(class, result string)
}

// Results of a lost job's re-run.
const (
	RerunRequested = "requested" // GitHub made a new attempt
	RerunRefused   = "refused"   // GitHub will not (permission, age)
	RerunGone      = "gone"      // the job no longer exists
	RerunGaveUp    = "gave_up"   // the run kept running past rerunWindow
	RerunNotAgain  = "not_again" // the job was itself our re-run
)

// rerunWindow is how long the re-run is asked for while GitHub answers
// that the job's workflow run still runs (its other jobs): a re-run only
// starts once the whole run completed.
const rerunWindow = 24 * time.Hour

// RerunArgs re-runs one lost job (an attempt whose RerunAt is set).
type RerunArgs struct {
	JobID      int64 `json:"job_id"`
	RunAttempt int64 `json:"run_attempt"`
}

// Kind names the River job.
func (RerunArgs) Kind() string { return "rerun_lost_job" }

// InsertOpts makes the re-run of an attempt unique; it is asked again with
// back-off while the run still runs (snoozes), within rerunWindow.
func (RerunArgs) InsertOpts() river.InsertOpts {
	return river.InsertOpts{Queue: QueueControl, MaxAttempts: 100, UniqueOpts: river.UniqueOpts{ByArgs: true}}
}

func (p *Provisioner) noteRerun(class, result string) {
	if o, ok := p.cfg.Observer.(RerunObserver); ok {
		o.JobRerun(class, result)
	}
}

// planRerun decides, in the transaction that records a job's completion,
// whether to re-run it: its class asks for it, it failed, and the lease
// whose runner had it lost its host. It reports whether work was enqueued.
func (p *Provisioner) planRerun(ctx context.Context, tx Tx, job *Job, lease *Lease, class *Class) (bool, error) {
	if class == nil || !class.RerunLostJobs || lease == nil || lease.LostReason == "" ||
		job.Status != JobCompleted || job.Conclusion != "failure" {
		return false, nil
	}
	if lease.BoundJobID != 0 && lease.BoundJobID != job.ID {
		return false, nil
	}
	log := p.log.With("job_id", job.ID, "run_attempt", job.RunAttempt, "lease_id", lease.ID, "class", class.Name, "lost_reason", lease.LostReason)
	prev, err := tx.RerunBefore(ctx, job)
	if err != nil {
		return false, err
	}
	if prev != nil {
		if prev.ID == job.ID && RunAttempt(prev.RunAttempt) == RunAttempt(job.RunAttempt) {
			return false, nil // decided before: a redelivery
		}
		log.Warn("job lost with its host again; it is a re-run already, so it is not re-run a second time",
			"rerun_of_job_id", prev.ID, "rerun_of_attempt", prev.RunAttempt)
		p.noteRerun(class.Name, RerunNotAgain)
		return false, tx.NoteLease(ctx, lease.ID, fmt.Sprintf("job %d not re-run: host lost: %s; it is already a re-run of attempt %d",
			job.ID, lease.LostReason, RunAttempt(prev.RunAttempt)))
	}
	job.RerunAt = p.now()
	job.RerunReason = "host lost: " + lease.LostReason
	if err := tx.PutJob(ctx, job); err != nil {
		return false, err
	}
	log.Info("job lost with its host; re-running it", "reason", job.RerunReason)
	return true, tx.Enqueue(ctx, RerunArgs{JobID: job.ID, RunAttempt: job.RunAttempt}, nil)
}

type rerunWorker struct {
	river.WorkerDefaults[RerunArgs]
	p *Provisioner
}

func (w *rerunWorker) NextRetry(job *river.Job[RerunArgs]) time.Time {
	return time.Now().Add(retryDelay(job.Attempt, 5*time.Second, 5*time.Minute))
}

func (w *rerunWorker) Work(ctx context.Context, job *river.Job[RerunArgs]) error {
	return w.p.rerunJob(ctx, job.Args, job.Attempt)
}

// rerunJob asks GitHub to re-run one lost job and records what came of it.
func (p *Provisioner) rerunJob(ctx context.Context, args RerunArgs, attempt int) error {
	j, err := p.cfg.Store.Job(ctx, args.JobID, args.RunAttempt)
	if errors.Is(err, ErrNotFound) {
		return nil // pruned: nothing to do
	}
	if err != nil {
		return err
	}
	log := p.log.With("job_id", j.ID, "run_attempt", j.RunAttempt, "lease_id", j.LeaseID, "class", j.Class, "repo", j.Repo)
	err = p.cfg.GitHub.RerunJob(ctx, j.Scope, j.Repo, j.ID)
	next := RunAttempt(j.RunAttempt) + 1
	var note, result string
	switch {
	case err == nil:
		result = RerunRequested
		note = fmt.Sprintf("job re-run (attempt %d): %s", next, j.RerunReason)
		log.Info("lost job re-run", "attempt", next, "reason", j.RerunReason)
	case errors.Is(err, ErrRerunNotYet):
		if p.now().Sub(j.RerunAt) < rerunWindow {
			// The run's other jobs still run: GitHub re-runs only a
			// completed run. Ask again, further apart each time.
			log.Debug("lost job's workflow run still running; asking for its re-run later", "error", err)
			return river.JobSnooze(retryDelay(attempt, 10*time.Second, 5*time.Minute))
		}
		result = RerunGaveUp
		note = fmt.Sprintf("job not re-run: its workflow run still ran %s after the host was lost (%s)", rerunWindow, j.RerunReason)
		log.Warn("lost job not re-run: its workflow run kept running", "window", rerunWindow)
	case errors.Is(err, ErrRerunRefused):
		result = RerunRefused
		note = fmt.Sprintf("job not re-run (%s): %v", j.RerunReason, err)
		log.Error("lost job not re-run: GitHub refused", "error", err)
	case errors.Is(err, ErrNotFound):
		result = RerunGone
		note = fmt.Sprintf("job not re-run (%s): GitHub no longer has it", j.RerunReason)
		log.Warn("lost job not re-run: GitHub no longer has it", "error", err)
	default:
		if until, budget := RetryAt(err); budget {
			return river.JobSnooze(min(max(until.Sub(p.now()), time.Second)+time.Second, maxBudgetWait))
		}
		log.Warn("asking GitHub to re-run a lost job failed; retrying", "error", err)
		return err
	}
	p.noteRerun(j.Class, result)
	if j.LeaseID == "" {
		return nil
	}
	return p.cfg.Store.InTx(ctx, func(tx Tx) error {
		err := tx.NoteLease(ctx, j.LeaseID, note)
		if errors.Is(err, ErrNotFound) {
			return nil
		}
		return err
	})
}

// MarkHostLost declares that a lease's host was lost while it was idle or
// busy (why: one of the Lost* reasons), as the host watch does when the
// provider says so: LostReason and the release in one transaction. Tests
// use it to lose a host that no provider status can show (the local
// provider). A lease already on its way out keeps its reason.
func (p *Provisioner) MarkHostLost(ctx context.Context, leaseID, why string) error {
	l, err := p.cfg.Store.Lease(ctx, leaseID)
	if err != nil {
		return err
	}
	if l.State != StateIdle && l.State != StateBusy {
		return nil
	}
	ok, err := p.loseHost(ctx, l, why, "")
	if err == nil && ok {
		p.announce(ctx, ReleaseArgs{LeaseID: leaseID})
	}
	return err
}

// DefaultLostJobAfter is ReconcileConfig.LostJobAfter's default.
const DefaultLostJobAfter = 15 * time.Minute

// catchLostJobs is the backstop for a lost job's completed event that never
// came: the job of a lease released as lost, in a class that re-runs lost
// jobs, still not completed in our records a while after the release, is
// asked for on GitHub; once GitHub says completed, the event is made up
// from that and takes the usual way (planRerun). One request per such
// job per pass, only within rerunWindow of the release.
func (p *Provisioner) catchLostJobs(ctx context.Context, src JobSource) (int, error) {
	rerun := false
	for _, c := range p.cfg.Classes {
		rerun = rerun || c.RerunLostJobs
	}
	if !rerun {
		return 0, nil
	}
	after := p.cfg.Reconcile.LostJobAfter
	if after <= 0 {
		after = DefaultLostJobAfter
	}
	now := p.now()
	ls, err := p.cfg.Store.Leases(ctx, LeaseFilter{States: []State{StateReleased}, ReleasedSince: now.Add(-rerunWindow)})
	if err != nil {
		return 0, err
	}
	n := 0
	var errs []error
	for _, l := range ls {
		class := p.classes[l.Class]
		if l.LostReason == "" || l.BoundJobID == 0 || class == nil || !class.RerunLostJobs || now.Sub(l.ReleasedAt) < after {
			continue
		}
		j, err := p.cfg.Store.LatestJob(ctx, l.BoundJobID)
		if err != nil {
			if !errors.Is(err, ErrNotFound) {
				errs = append(errs, err)
			}
			continue
		}
		if j.Status == JobCompleted || j.LeaseID != "" && j.LeaseID != l.ID {
			continue
		}
		ev, err := src.JobStatus(ctx, j.Scope, j.Repo, j.ID)
		if errors.Is(err, ErrDeferred) {
			errs = append(errs, err)
			break
		}
		if err != nil || ev.Action != "completed" || RunAttempt(ev.RunAttempt) != RunAttempt(j.RunAttempt) {
			if err != nil && !errors.Is(err, ErrNotFound) {
				errs = append(errs, err)
			}
			continue
		}
		ev.RunAttempt = j.RunAttempt
		if ev.RunnerName == "" {
			ev.RunnerName = l.RunnerName
		}
		p.log.Info("lost job's completed event never came; taken from GitHub", "job_id", j.ID, "lease_id", l.ID, "conclusion", ev.Conclusion)
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
