package provisioner

import (
	"context"
	"log/slog"
	"time"

	"github.com/riverqueue/river"
)

// Store keeps leases, workflow jobs, deliveries and the durable work queue
// in one database, so that recording a fact and enqueueing the work it
// causes commit together. Implementations: store/sqlite (embedded default)
// and, later, store/postgres; store/storetest holds the suite both pass.
type Store interface {
	// InTx runs fn in one transaction. Work enqueued through the Tx commits
	// or rolls back with it. fn must not call the Store itself.
	InTx(ctx context.Context, fn func(tx Tx) error) error

	Lease(ctx context.Context, id string) (*Lease, error)
	Leases(ctx context.Context, f LeaseFilter) ([]*Lease, error)
	LeaseEvents(ctx context.Context, leaseID string) ([]Event, error)
	// LeaseEventsOf returns the histories of many leases at once, each
	// oldest first, by lease id (a lease without history is absent): a
	// status page's view in one read rather than one per lease. Any
	// number of ids; the store reads them in bounded batches.
	LeaseEventsOf(ctx context.Context, ids []string) (map[string][]Event, error)
	Job(ctx context.Context, id, runAttempt int64) (*Job, error)
	// LatestJob returns the latest attempt of a job, or ErrNotFound.
	LatestJob(ctx context.Context, id int64) (*Job, error)
	// NewestJob returns the job of the class that arrived last (any
	// status, any scope), or ErrNotFound: its scope is where the class's
	// warm hosts register.
	NewestJob(ctx context.Context, class string) (*Job, error)
	// QueuedJobs lists the jobs still queued that were last updated before
	// the given time, oldest first (reconciliation asks GitHub about them).
	QueuedJobs(ctx context.Context, updatedBefore time.Time) ([]*Job, error)
	// UnservableJobs lists the queued jobs marked unservable, most recently
	// marked first.
	UnservableJobs(ctx context.Context, f UnservableFilter) ([]*Job, error)
	// ClassScopes lists the (class, scope) pairs that have queued jobs or
	// leases that can still take one: what balancing must look at.
	ClassScopes(ctx context.Context) ([]ClassScope, error)

	// BadMachines lists the machines whose mark has not run out at now
	// (badmachines.go), by provider and machine.
	BadMachines(ctx context.Context, now time.Time) ([]BadMachine, error)

	// Ping checks the database answers (readiness).
	Ping(ctx context.Context) error

	// StartWork starts the durable work queue with the given workers. Until
	// it is called, Tx.Enqueue fails with ErrQueueNotStarted.
	StartWork(ctx context.Context, cfg WorkConfig) error
	// StopWork stops fetching new work and waits for running work to end,
	// or for ctx.
	StopWork(ctx context.Context) error

	Close() error
}

