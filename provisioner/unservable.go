package provisioner

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"
)

// Unservable jobs. A job can be known to get nothing from a host: its
// labels or repository are refused by policy, the runner group its runner
// would join cannot serve its repository, or two runners came online for it
// and GitHub gave it to neither. Such a job is marked (Job.Unservable):
// demand does not count it, so no lease is made for it, and the mark stays
// until something changes: a new delivery of the job, a change of the class
// policy (PolicyHash, looked at on Start), or a runner group that now
// serves it (asked again by each reconcile pass).

// PolicyObserver is told of refusals and of money spent on runners that
// never got their job; the metrics package implements it. It is optional:
// an Observer that does not implement it is not told.
type PolicyObserver interface {
	// JobUnservable counts one job marked unservable (once per job and
	// kind); class is "" when the job named none.
	JobUnservable(class string, kind UnservableKind)
	// UnusedSpent adds the cost of a host whose runner came online and
	// went unused while its job stayed queued.
	UnusedSpent(class, provider string, dollars float64)
}

// DefaultUnusedRetryBackoff is how long a job whose first runner went
// unused waits before its second and last lease.
const DefaultUnusedRetryBackoff = 2 * time.Minute

// groupCheckTimeout bounds the runner-group question asked before a
// delivery's transaction: the delivery is answered within GitHub's 10 s.
const groupCheckTimeout = 5 * time.Second

// ReasonUnusedRunner is the release reason of a lease whose runner went
// idle while the job it was made for stayed queued: GitHub never assigned
// it. The status page sums what such hosts cost.
const ReasonUnusedRunner = "idle timeout; its job stayed queued (GitHub never assigned it)"

// unservableNote is a mark made in a transaction, logged and counted once
// the transaction commits.
type unservableNote struct {
	job     *Job
	cleared string // set: the mark was cleared, for this reason
}

func (p *Provisioner) notePolicy(notes []unservableNote) {
	po, _ := p.cfg.Observer.(PolicyObserver)
	for _, n := range notes {
		j := n.job
		log := p.log.With("job_id", j.ID, "run_attempt", j.RunAttempt, "repo", j.Repo, "class", j.Class)
		if n.cleared != "" {
			log.Info("job servable again", "why", n.cleared)
			continue
		}
		u := j.Unservable
		lvl := slog.LevelWarn
		if u.Kind.Refused() {
			lvl = slog.LevelInfo // policy working as configured
		}
		log.Log(context.Background(), lvl, "job not served", "kind", string(u.Kind), "reason", u.Reason)
		if po != nil {
			po.JobUnservable(j.Class, u.Kind)
		}
	}
}

// checkGroup asks RunnerGroups whether the runner group of the job's scope
// may take it, for a job whose runner registers at org scope (a repository
// runner serves its repository). It runs before the delivery's
// transaction, never inside one. nil: served, or not asked.
func (p *Provisioner) checkGroup(ctx context.Context, scope Scope, repo, visibility string) *Unservable {
	if p.cfg.RunnerGroups == nil || scope.Org == "" {
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, groupCheckTimeout)
	defer cancel()
	ok, reason, err := p.cfg.RunnerGroups.GroupServes(ctx, scope, repo, visibility)
	switch {
	case err != nil:
		// The safe default: no paid host for a job that may never be
		// assigned; the next reconcile asks again.
		return &Unservable{Kind: UnservableGroupError, Reason: "runner group unknown: " + err.Error()}
	case !ok:
		if reason == "" {
			reason = fmt.Sprintf("the runner group of %s cannot serve %s", scope.Key(), repo)
		}
		return &Unservable{Kind: UnservableGroup, Reason: reason}
	}
	return nil
}

// mark sets a job's mark as of now under the current policy.
func (p *Provisioner) mark(j *Job, u Unservable) {
	u.At, u.Policy = p.now(), p.policy
	j.Unservable = u
}

// recordRefusal stores a job refused by policy (its queued event), so that
// it is logged and counted once and shown with its reason; or moves a
// stored refused job's status on, so that it leaves the list once it ran
// elsewhere or ended.
func (p *Provisioner) recordRefusal(ctx context.Context, tx Tx, ev JobEvent, status JobStatus, r *Refusal, job *Job) ([]unservableNote, error) {
	if job != nil {
		if !job.Unservable.Kind.Refused() || status.Rank() <= job.Status.Rank() {
			return nil, nil
		}
		job.Status = status
		return nil, tx.PutJob(ctx, job)
	}
	if status != JobQueued {
		return nil, nil
	}
	job = &Job{ID: ev.JobID, RunAttempt: ev.RunAttempt, RunID: ev.RunID, Name: ev.Name, WorkflowName: ev.Workflow,
		Repo: ev.Repo, Scope: p.scopeFor(ev), Class: r.Class, Labels: ev.Labels, Status: JobQueued,
		CreatedAt: ev.ReceivedAt, Visibility: ev.Visibility}
	p.mark(job, Unservable{Kind: r.Kind, Reason: r.Reason})
	if err := tx.PutJob(ctx, job); err != nil {
		return nil, err
	}
	return []unservableNote{{job: job}}, nil
}

