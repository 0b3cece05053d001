package provisioner

import (
	"context"
	"errors"
	"strings"
	"sync"
	"time"
)

// Warm hosts (issue 18). A class with min_idle: N keeps N leases that can
// take a job beyond its queued jobs, so a job that arrives finds a host
// booted with its runner online and idle: GitHub hands a queued job to an
// idle online runner whose labels match at once, and the job starts in
// seconds rather than after a boot.
//
// A warm lease is an ordinary lease made by the balance with Warm set and
// no job. The balance's target for the class in its warm scope is queued +
// MinIdle (balance.go), so a job that takes a warm runner leaves one
// missing and its replacement is made in the same balance. A warm lease
// idle past the class's idle_timeout is released by the idle deadline
// (work.go), whose balance makes its replacement.
//
// Where: a runner registers in one scope (an org, or a repository of a
// personal account). The warm hosts of a class are kept in the scope of
// its newest job; before the class has seen a job they wait. N is per
// class, not per scope: whatever the number of scopes, a class costs at
// most N idle hosts.
//
// Jobs come first. Room under max_leases goes to the class's queued jobs
// before its warm hosts, and no warm lease is made while jobs of any class
// wait for room, or while the spend cap has no room for the class's
// dearest host; a warm lease that finds no room under the cap when it is
// about to rent is released rather than left waiting (limits.go).

// WarmObserver is told what warm hosts do (the metrics package implements
// it). The gauge of warm hosts is read from the store at scrape time.
type WarmObserver interface {
	// WarmCreated: a warm lease was made (to reach min_idle, or to replace
	// one that took a job or expired).
	WarmCreated(class string)
	// WarmJob: a job took the idle runner of a warm lease.
	WarmJob(class string)
	// WarmExpired: a warm lease sat idle past its idle_timeout and is
	// released.
	WarmExpired(class string)
	// WarmIdleSpent: what a warm lease that never ran a job cost, from its
	// create call to its release (its boot and its idle time).
	WarmIdleSpent(class, provider string, dollars float64)
}

func (p *Provisioner) warmObserver() WarmObserver {
	wo, _ := p.cfg.Observer.(WarmObserver)
	return wo
}

// warmState is what a process remembers for its warm hosts.
type warmState struct {
	// waitLogged: classes whose wait for a first job was logged.
	waitLogged sync.Map
	// roomWaits: class and scope pairs whose jobs waited for room under
	// max_leases at their last balance.
	roomWaits sync.Map
	// noSpendUntil: classes whose warm lease found no room under
	// max_spend_per_hour when it was about to rent, until when no warm
	// lease of theirs is made.
	noSpendUntil sync.Map
}

// warmSpendBackoff is how long a class makes no warm lease after one found
// no room under the spend cap: without it, a class whose price is unknown
// beforehand (no max_price_per_hour) would make and release warm leases in
// a loop.
const warmSpendBackoff = time.Minute

type noWarmKey struct{}

// withoutWarm marks a balance that makes leases for queued jobs only (it
// still keeps the warm ones): a pass over every class makes the warm
// leases after every class's jobs had their turn (balanceAll).
func withoutWarm(ctx context.Context) context.Context {
	return context.WithValue(ctx, noWarmKey{}, true)
}

// warmTarget is how many warm leases the class keeps in scope: its
// MinIdle when scope is its warm scope, else 0.
func (p *Provisioner) warmTarget(ctx context.Context, tx Tx, class string, scope Scope) (int, error) {
	c := p.classes[class]
	if c == nil || c.MinIdle <= 0 {
		return 0, nil
	}
	ws, ok, err := p.warmScope(ctx, tx, c)
	if err != nil || !ok || ws.Key() != scope.Key() {
		return 0, err
	}
	return c.MinIdle, nil
}

// warmScope is where the class's warm runners register: the scope of its
// newest job. ok is false before the class has seen any job.
func (p *Provisioner) warmScope(ctx context.Context, tx interface {
	NewestJob(context.Context, string) (*Job, error)
}, c *Class) (Scope, bool, error) {
	j, err := tx.NewestJob(ctx, c.Name)
	if errors.Is(err, ErrNotFound) {
		if _, said := p.warm.waitLogged.LoadOrStore(c.Name, true); !said {
			p.log.Info("min_idle waits for the class's first job to learn where to register", "class", c.Name, "min_idle", c.MinIdle)
		}
		return Scope{}, false, nil
	}
	if err != nil {
		return Scope{}, false, err
	}
	return j.Scope, true, nil
}