// Tx is the store inside one transaction. On PostgreSQL, Lease locks the row.
type Tx interface {
	// RecordDelivery stores a delivery GUID. It returns false when the GUID
	// was seen before (a redelivery or a second hook).
	RecordDelivery(ctx context.Context, guid, event, action string, at time.Time) (bool, error)
	// RecordJobEvent stores that (job, attempt, action) was received. It
	// returns false when it was received before.
	RecordJobEvent(ctx context.Context, jobID, runAttempt int64, action, guid string, at time.Time) (bool, error)
	// RecordEvent is RecordDelivery, then (when the delivery is new, and
	// e.Job is set) RecordJobEvent and the read of the job, in as few
	// round trips as the database allows: the start of every delivery.
	RecordEvent(ctx context.Context, e EventRecord) (EventRecorded, error)

	// Job returns a workflow job, or ErrNotFound.
	Job(ctx context.Context, id, runAttempt int64) (*Job, error)
	// PutJob inserts or replaces a workflow job.
	PutJob(ctx context.Context, j *Job) error
	// NewestJob is Store.NewestJob in the transaction.
	NewestJob(ctx context.Context, class string) (*Job, error)
	// RerunBefore returns an attempt of the job that crabbox-runner
	// already re-run (RerunAt set): any attempt of the same job id, or a
	// job of the same workflow run and name in the repository (a re-run's
	// attempt may get a new job id), or nil.
	RerunBefore(ctx context.Context, j *Job) (*Job, error)

	// Demand counts, for one class in one scope, the jobs still queued and
	// not marked unservable, and the leases that can still take one
	// (State.Available).
	Demand(ctx context.Context, class, scopeKey string) (queued, available int, err error)

	InsertLease(ctx context.Context, l *Lease) error
	// NewestQueuedJobs returns up to n of the jobs of a class in a scope
	// still queued that have no lease made for them that can still take a
	// job (State.Available, no release asked), the most recently arrived
	// ones, oldest of them first: a balance making leases makes them for
	// those.
	NewestQueuedJobs(ctx context.Context, class, scopeKey string, n int) ([]*Job, error)
	// InsertLeases inserts several, cheaper than one by one.
	InsertLeases(ctx context.Context, ls []*Lease) error
	Lease(ctx context.Context, id string) (*Lease, error)
	LeaseByRunnerName(ctx context.Context, runnerName string) (*Lease, error)
	Leases(ctx context.Context, f LeaseFilter) ([]*Lease, error)
	// Transition applies mut to the lease and moves it to state to, recording
	// an event with the reason. A move the lifecycle does not allow returns a
	// *TransitionError and changes nothing.
	Transition(ctx context.Context, id string, to State, reason string, mut func(*Lease)) (*Lease, error)
	// UpdateLease applies mut to the lease without changing its state.
	UpdateLease(ctx context.Context, id string, mut func(*Lease)) (*Lease, error)
	// NoteLease adds an event to the lease's history that changes nothing
	// (from and to are its state): something that happened after it, such
	// as the re-run of the job it lost.
	NoteLease(ctx context.Context, id, reason string) error

	// MarkBadMachine records that a machine failed a lease: a new row, or
	// one more mark on the machine's row (which keeps the later end and the
	// first mark's time; a row whose mark ran out starts over).
	MarkBadMachine(ctx context.Context, m BadMachine) error

	// Enqueue inserts durable work in this transaction.
	Enqueue(ctx context.Context, args river.JobArgs, opts *river.InsertOpts) error
	// EnqueueMany inserts several at once: cheaper per piece of work.
	EnqueueMany(ctx context.Context, params []river.InsertManyParams) error

	// Serialize makes transactions that name the same thing run one after
	// the other until they end (a transaction advisory lock on PostgreSQL;
	// SQLite has one writer at a time already). Checks that span many rows,
	// such as the spend cap, use it.
	Serialize(ctx context.Context, name string) error
}

// ClassScope is one class in one scope.
type ClassScope struct {
	Class string
	Scope Scope
}

// LeaseFilter selects leases; zero fields match everything.
type LeaseFilter struct {
	States   []State
	Class    string
	ScopeKey string
	Provider string
	// ReleasedSince, when set, leaves out the leases released before it;
	// leases in any other state still match. With it, one query reads what
	// is live and what ended since (the status page's "today").
	ReleasedSince time.Time
	// HedgeOf, when set, selects the hedges of that lease; Hedges selects
	// every lease that is a hedge (HedgeOf set).
	HedgeOf string
	Hedges  bool
	Limit   int
}

// WorkConfig configures the durable work queue.
type WorkConfig struct {
	Workers      *river.Workers
	PeriodicJobs []*river.PeriodicJob
	// Queues maps queue names to their maximum concurrent workers.
	Queues map[string]int
	// FetchGaps sets, for a queue, how soon after one look for work the
	// next may follow, where that is not as soon as the store can. Each
	// look is a write; work that can wait a little is fetched in fewer,
	// larger looks, which leaves the database to the work that cannot.
	FetchGaps map[string]time.Duration
	// PollInterval is how often idle workers look for new work.
	PollInterval time.Duration
	// RescueAfter is how long a job may run before another worker takes it
	// over (after a crash); longer than any worker's timeout.
	RescueAfter time.Duration
	Logger      *slog.Logger
}

