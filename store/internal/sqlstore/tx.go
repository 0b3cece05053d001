package sqlstore

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/riverqueue/river"

	"github.com/crabbox/crabbox-runner/provisioner"
)

// EnqueueFunc inserts durable work in the transaction at hand (River's
// InsertManyTx with the store's own transaction type).
type EnqueueFunc func(ctx context.Context, params []river.InsertManyParams) error

// Tx is provisioner.Tx on a Querier that runs in one transaction.
type Tx struct {
	q       Querier
	d       *Dialect
	now     func() time.Time
	enqueue EnqueueFunc
}

var _ provisioner.Tx = (*Tx)(nil)

// NewTx returns the Tx for one transaction. enqueue is nil until the work
// queue is started; Enqueue then fails with provisioner.ErrQueueNotStarted.
func NewTx(q Querier, d *Dialect, now func() time.Time, enqueue EnqueueFunc) *Tx {
	return &Tx{q: q, d: d, now: now, enqueue: enqueue}
}

// RecordDelivery inserts the GUID unless it is there. Under concurrency the
// unique key decides: a second inserter waits for the first to commit and
// then inserts nothing (or inserts, if the first rolled back).
func (t *Tx) RecordDelivery(ctx context.Context, guid, event, action string, at time.Time) (bool, error) {
	n, err := t.q.Exec(ctx, `INSERT INTO crabbox_delivery (guid, event, action, received_at)
		VALUES ($1, $2, $3, $4) ON CONFLICT (guid) DO NOTHING`, guid, event, action, Micros(at))
	if err != nil {
		return false, t.d.errorf("record delivery: %w", err)
	}
	return n == 1, nil
}

// RecordJobEvent inserts (job, attempt, action) unless it is there; the
// same holds under concurrency as for RecordDelivery.
func (t *Tx) RecordJobEvent(ctx context.Context, jobID, runAttempt int64, action, guid string, at time.Time) (bool, error) {
	n, err := t.q.Exec(ctx, `INSERT INTO crabbox_job_event (job_id, run_attempt, action, guid, received_at)
		VALUES ($1, $2, $3, $4, $5) ON CONFLICT (job_id, run_attempt, action) DO NOTHING`,
		jobID, runAttempt, action, guid, Micros(at))
	if err != nil {
		return false, t.d.errorf("record job event: %w", err)
	}
	return n == 1, nil
}

// recordEvent is RecordEvent's first statement where statements are
// pipelined (PostgreSQL): the delivery, then the job event only if the
// delivery is new (or has no GUID), then which of the two were new.
const recordEvent = `WITH d AS (
		INSERT INTO crabbox_delivery (guid, event, action, received_at)
		SELECT $1, $2, $3, $4 WHERE $1 <> ''
		ON CONFLICT (guid) DO NOTHING RETURNING 1),
	e AS (
		INSERT INTO crabbox_job_event (job_id, run_attempt, action, guid, received_at)
		SELECT $5, $6, $7, $1, $4 WHERE $1 = '' OR EXISTS (SELECT 1 FROM d)
		ON CONFLICT (job_id, run_attempt, action) DO NOTHING RETURNING 1)
	SELECT $1 = '' OR EXISTS (SELECT 1 FROM d), EXISTS (SELECT 1 FROM e)`