// warmRoom bounds the warm leases a balance may make now (want of them)
// after the class's own jobs took jobRoom of room: jobs waiting for room
// in another class, or a spend cap without room for the class's dearest
// host, leave none.
func (p *Provisioner) warmRoom(ctx context.Context, tx Tx, class string, want, room int) (int, error) {
	if want <= 0 || room <= 0 {
		return 0, nil
	}
	want = min(want, room)
	if p.jobsWaitForRoom() {
		p.log.Debug("warm hosts wait: jobs wait for room under max_leases", "class", class)
		return 0, nil
	}
	limit := p.cfg.Limits.MaxSpendPerHour
	if limit <= 0 {
		return want, nil
	}
	if until, ok := p.warm.noSpendUntil.Load(class); ok && p.now().Before(until.(time.Time)) {
		return 0, nil
	}
	if err := tx.Serialize(ctx, "max_spend_per_hour"); err != nil {
		return 0, err
	}
	held, err := tx.Leases(ctx, LeaseFilter{States: heldStates})
	if err != nil {
		return 0, err
	}
	spend := 0.0
	for _, l := range held {
		if strings.HasPrefix(l.Error, waitingForSpend) {
			// A lease, likely a job's, waits for the cap: it goes first.
			return 0, nil
		}
		if l.InstanceID != "" || (l.State == StateProvisioning && l.Attempts > 0) {
			spend += l.PricePerHour
		}
	}
	// The class's max_price_per_hour bounds what one host of it costs;
	// without one, any room at all lets the lease try (reserve has the
	// last word, with the offer's price).
	price := 0.0
	if c := p.classes[class]; c != nil {
		price = c.MaxPricePerHour
	}
	n := 0
	for n < want && (spend+price <= limit && (price > 0 || spend < limit)) {
		n++
		spend += price
		if price == 0 {
			break // one at a time when the price is unknown
		}
	}
	return n, nil
}

// noteRoomWait records whether jobs of the class in the scope wait for
// room under max_leases: while any do, no class makes a warm lease.
func (p *Provisioner) noteRoomWait(class string, scope Scope, waiting bool) {
	k := class + "\x00" + scope.Key()
	if waiting {
		p.warm.roomWaits.Store(k, true)
	} else {
		p.warm.roomWaits.Delete(k)
	}
}

// jobsWaitForRoom reports whether jobs of any class wait for room under
// max_leases (as this process's balances last saw it).
func (p *Provisioner) jobsWaitForRoom() bool {
	waiting := false
	p.warm.roomWaits.Range(func(any, any) bool { waiting = true; return false })
	return waiting
}

// balanceWarm balances every class with min_idle in its warm scope: at
// the reconcile pass (at start and every interval), so warm hosts are
// made after a restart and topped up after anything that left fewer than
// min_idle without a balance of its own.
func (p *Provisioner) balanceWarm(ctx context.Context) error {
	var errs []error
	for _, c := range p.classes {
		if c.MinIdle <= 0 {
			continue
		}
		var created []string
		err := p.cfg.Store.InTx(ctx, func(tx Tx) error {
			ws, ok, err := p.warmScope(ctx, tx, c)
			if err != nil || !ok {
				return err
			}
			created, err = p.balanceN(ctx, tx, c.Name, ws, 0)
			return err
		})
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if len(created) > 0 {
			p.announce(ctx, ProvisionArgs{LeaseID: created[0]})
		}
	}
	return errors.Join(errs...)
}

// rebalance balances the class in the scope after a commit: through the
// balancer once it runs, else at once.
func (p *Provisioner) rebalance(ctx context.Context, class string, scope Scope) {
	if p.balancing.Load() {
		p.bal.mark(class, scope)
		return
	}
	if err := p.cfg.Store.InTx(ctx, func(tx Tx) error { return p.balance(ctx, tx, class, scope) }); err != nil {
		p.log.Warn("balancing after a warm lease's release", "class", class, "scope", scope.Key(), "error", err)
	}
}

// warmTookJob follows a job that took a runner (l as it was before it
// went busy). A warm runner that took a job leaves the lease made for that
// job without it: that lease, once its runner is online, is the class's
// warm host now, and says so (Warm), for the metrics, the status page and
// `leases`. The observer counts the jobs that took an idle warm runner.
func (p *Provisioner) warmTookJob(ctx context.Context, tx Tx, l *Lease, job *Job) error {
	if !l.Warm || l.JobID == job.ID {
		return nil
	}
	if wo := p.warmObserver(); wo != nil && l.State == StateIdle {
		wo.WarmJob(l.Class)
	}
	others, err := tx.Leases(ctx, LeaseFilter{Class: l.Class, ScopeKey: l.Scope.Key(),
		States: []State{StatePending, StateProvisioning, StateBooting, StateBootstrapping, StateIdle}})
	if err != nil {
		return err
	}
	for _, o := range others {
		if o.JobID == job.ID && o.RunAttempt == job.RunAttempt && !o.Warm && o.ReleaseReason == "" {
			_, err := tx.UpdateLease(ctx, o.ID, func(o *Lease) { o.Warm = true })
			return err
		}
	}
	return nil
}

// noteWarmExpired tells the observer that a warm lease that never took a
// job is released for its idle timeout.
func (p *Provisioner) noteWarmExpired(l *Lease) {
	if wo := p.warmObserver(); wo != nil && l.Warm && l.BoundJobID == 0 {
		wo.WarmExpired(l.Class)
	}
}

// noteWarmIdleSpent tells the observer what a released warm lease that
// never ran a job cost: the money warm hosts cost beyond jobs.
func (p *Provisioner) noteWarmIdleSpent(l *Lease, events []Event) {
	if wo := p.warmObserver(); wo != nil && l.Warm && l.BoundJobID == 0 {
		wo.WarmIdleSpent(l.Class, l.Provider, Cost(l, events, p.now()))
	}
}