// JobStatus is a workflow job's status as crabbox-runner knows it. It only
// moves forward: waiting < queued < in_progress < completed.
type JobStatus string

// Workflow job statuses.
const (
	JobWaiting    JobStatus = "waiting" // waits for approval; no host yet
	JobQueued     JobStatus = "queued"
	JobInProgress JobStatus = "in_progress"
	JobCompleted  JobStatus = "completed"
)

// Rank orders statuses so late and reordered events cannot move a job back.
func (s JobStatus) Rank() int {
	switch s {
	case JobWaiting:
		return 1
	case JobQueued:
		return 2
	case JobInProgress:
		return 3
	case JobCompleted:
		return 4
	}
	return 0
}

// Job is a GitHub Actions workflow job that matched a class.
type Job struct {
	ID           int64
	RunAttempt   int64
	RunID        int64
	Name         string
	WorkflowName string
	Repo         string // owner/name
	Scope        Scope
	Class        string
	Labels       []string
	Status       JobStatus
	Conclusion   string
	RunnerName   string
	LeaseID      string // the lease whose runner took the job, once known
	CreatedAt    time.Time
	UpdatedAt    time.Time

	// Visibility is the repository's, as the delivery said ("" unknown).
	Visibility string
	// Unservable, when its Kind is set, keeps the job from any lease
	// (demand does not count it) until something changes.
	Unservable Unservable
	// UnusedLeases counts the leases made for this job whose runner came
	// online and went unused while the job stayed queued (no lease loop).
	UnusedLeases int

	// RerunAt is when crabbox-runner decided to re-run this attempt
	// because its host was lost (rerun.go), RerunReason why; zero: never.
	RerunAt     time.Time
	RerunReason string
}

// Unservable is why a job gets no lease, since when, and until when.
type Unservable struct {
	Kind   UnservableKind
	Reason string
	At     time.Time
	// Until, when set, ends the mark by itself (a back-off); zero: it
	// stays until something changes.
	Until time.Time
	// Policy is PolicyHash of the classes when the mark was made.
	Policy string
}

// UnservableFilter selects queued jobs marked unservable.
type UnservableFilter struct {
	Kinds []UnservableKind // empty: every kind
	Since time.Time        // marked at or after it (zero: any time)
	Limit int              // 0: 1000
}

// EventRecord is what RecordEvent records of a delivery.
type EventRecord struct {
	GUID, Event, Action string // GUID may be empty: no transport dedupe then
	At                  time.Time
	// Job is set when the event concerns a job of ours: its (job,
	// attempt, status) is recorded and the job read.
	Job               bool
	JobID, RunAttempt int64
	Status            string
}

// EventRecorded is what RecordEvent found.
type EventRecorded struct {
	NewDelivery bool // false: the GUID was seen before
	NewJobEvent bool // false: this status of this job was seen before (or not recorded)
	Job         *Job // the stored job, nil when there is none (or not read)
}

// GroupTx is a Tx that commits together with other callers' transactions
// (SQLite's group commit), and so can leave work for the end of its group:
// fn runs once, in the same transaction, after every function of the
// group, for all callers that asked with the same key. Its failure is
// undone alone. after then learns fn's error, or the commit's; it is called
// before the group's callers return, and must be quick and not use the
// store. Work left by a function that fails is dropped.
type GroupTx interface {
	Tx
	AtGroupEnd(key string, fn func(Tx) error, after func(error))
}

// Notifier is a Store whose work queue does not hear of new work by itself
// at once (SQLite has no LISTEN/NOTIFY). Told, after a commit, of work the
// commit enqueued, it looks for work in that queue at once. Notify must
// not block: it is called where the caller cannot wait for the store
// (GroupTx's after).
type Notifier interface {
	Notify(ctx context.Context, args river.JobArgs)
}