// renewJob is a new delivery of a queued job already known (a redelivery,
// which keeps its GUID, or a repeated queued event): something may have
// changed, so a mark other than a policy refusal is cleared, with its
// count of unused runners, and the runner group's answer (asked before
// the transaction) applied afresh.
func (p *Provisioner) renewJob(ctx context.Context, tx Tx, ev JobEvent, group *Unservable) (*balanceMark, []unservableNote, error) {
	job, err := tx.Job(ctx, ev.JobID, ev.RunAttempt)
	if errors.Is(err, ErrNotFound) {
		return nil, nil, nil
	}
	if err != nil || job.Status != JobQueued || job.Unservable.Kind == "" || job.Unservable.Kind.Refused() {
		return nil, nil, err
	}
	before := job.Unservable
	job.Unservable, job.UnusedLeases = Unservable{}, 0
	notes := []unservableNote{{job: job, cleared: "a new delivery of the job"}}
	if group != nil {
		if group.Kind == before.Kind && group.Reason == before.Reason {
			return nil, nil, nil // nothing new to say
		}
		p.mark(job, *group)
		notes = []unservableNote{{job: job}}
	}
	if err := tx.PutJob(ctx, job); err != nil {
		return nil, nil, err
	}
	later, err := p.balanceSoon(ctx, tx, job.Class, job.Scope)
	if later {
		return &balanceMark{class: job.Class, scope: job.Scope}, notes, err
	}
	return nil, notes, err
}

// unusedRunner applies the no-lease-loop rule to a lease whose runner is
// released for sitting idle: if the job it was made for is still queued,
// GitHub did not give it that runner. The first time, the job waits a
// back-off before its next lease; the second, it is marked unservable. It
// returns the job when it was marked.
func (p *Provisioner) unusedRunner(ctx context.Context, tx Tx, l *Lease) (*Job, error) {
	if l.BoundJobID != 0 || l.JobID == 0 {
		return nil, nil
	}
	job, err := tx.Job(ctx, l.JobID, l.RunAttempt)
	if errors.Is(err, ErrNotFound) {
		return nil, nil
	}
	if err != nil || job.Status != JobQueued || job.Unservable.Kind != "" {
		return nil, err
	}
	idle := p.now().Sub(l.IdleSince).Round(time.Second)
	job.UnusedLeases++
	if job.UnusedLeases >= 2 {
		p.mark(job, Unservable{Kind: UnservableUnassigned, Reason: fmt.Sprintf(
			"runner online %s, GitHub never assigned the job (%d runners): a runner group, labels or a policy routes it elsewhere",
			idle, job.UnusedLeases)})
	} else {
		backoff := p.cfg.UnusedRetryBackoff
		p.mark(job, Unservable{Kind: UnservableBackoff, Until: p.now().Add(backoff), Reason: fmt.Sprintf(
			"runner online %s without the job; one more lease after %s", idle, backoff)})
	}
	return job, tx.PutJob(ctx, job)
}

// ReviewUnservable gives marked jobs their chance when something changed:
// a back-off that has run out ends, and a job marked for its runner group
// is served once the group serves it (the group is asked again, outside
// any transaction). It returns how many marks it cleared.
func (p *Provisioner) ReviewUnservable(ctx context.Context, askGroups bool) (int, error) {
	kinds := []UnservableKind{UnservableBackoff}
	if askGroups && p.cfg.RunnerGroups != nil {
		kinds = append(kinds, UnservableGroup, UnservableGroupError)
	}
	jobs, err := p.cfg.Store.UnservableJobs(ctx, UnservableFilter{Kinds: kinds, Limit: 200})
	if err != nil || len(jobs) == 0 {
		return 0, err
	}
	type key struct{ scope, repo, vis string }
	answers := map[key]*Unservable{}
	n := 0
	var errs []error
	for _, j := range jobs {
		var verdict *Unservable
		switch j.Unservable.Kind {
		case UnservableBackoff:
			if p.now().Before(j.Unservable.Until) {
				continue
			}
		default:
			k := key{j.Scope.Key(), j.Repo, j.Visibility}
			v, asked := answers[k]
			if !asked {
				v = p.checkGroup(ctx, j.Scope, j.Repo, j.Visibility)
				answers[k] = v
			}
			verdict = v
		}
		var notes []unservableNote
		err := p.cfg.Store.InTx(ctx, func(tx Tx) error {
			notes = nil
			cur, err := tx.Job(ctx, j.ID, j.RunAttempt)
			if err != nil {
				return err
			}
			if cur.Unservable != j.Unservable || cur.Status != JobQueued {
				return nil // changed meanwhile
			}
			if verdict != nil {
				if verdict.Kind == cur.Unservable.Kind && verdict.Reason == cur.Unservable.Reason {
					return nil
				}
				p.mark(cur, *verdict)
				notes = []unservableNote{{job: cur}}
				return tx.PutJob(ctx, cur)
			}
			why := "back-off over"
			if cur.Unservable.Kind != UnservableBackoff {
				why = "the runner group serves it now"
			}
			cur.Unservable = Unservable{}
			if err := tx.PutJob(ctx, cur); err != nil {
				return err
			}
			notes = []unservableNote{{job: cur, cleared: why}}
			n++
			if p.classes[cur.Class] == nil {
				return nil
			}
			return p.balance(ctx, tx, cur.Class, cur.Scope)
		})
		if err != nil {
			errs = append(errs, err)
			continue
		}
		p.notePolicy(notes)
	}
	return n, errors.Join(errs...)
}

