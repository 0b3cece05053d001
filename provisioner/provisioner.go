package provisioner

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Config wires the provisioner to the outside world.
type Config struct {
	// Deployment is the ownership marker written on every instance.
	Deployment string
	Classes    []Class
	Providers  map[string]Provider
	GitHub     GitHub
	// RunnerGroups, when set, is asked before a host is rented for a job
	// whether the scope's runner group may take that job at all.
	RunnerGroups RunnerGroups
	Bootstrapper Bootstrapper
	Store        Store
	Logger       *slog.Logger
	// Now is the clock; time.Now when nil.
	Now func() time.Time
	// KeySecret, when set, derives each lease's SSH keys from it and the
	// lease id, so a restarted server can still reach the hosts it created
	// (serve derives it from its state key, a secret of its own; never from
	// anything an outsider can learn, as the lease id is public). Empty:
	// random keys, and a lease whose process died is failed and replaced.
	KeySecret []byte
	// PreviousKeySecret, when set, is the KeySecret before a rotation: the
	// client key it derives for a lease is offered too when logging in to
	// a host (never installed on a new one), so hosts made before the
	// rotation stay reachable.
	PreviousKeySecret []byte

	// Endpoints says where SSH may connect: public addresses only, unless
	// a provider is allowed private ones (endpoint.go).
	Endpoints EndpointPolicy

	// PollInterval is how often a booting host or a starting runner is
	// looked at (default 2s).
	PollInterval time.Duration
	// InlineWait is how long one worker run waits for a host or runner before
	// it hands its slot back and comes back later (default 20s).
	InlineWait time.Duration
	// OfferTakenFor is how long an offer this process rented, or saw
	// refused as taken, is skipped (offerbook.go; default 5m). The
	// time-to-runner benchmark scales it with the provider's clock.
	OfferTakenFor time.Duration
	// ProvisionWorkers, BootWorkers and ReleaseWorkers bound concurrent
	// work: create calls, the steps after them (waiting for SSH,
	// bootstrapping the runner), and releases (defaults 100, 100, 50).
	ProvisionWorkers int
	BootWorkers      int
	ReleaseWorkers   int
	// QueuePollInterval is how often idle workers look for work (default
	// 100ms). On SQLite, which has no LISTEN/NOTIFY, new provision and
	// release work is announced (Notifier) and the rest waits for a look;
	// each look costs a little CPU even when idle.
	QueuePollInterval time.Duration
	// Reconcile configures the periodic passes run by the elected leader.
	Reconcile ReconcileConfig
	// Observer is told phase durations, spend and limit waits (metrics).
	Observer Observer
	// Limits cap what runs at once; zero values mean no cap.
	Limits Limits
	// JobTimeout bounds one run of a provision worker (default 15m: a slow
	// host can take minutes to install the runner). RescueAfter is how long
	// work of a dead process (another replica's, on PostgreSQL) stays
	// claimed before another takes it over (default JobTimeout + 5m).
	JobTimeout  time.Duration
	RescueAfter time.Duration
	// BalanceBatch bounds the leases one balance transaction creates
	// (default 100): on SQLite every other write waits for it.
	BalanceBatch int
	// UnusedRetryBackoff is how long a job whose first runner came online
	// and went unused waits for its second and last lease (default
	// DefaultUnusedRetryBackoff; see unservable.go).
	UnusedRetryBackoff time.Duration
	// ExtraHostSweepInterval and ExtraHostWindow: after a create whose
	// outcome is unknown (ErrCreateUncertain), the lease's hosts are looked
	// at this often, for this long, and any extra one destroyed (defaults
	// 20s and 5m; extrahosts.go).
	ExtraHostSweepInterval time.Duration
	ExtraHostWindow        time.Duration
	// BadMachineTTL is how long a machine whose host failed a lease is
	// avoided (default DefaultBadMachineTTL; negative: not avoided), and
	// BadPoolTTL how long a capacity pool is tried last (default
	// DefaultBadPoolTTL; negative: never); badmachines.go.
	BadMachineTTL time.Duration
	BadPoolTTL    time.Duration
}

// Limits cap leases and spend. Work beyond a limit waits, in order, and
// goes on when there is room: a job's lease is not created while the lease
// caps are reached, and a lease does not rent a host while that would take
// the hourly spend over its cap.
type Limits struct {
	MaxLeases       int     // leases holding or about to hold a host, all classes
	MaxSpendPerHour float64 // sum of the hourly prices of hosts rented and being rented
}

// Provisioner leases hosts for jobs and releases them. It is the only place
// where lease states change.
type Provisioner struct {
	cfg     Config
	log     *slog.Logger
	now     func() time.Time
	classes map[string]*Class

	// creds holds each lease's SSH keys in memory only: a private key never
	// touches the database. A lease whose keys were lost in a restart is
	// failed and replaced.
	creds sync.Map // lease ID → *Credentials
	// budgetLogged: leases whose wait for the GitHub budget was logged (budget.go).
	budgetLogged sync.Map
	bad          badMachines
	// book hands exclusive offers to one lease at a time (offerbook.go).
	book offerBook
	// followedUp: lease IDs whose host this process created or adopted, so
	// the provider holds what its create set in motion (adoptBooting).
	followedUp sync.Map
	// sweepLists: provider listings shared by the extra-host sweeps.
	sweepLists sweepLists
	// bal balances outside the deliveries' transactions once started;
	// before that (tests, one-shot use) deliveries balance in their own.
	bal       *balancer
	balancing atomic.Bool
	// hedges: what this process remembers of hedges between polls (hedge.go).
	hedges hedgeState
	// bootRuns counts the boot worker runs under way in this process.
	bootRuns atomic.Int64
	// policy is PolicyHash(cfg.Classes), kept with every unservable mark.
	policy string
	// recent and deferred serve the cheap reconcile (scan.go).
	recent   recentRepos
	deferred deferredLog
	// unreachable: since when each lease's host has been unreachable
	// (hostwatch.go).
	unreachable unreachableSince
	warm        warmState // warm.go
}

