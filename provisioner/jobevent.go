package provisioner

// A workflow_job event, from the webhook or from reconcile's poll of the
// queue, enters the provisioner here (HandleJobEvent): the job's status is
// recorded and what it changes of leases (a runner that took it is busy,
// one whose job completed is released) is done in the same transaction;
// the balance of its class (balance.go) then rents hosts for the jobs
// that wait, and provision.go brings each one up.

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// JobEvent is a decoded workflow_job delivery.
type JobEvent struct {
	DeliveryID string
	Action     string // queued, waiting, in_progress, completed
	Status     string // workflow_job.status; may differ from Action
	JobID      int64
	RunID      int64
	RunAttempt int64
	Name       string
	Workflow   string
	Labels     []string
	Repo       string // owner/name
	Org        string // empty for user-owned repositories
	// Visibility is the repository's: VisibilityPublic, VisibilityPrivate,
	// VisibilityInternal, or "" when the source did not say (policy treats
	// unknown as public: the stricter reading).
	Visibility string
	// InstallationID is the GitHub App installation that sent the event.
	InstallationID int64
	RunnerName     string
	Conclusion     string
	// ReceivedAt is when the delivery arrived (now when zero).
	ReceivedAt time.Time
}

// Outcome says what became of an event.
type Outcome int

// Outcomes of HandleJobEvent.
const (
	Accepted  Outcome = iota // recorded; work may have been enqueued
	Duplicate                // seen before (same delivery, or same job/attempt/action)
	Ignored                  // no class matches, or nothing to do
)

func (o Outcome) String() string {
	return [...]string{"accepted", "duplicate", "ignored"}[o]
}

// jobStatus maps an event to the status it reports. A queued event whose
// job waits for approval is a waiting event: no host for it yet.
func (ev JobEvent) jobStatus() (JobStatus, bool) {
	switch ev.Action {
	case "queued":
		if ev.Status == "waiting" {
			return JobWaiting, true
		}
		return JobQueued, true
	case "waiting":
		return JobWaiting, true
	case "in_progress":
		return JobInProgress, true
	case "completed":
		return JobCompleted, true
	}
	return "", false
}

// HandleJobEvent records a workflow_job event and what it changes of leases
// in one transaction; the balance of its class it calls for follows in the
// balancer's next pass (once started). It is safe against duplicates and any order of
// arrival: a job's status only moves forward.
func (p *Provisioner) HandleJobEvent(ctx context.Context, ev JobEvent) (Outcome, error) {
	status, ok := ev.jobStatus()
	if !ok {
		return Ignored, nil
	}
	class, refusal := MatchJob(p.cfg.Classes, ev.Labels, ev.Repo, ev.Visibility)
	if class == nil && refusal != nil && refusal.Class != "" && status != JobQueued && status != JobWaiting {
		// Policy decides what is rented, which a queued job asks for; a
		// later status of a job whose labels name a class is followed as
		// any (its runner's lease, a stored refusal moving on), whatever
		// the event says of the repository (a REST read may say nothing).
		class, refusal = p.classes[refusal.Class], nil
	}
	if refusal != nil && refusal.Kind == RefusedPublic && ev.Visibility == "" {
		// Refused only for want of the visibility (an event made up from
		// a REST listing that did not give it): nothing is recorded, so
		// the delivery, which always says, is judged on its own.
		p.log.Debug("job of unknown visibility not served", "job_id", ev.JobID, "repo", ev.Repo, "reason", refusal.Reason)
		return Ignored, nil
	}
	// The runner group is asked before the transaction, never inside one
	// (SQLite has one writer), and only for a queued job of a class.
	var group *Unservable
	if class != nil && status == JobQueued {
		group = p.checkGroup(ctx, p.scopeFor(ev), ev.Repo, ev.Visibility)
	}
	out := Ignored
	var mark *balanceMark
	var notes []unservableNote
	err := p.cfg.Store.InTx(ctx, func(tx Tx) error {
		now := p.now()
		out, mark, notes = Ignored, nil, nil
		// The dedupe key of the job event is the status the event reports,
		// so that an approval-gated job's second "queued" is not mistaken
		// for the first. A job refused by policy is recorded too: once, so
		// that it is logged and counted once and shown.
		rec, err := tx.RecordEvent(ctx, EventRecord{GUID: ev.DeliveryID, Event: "workflow_job", Action: ev.Action, At: now,
			Job: class != nil || refusal != nil, JobID: ev.JobID, RunAttempt: ev.RunAttempt, Status: string(status)})
		if err != nil {
			return err
		}
		renew := class != nil && status == JobQueued && ev.DeliveryID != ""
		if !rec.NewDelivery {
			out = Duplicate
			if renew {
				// GitHub keeps the GUID on a redelivery: one asked for
				// after a fix is a change that gives a marked job its
				// chance again.
				mark, notes, err = p.renewJob(ctx, tx, ev, group)
			}
			return err
		}
		if class == nil {
			if refusal != nil && rec.NewJobEvent {
				notes, err = p.recordRefusal(ctx, tx, ev, status, refusal, rec.Job)
				if err == nil {
					mark, err = p.refusedJobOnOurRunner(ctx, tx, ev, status)
				}
			}
			return err
		}
		if !rec.NewJobEvent {
			out = Duplicate
			if renew {
				mark, notes, err = p.renewJob(ctx, tx, ev, group)
			}
			return err
		}
		out = Accepted
		mark, notes, err = p.applyJobEvent(ctx, tx, ev, status, class, rec.Job, group)
		return err
	})
	if err != nil {
		return Ignored, err
	}
	p.notePolicy(notes)
	if mark != nil && mark.foreign {
		out = Ignored
	}
	if class != nil {
		p.recent.note(p.scopeFor(ev), ev.Repo, p.now())
	}
	if mark != nil {
		if mark.released != "" {
			p.announce(ctx, ReleaseArgs{LeaseID: mark.released})
		}
		if mark.class != "" {
			p.bal.mark(mark.class, mark.scope)
		}
	}
	return out, nil
}

