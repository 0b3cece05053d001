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

func (p *Provisioner) runnerName(leaseID string) string {
	return "crabbox-" + p.cfg.Deployment + "-" + leaseID
}

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