// New checks the configuration and returns a provisioner. Call Start to run
// its workers.
func New(cfg Config) (*Provisioner, error) {
	if cfg.Deployment == "" {
		return nil, errors.New("provisioner: deployment is required")
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.PollInterval <= 0 {
		cfg.PollInterval = 2 * time.Second
	}
	if cfg.OfferTakenFor <= 0 {
		cfg.OfferTakenFor = offerTakenFor
	}
	if cfg.InlineWait <= 0 {
		cfg.InlineWait = 20 * time.Second
	}
	if cfg.ProvisionWorkers <= 0 {
		cfg.ProvisionWorkers = 100
	}
	if cfg.BootWorkers <= 0 {
		cfg.BootWorkers = 100
	}
	if cfg.ReleaseWorkers <= 0 {
		cfg.ReleaseWorkers = 50
	}
	if cfg.JobTimeout <= 0 {
		cfg.JobTimeout = 15 * time.Minute
	}
	if cfg.RescueAfter <= cfg.JobTimeout {
		cfg.RescueAfter = cfg.JobTimeout + 5*time.Minute
	}
	if cfg.Observer == nil {
		cfg.Observer = nopObserver{}
	}
	if cfg.BalanceBatch <= 0 {
		cfg.BalanceBatch = 100
	}
	if cfg.QueuePollInterval <= 0 {
		cfg.QueuePollInterval = 100 * time.Millisecond
	}
	if cfg.UnusedRetryBackoff <= 0 {
		cfg.UnusedRetryBackoff = DefaultUnusedRetryBackoff
	}
	if cfg.ExtraHostSweepInterval <= 0 {
		cfg.ExtraHostSweepInterval = defaultExtraHostSweepInterval
	}
	if cfg.ExtraHostWindow <= 0 {
		cfg.ExtraHostWindow = defaultExtraHostWindow
	}
	p := &Provisioner{cfg: cfg, log: cfg.Logger, now: cfg.Now, classes: map[string]*Class{}, policy: PolicyHash(cfg.Classes)}
	p.bal = newBalancer(p)
	for i := range cfg.Classes {
		c := &cfg.Classes[i]
		if _, dup := p.classes[c.Name]; dup {
			return nil, fmt.Errorf("provisioner: class %q defined twice", c.Name)
		}
		p.classes[c.Name] = c
	}
	return p, nil
}

// Start runs the durable workers. A provisioner without a store serves only
// one-shot leases (LeaseNow, ReleaseNow).
func (p *Provisioner) Start(ctx context.Context) error {
	if p.cfg.Store == nil || p.cfg.Bootstrapper == nil || p.cfg.GitHub == nil {
		return errors.New("provisioner: a store, GitHub and a bootstrapper are required to run workers")
	}
	for _, c := range p.cfg.Classes {
		for _, name := range c.Providers {
			if _, ok := p.cfg.Providers[name]; !ok {
				return fmt.Errorf("provisioner: class %q uses provider %q, which is not configured", c.Name, name)
			}
		}
	}
	if err := p.cfg.Store.StartWork(ctx, p.workConfig()); err != nil {
		return err
	}
	// Marks made under another class policy get their chance now (the
	// balances this calls for enqueue work: after StartWork).
	if err := p.reviewPolicy(ctx); err != nil {
		p.log.Warn("reviewing unservable jobs under the new class policy", "error", err)
	}
	p.StartBalancer()
	return nil
}

// StartBalancer takes balancing out of the deliveries' transactions (see
// balancer.go). Start calls it; a benchmark of ingest alone calls it itself.
func (p *Provisioner) StartBalancer() {
	if p.balancing.CompareAndSwap(false, true) {
		p.bal.start()
	}
}

// WaitBalanced returns once the balance of every delivery handled before
// the call is committed (at once when the balancer is not started).
func (p *Provisioner) WaitBalanced(ctx context.Context) error {
	if !p.balancing.Load() {
		return nil
	}
	return p.bal.wait(ctx)
}

// Stop stops taking new work and waits for running work, or for ctx.
func (p *Provisioner) Stop(ctx context.Context) error {
	if p.balancing.CompareAndSwap(true, false) {
		p.bal.close()
	}
	err := p.cfg.Store.StopWork(ctx)
	// A bad machine marked by the last work is on its way to the store.
	p.waitBadMachineWrites(ctx)
	return err
}

// Classes returns the configured classes.
func (p *Provisioner) Classes() []Class { return p.cfg.Classes }

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

func (p *Provisioner) runnerName(leaseID string) string {
	return "crabbox-" + p.cfg.Deployment + "-" + leaseID
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

// newLeaseID returns a short random id that reads well in runner names and
// instance labels.
func newLeaseID() string {
	var b [10]byte
	if _, err := rand.Read(b[:]); err != nil {
		panic(err)
	}
	var sb strings.Builder
	sb.WriteByte('l')
	for _, c := range b {
		sb.WriteByte(leaseIDAlphabet[int(c)%len(leaseIDAlphabet)])
	}
	return sb.String()
}