// RecordEvent records a delivery and its job event and reads the job: one
// round trip where the Querier pipelines, else the statements in turn.
func (t *Tx) RecordEvent(ctx context.Context, e provisioner.EventRecord) (provisioner.EventRecorded, error) {
	var out provisioner.EventRecorded
	if p, ok := t.q.(Pipeliner); ok && e.Job {
		err := p.Pipeline(ctx, []Query{
			{recordEvent, []any{e.GUID, e.Event, e.Action, Micros(e.At), e.JobID, e.RunAttempt, e.Status}},
			{`SELECT ` + jobColumns + ` FROM crabbox_job WHERE id = $1 AND run_attempt = $2`, []any{e.JobID, e.RunAttempt}},
		}, func(i int, row Row) error {
			if i == 0 {
				return row.Scan(&out.NewDelivery, &out.NewJobEvent)
			}
			j, err := scanJob(row)
			if errors.Is(err, sql.ErrNoRows) {
				return nil
			}
			out.Job = j
			return err
		})
		if err != nil {
			return provisioner.EventRecorded{}, t.d.errorf("record event: %w", err)
		}
		if !out.NewDelivery || !out.NewJobEvent {
			out.Job = nil
		}
		return out, nil
	}
	if e.GUID != "" {
		fresh, err := t.RecordDelivery(ctx, e.GUID, e.Event, e.Action, e.At)
		if err != nil || !fresh {
			return out, err
		}
	}
	out.NewDelivery = true
	if !e.Job {
		return out, nil
	}
	fresh, err := t.RecordJobEvent(ctx, e.JobID, e.RunAttempt, e.Status, e.GUID, e.At)
	if err != nil || !fresh {
		return out, err
	}
	out.NewJobEvent = true
	out.Job, err = getJob(ctx, t.q, t.d, e.JobID, e.RunAttempt)
	if errors.Is(err, provisioner.ErrNotFound) {
		return out, nil
	}
	return out, err
}

const jobColumns = `id, run_attempt, run_id, name, workflow_name, repo, scope_key, scope_org, scope_repo,
	installation_id, class, labels, status, conclusion, runner_name, lease_id, created_at, updated_at,
	visibility, unservable_kind, unservable_reason, unservable_at, unservable_until, policy_hash, unused_leases,
	rerun_at, rerun_reason`

// servable is the SQL condition of a job that demand counts: queued and
// not marked unservable (the SQLite triggers of 004_unservable say the
// same).
const servable = `status = 'queued' AND unservable_kind = ''`

// Job reads one workflow job.
func (t *Tx) Job(ctx context.Context, id, runAttempt int64) (*provisioner.Job, error) {
	return getJob(ctx, t.q, t.d, id, runAttempt)
}

// PutJob inserts or replaces a workflow job.
func (t *Tx) PutJob(ctx context.Context, j *provisioner.Job) error {
	now := t.now()
	if j.CreatedAt.IsZero() {
		j.CreatedAt = now
	}
	j.UpdatedAt = now
	u := j.Unservable
	_, err := t.q.Exec(ctx, `INSERT INTO crabbox_job (`+jobColumns+`) VALUES (`+marks(1, 27)+`)
		ON CONFLICT (id, run_attempt) DO UPDATE SET
			run_id = excluded.run_id, name = excluded.name, workflow_name = excluded.workflow_name,
			repo = excluded.repo, scope_key = excluded.scope_key, scope_org = excluded.scope_org,
			scope_repo = excluded.scope_repo, installation_id = excluded.installation_id,
			class = excluded.class, labels = excluded.labels, status = excluded.status,
			conclusion = excluded.conclusion, runner_name = excluded.runner_name,
			lease_id = excluded.lease_id, updated_at = excluded.updated_at,
			visibility = excluded.visibility, unservable_kind = excluded.unservable_kind,
			unservable_reason = excluded.unservable_reason, unservable_at = excluded.unservable_at,
			unservable_until = excluded.unservable_until, policy_hash = excluded.policy_hash,
			unused_leases = excluded.unused_leases, rerun_at = excluded.rerun_at,
			rerun_reason = excluded.rerun_reason`,
		j.ID, j.RunAttempt, j.RunID, j.Name, j.WorkflowName, j.Repo, j.Scope.Key(), j.Scope.Org, j.Scope.Repo,
		j.Scope.InstallationID, j.Class, strings.Join(j.Labels, "\n"), string(j.Status), j.Conclusion,
		j.RunnerName, j.LeaseID, Micros(j.CreatedAt), Micros(j.UpdatedAt),
		j.Visibility, string(u.Kind), u.Reason, Micros(u.At), Micros(u.Until), u.Policy, j.UnusedLeases,
		Micros(j.RerunAt), j.RerunReason)
	if err != nil {
		return t.d.errorf("put job %d: %w", j.ID, err)
	}
	return nil
}