// reviewPolicy, on Start, looks again at every mark made under another
// class policy: a refused job is judged by the policy now configured, and
// any other mark is cleared (with its count of unused runners), since the
// change may be what the job needed.
func (p *Provisioner) reviewPolicy(ctx context.Context) error {
	jobs, err := p.cfg.Store.UnservableJobs(ctx, UnservableFilter{Limit: 1000})
	if err != nil {
		return err
	}
	var errs []error
	for _, j := range jobs {
		if j.Unservable.Policy == p.policy {
			continue
		}
		next := *j
		next.Unservable, next.UnusedLeases = Unservable{}, 0
		why := "the class policy changed"
		if j.Unservable.Kind.Refused() {
			class, r := MatchJob(p.cfg.Classes, j.Labels, j.Repo, j.Visibility)
			switch {
			case class == nil && r != nil:
				p.mark(&next, Unservable{Kind: r.Kind, Reason: r.Reason})
				next.Class = r.Class
			case class == nil:
				// Fits no class now: leave it refused as it was, under
				// the new policy, so it is not looked at again.
				next.Unservable = j.Unservable
				next.Unservable.Policy = p.policy
			default:
				next.Class = class.Name
				if g := p.checkGroup(ctx, next.Scope, next.Repo, next.Visibility); g != nil {
					p.mark(&next, *g)
				}
			}
		}
		var notes []unservableNote
		if next.Unservable.Kind == "" {
			notes = []unservableNote{{job: &next, cleared: why}}
		} else if next.Unservable.Kind != j.Unservable.Kind {
			notes = []unservableNote{{job: &next}}
		}
		err := p.cfg.Store.InTx(ctx, func(tx Tx) error {
			if err := tx.PutJob(ctx, &next); err != nil {
				return err
			}
			if next.Unservable.Kind == "" && p.classes[next.Class] != nil {
				return p.balance(ctx, tx, next.Class, next.Scope)
			}
			return nil
		})
		if err != nil {
			errs = append(errs, err)
			continue
		}
		p.notePolicy(notes)
	}
	return errors.Join(errs...)
}

// refusedJobOnOurRunner follows a refused job that GitHub gave one of our
// runners anyway: GitHub routes by labels, and every runner has the default
// labels, so a `runs-on: self-hosted` job may take a runner made for
// another job. The lease is busy while it runs and released when it ends,
// as for any job, so that balance does not count it as free.
func (p *Provisioner) refusedJobOnOurRunner(ctx context.Context, tx Tx, ev JobEvent, status JobStatus) (*balanceMark, error) {
	if ev.RunnerName == "" || (status != JobInProgress && status != JobCompleted) {
		return nil, nil
	}
	l, foreign, err := p.leaseForEvent(ctx, tx, ev, ev.RunnerName, ev.JobID)
	if errors.Is(err, ErrNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	if foreign {
		return &balanceMark{foreign: true}, nil
	}
	mark := &balanceMark{}
	if status == JobInProgress {
		p.log.Warn("a job refused by policy took a runner of ours (GitHub routes by labels)", "job_id", ev.JobID, "repo", ev.Repo,
			"lease_id", l.ID, "runner_name", ev.RunnerName)
		if err := p.markBusy(ctx, tx, l, &Job{ID: ev.JobID}); err != nil {
			return nil, err
		}
	} else {
		if l.BoundJobID == 0 {
			if _, err := tx.UpdateLease(ctx, l.ID, func(l *Lease) { l.BoundJobID = ev.JobID }); err != nil {
				return nil, err
			}
		}
		if err := p.requestRelease(ctx, tx, l.ID, "job completed", ""); err != nil {
			return nil, err
		}
		if cur, err := tx.Lease(ctx, l.ID); err == nil && cur.State == StateReleasing && l.State != StateReleasing {
			mark.released = l.ID
		}
	}
	later, err := p.balanceSoon(ctx, tx, l.Class, l.Scope)
	if later {
		mark.class, mark.scope = l.Class, l.Scope
	}
	return mark, err
}