// balanceMark is what a committed delivery leaves to do: the balance of a
// class in a scope (for the balancer), and the lease it asked to release
// (whose work is announced at once).
type balanceMark struct {
	class    string
	scope    Scope
	released string
	// foreign: the delivery named a runner of ours but not for its lease
	// (identity.go); it is reported as ignored.
	foreign bool
}

// applyJobEvent records what the event says, and calls for the balance of
// its class (balanceSoon); a balance left for the balancer is returned.
func (p *Provisioner) applyJobEvent(ctx context.Context, tx Tx, ev JobEvent, status JobStatus, class *Class, job *Job, group *Unservable) (*balanceMark, []unservableNote, error) {
	log := p.log.With("job_id", ev.JobID, "run_attempt", ev.RunAttempt, "delivery_id", ev.DeliveryID, "class", class.Name)
	if job == nil {
		// A job is dated from its first delivery's arrival: the queued →
		// create phase of its lease counts from there.
		job = &Job{
			ID: ev.JobID, RunAttempt: ev.RunAttempt, RunID: ev.RunID, Name: ev.Name, WorkflowName: ev.Workflow,
			Repo: ev.Repo, Scope: p.scopeFor(ev), Class: class.Name, Labels: ev.Labels, CreatedAt: ev.ReceivedAt,
		}
	}
	if status.Rank() <= job.Status.Rank() {
		log.Debug("late event ignored", "action", ev.Action, "job_status", job.Status)
		return nil, nil, nil
	}
	if ev.Visibility != "" {
		job.Visibility = ev.Visibility
	}
	var notes []unservableNote
	if status == JobQueued && group != nil {
		p.mark(job, *group)
		notes = append(notes, unservableNote{job: job})
	}
	job.Status = status
	if ev.RunnerName != "" {
		job.RunnerName = ev.RunnerName
	}
	if status == JobCompleted {
		job.Conclusion = ev.Conclusion
	}

	var lease *Lease
	released, foreign := "", false
	if job.RunnerName != "" && (status == JobInProgress || status == JobCompleted) {
		l, other, err := p.leaseForEvent(ctx, tx, ev, job.RunnerName, job.ID)
		switch {
		case errors.Is(err, ErrNotFound):
			// Another runner with the same labels took it.
		case err != nil:
			return nil, nil, err
		case other:
			// Named our runner without being about its lease (identity.go):
			// the job's own record moves on, the lease is not touched.
			foreign = true
		default:
			lease = l
			job.LeaseID = l.ID
		}
	}
	if err := tx.PutJob(ctx, job); err != nil {
		return nil, nil, err
	}
	log.Info("workflow job "+string(status), "runner_name", job.RunnerName, "lease_id", job.LeaseID)

	if lease != nil {
		switch status {
		case JobInProgress:
			if err := p.markBusy(ctx, tx, lease, job); err != nil {
				return nil, nil, err
			}
		case JobCompleted:
			if lease.BoundJobID == 0 {
				if _, err := tx.UpdateLease(ctx, lease.ID, func(l *Lease) { l.BoundJobID = job.ID }); err != nil {
					return nil, nil, err
				}
			}
			if !lease.BusySince.IsZero() {
				p.cfg.Observer.Phase(lease.Class, lease.Provider, PhaseJobRun, p.now().Sub(lease.BusySince))
			}
			if err := p.requestRelease(ctx, tx, lease.ID, "job completed", ""); err != nil {
				return nil, nil, err
			}
			// Announce only release work this transaction enqueued: a lease
			// still owned by its provision worker is only flagged, and an
			// announcement of work that is not there would create it.
			if cur, err := tx.Lease(ctx, lease.ID); err == nil && cur.State == StateReleasing && lease.State != StateReleasing {
				released = lease.ID
			}
			if _, err := p.planRerun(ctx, tx, job, lease, class); err != nil {
				return nil, nil, err
			}
		}
	}
	mark := &balanceMark{released: released, foreign: foreign}
	later, err := p.balanceSoon(ctx, tx, class.Name, job.Scope)
	if later {
		mark.class, mark.scope = class.Name, job.Scope
	}
	return mark, notes, err
}

func (p *Provisioner) markBusy(ctx context.Context, tx Tx, l *Lease, job *Job) error {
	if l.State != StateIdle && l.State != StateBootstrapping {
		// Already busy, or on its way out; nothing to bind.
		return nil
	}
	busy, err := tx.Transition(ctx, l.ID, StateBusy, fmt.Sprintf("took job %d", job.ID), func(l *Lease) {
		l.BoundJobID = job.ID
		l.BusySince = p.now()
	})
	if err != nil {
		return err
	}
	if err := p.warmTookJob(ctx, tx, l, job); err != nil {
		return err
	}
	// A runner that took a job while starting came online (hedge.go).
	return p.hedgeOnline(ctx, tx, busy)
}

// scopeFor decides where the runner for a job registers: the org when the
// repository belongs to one, else the repository.
func (p *Provisioner) scopeFor(ev JobEvent) Scope {
	if ev.Org != "" {
		return Scope{Org: ev.Org, InstallationID: ev.InstallationID}
	}
	return Scope{Repo: ev.Repo, InstallationID: ev.InstallationID}
}