func getJob(ctx context.Context, q Querier, d *Dialect, id, runAttempt int64) (*provisioner.Job, error) {
	j, err := scanJob(q.QueryRow(ctx, `SELECT `+jobColumns+` FROM crabbox_job WHERE id = $1 AND run_attempt = $2`, id, runAttempt))
	if errors.Is(err, sql.ErrNoRows) {
		return nil, fmt.Errorf("job %d attempt %d: %w", id, runAttempt, provisioner.ErrNotFound)
	}
	if err != nil {
		return nil, d.errorf("get job %d: %w", id, err)
	}
	return j, nil
}

func scanJob(row Row) (*provisioner.Job, error) {
	var j provisioner.Job
	var scopeKey, labels, status, kind string
	var created, updated, uAt, uUntil, rerunAt int64
	err := row.Scan(&j.ID, &j.RunAttempt, &j.RunID, &j.Name, &j.WorkflowName, &j.Repo, &scopeKey, &j.Scope.Org, &j.Scope.Repo,
		&j.Scope.InstallationID, &j.Class, &labels, &status, &j.Conclusion, &j.RunnerName, &j.LeaseID, &created, &updated,
		&j.Visibility, &kind, &j.Unservable.Reason, &uAt, &uUntil, &j.Unservable.Policy, &j.UnusedLeases,
		&rerunAt, &j.RerunReason)
	if err != nil {
		return nil, err
	}
	j.Unservable.Kind = provisioner.UnservableKind(kind)
	j.Unservable.At, j.Unservable.Until = FromMicros(uAt), FromMicros(uUntil)
	if labels != "" {
		j.Labels = strings.Split(labels, "\n")
	}
	j.Status = provisioner.JobStatus(status)
	j.CreatedAt, j.UpdatedAt = FromMicros(created), FromMicros(updated)
	j.RerunAt = FromMicros(rerunAt)
	return &j, nil
}

// Demand counts the queued jobs and the available leases of one class in
// one scope (after the dialect's LockDemand, if any).
func (t *Tx) Demand(ctx context.Context, class, scopeKey string) (queued, available int, err error) {
	if t.d.LockDemand != "" {
		if _, err := t.q.Exec(ctx, t.d.LockDemand, class, scopeKey); err != nil {
			return 0, 0, t.d.errorf("demand lock: %w", err)
		}
	}
	if t.d.DemandTable {
		err = t.q.QueryRow(ctx, `SELECT coalesce(max(queued), 0), coalesce(max(available), 0)
			FROM crabbox_demand WHERE class = $1 AND scope_key = $2`, class, scopeKey).Scan(&queued, &available)
		if err != nil {
			return 0, 0, t.d.errorf("demand: %w", err)
		}
		return queued, available, nil
	}
	// One statement, so both counts come from one snapshot (under READ
	// COMMITTED two statements could see a commit land between them).
	states := availableStates()
	err = t.q.QueryRow(ctx, `SELECT
		(SELECT count(*) FROM crabbox_job WHERE class = $1 AND scope_key = $2 AND `+servable+`),
		(SELECT count(*) FROM crabbox_lease WHERE class = $1 AND scope_key = $2
			AND release_reason = '' AND state IN (`+marks(3, len(states))+`))`,
		append([]any{class, scopeKey}, states...)...).Scan(&queued, &available)
	if err != nil {
		return 0, 0, t.d.errorf("demand: %w", err)
	}
	return queued, available, nil
}

// queuedJobsScan bounds how far NewestQueuedJobs looks beyond the jobs it
// wants.
const queuedJobsScan = 1000

// NewestQueuedJobs returns up to n of the jobs of a class in a scope still
// queued that have no lease made for them that can still take a job, the
// most recently arrived ones, oldest of them first. A job whose host never
// booted, or whose runner took another job, gets its next lease made for
// it.
//
// Only the newest n+queuedJobsScan queued jobs are looked at. Jobs a
// balance that fell behind skipped lie under newer ones that got leases;
// digging through those on every pass made each pass slower the further
// behind it was, until it could not catch up (on PostgreSQL, tens of
// seconds behind at 2,000 deliveries a second). A lease made beyond the
// jobs found is made for no job: GitHub hands runners jobs in its own
// order, so only the lease's queued → create figure is lost.
func (t *Tx) NewestQueuedJobs(ctx context.Context, class, scopeKey string, n int) ([]*provisioner.Job, error) {
	states := availableStates()
	rows, err := t.q.Query(ctx, `SELECT `+jobColumns+` FROM (
			SELECT `+jobColumns+` FROM crabbox_job WHERE class = $1 AND scope_key = $2 AND status = $3
			AND unservable_kind = '' ORDER BY created_at DESC LIMIT $5) j
		WHERE NOT EXISTS (SELECT 1 FROM crabbox_lease l WHERE l.job_id = j.id AND l.run_attempt = j.run_attempt
			AND l.release_reason = '' AND l.state IN (`+marks(6, len(states))+`))
		ORDER BY created_at DESC LIMIT $4`,
		append([]any{class, scopeKey, string(provisioner.JobQueued), n, n + queuedJobsScan}, states...)...)
	if err != nil {
		return nil, t.d.errorf("newest queued jobs: %w", err)
	}
	out, err := scanJobs(rows)
	if err != nil {
		return nil, t.d.errorf("newest queued jobs: %w", err)
	}
	slices.Reverse(out)
	return out, nil
}

// Serialize takes the dialect's transaction lock on the name, if it has one.
func (t *Tx) Serialize(ctx context.Context, name string) error {
	if t.d.LockDemand == "" {
		return nil
	}
	if _, err := t.q.Exec(ctx, t.d.LockDemand, "serialize", name); err != nil {
		return t.d.errorf("serialize %s: %w", name, err)
	}
	return nil
}

// Enqueue inserts durable work in this transaction.
func (t *Tx) Enqueue(ctx context.Context, args river.JobArgs, opts *river.InsertOpts) error {
	if t.enqueue == nil {
		return provisioner.ErrQueueNotStarted
	}
	if err := t.enqueue(ctx, []river.InsertManyParams{{Args: args, InsertOpts: opts}}); err != nil {
		return t.d.errorf("enqueue %s: %w", args.Kind(), err)
	}
	return nil
}

// EnqueueMany inserts several pieces of durable work in this transaction,
// in one statement where the database allows.
func (t *Tx) EnqueueMany(ctx context.Context, params []river.InsertManyParams) error {
	if len(params) == 0 {
		return nil
	}
	if t.enqueue == nil {
		return provisioner.ErrQueueNotStarted
	}
	if err := t.enqueue(ctx, params); err != nil {
		return t.d.errorf("enqueue %d %s jobs: %w", len(params), params[0].Args.Kind(), err)
	}
	return nil
}

// RerunBefore returns an attempt of j's job that was re-run already: the
// same job id, or the same run and name in the same repository.
func (t *Tx) RerunBefore(ctx context.Context, j *provisioner.Job) (*provisioner.Job, error) {
	out, err := scanJob(t.q.QueryRow(ctx, `SELECT `+jobColumns+` FROM crabbox_job
		WHERE rerun_at <> 0 AND (id = $1 OR (repo = $2 AND run_id = $3 AND run_id <> 0 AND name = $4))
		ORDER BY run_attempt LIMIT 1`, j.ID, j.Repo, j.RunID, j.Name))
	if errors.Is(err, sql.ErrNoRows) {
		return nil, nil
	}
	if err != nil {
		return nil, t.d.errorf("re-run of job %d: %w", j.ID, err)
	}
	return out, nil
}
