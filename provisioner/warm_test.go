package provisioner_test

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/crabbox/crabbox-runner/provisioner"
)

// warmObs records what the provisioner tells a WarmObserver.
type warmObs struct {
	mu                         sync.Mutex
	created, jobs, expired     map[string]int
	idleSpent                  float64
	phases, spent, limitWaited int
}

func newWarmObs() *warmObs {
	return &warmObs{created: map[string]int{}, jobs: map[string]int{}, expired: map[string]int{}}
}

func (o *warmObs) Phase(string, string, provisioner.Phase, time.Duration) {}
func (o *warmObs) Spent(string, string, float64)                          {}
func (o *warmObs) LimitWait(string, time.Duration)                        {}
func (o *warmObs) WarmCreated(class string)                               { o.mu.Lock(); o.created[class]++; o.mu.Unlock() }
func (o *warmObs) WarmJob(class string)                                   { o.mu.Lock(); o.jobs[class]++; o.mu.Unlock() }
func (o *warmObs) WarmExpired(class string)                               { o.mu.Lock(); o.expired[class]++; o.mu.Unlock() }
func (o *warmObs) WarmIdleSpent(_, _ string, d float64) {
	o.mu.Lock()
	o.idleSpent += d
	o.mu.Unlock()
}

func (o *warmObs) get() (created, jobs, expired int, spent float64) {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.created["a100"], o.jobs["a100"], o.expired["a100"], o.idleSpent
}

// warmHarness is the harness with min_idle on the class and a WarmObserver.
func warmHarness(t *testing.T, minIdle int, tweak func(*provisioner.Config)) (*harness, *warmObs) {
	obs := newWarmObs()
	h := newHarness(t, func(c *provisioner.Config) {
		c.Classes[0].MinIdle = minIdle
		c.Observer = obs
		if tweak != nil {
			tweak(c)
		}
	})
	return h, obs
}

// held is the leases not yet released; warm counts those made for min_idle.
func (h *harness) held() (all, warm []*provisioner.Lease) {
	for _, l := range h.leases() {
		if l.State == provisioner.StateReleased {
			continue
		}
		all = append(all, l)
		if l.Warm {
			warm = append(warm, l)
		}
	}
	return all, warm
}

func (h *harness) reconcile() {
	h.t.Helper()
	if _, err := h.p.Reconcile(context.Background()); err != nil {
		h.t.Fatal(err)
	}
	if err := h.p.WaitBalanced(context.Background()); err != nil {
		h.t.Fatal(err)
	}
}

func idleWarm(h *harness) []*provisioner.Lease {
	var out []*provisioner.Lease
	for _, l := range h.leases(provisioner.StateIdle) {
		if l.Warm && l.ReleaseReason == "" {
			out = append(out, l)
		}
	}
	return out
}

// min_idle 1: nothing before the class's first job; after it, one warm
// lease bootstrapped with its runner online; a job that arrives takes it
// and its replacement is made at once; the surplus release never goes
// below min_idle.
func TestWarmHostAfterFirstJobTakenAndReplaced(t *testing.T) {
	h, obs := warmHarness(t, 1, nil)
	h.reconcile()
	if all, _ := h.held(); len(all) != 0 {
		t.Fatalf("warm lease made before the class saw a job: %s", h.describe())
	}

	h.event("queued", 1, "q-1")
	all, warm := h.held()
	if len(all) != 2 || len(warm) != 1 {
		t.Fatalf("after the first job: want its lease and one warm one; %s", h.describe())
	}
	h.waitFor("both idle", func() bool { return len(h.leases(provisioner.StateIdle)) == 2 })
	var jobLease *provisioner.Lease
	for _, l := range h.leases(provisioner.StateIdle) {
		if !l.Warm {
			jobLease = l
		}
	}
	h.runJob(1, jobLease.RunnerName)
	h.waitFor("the job's lease released", func() bool {
		l, _ := h.store.Lease(context.Background(), jobLease.ID)
		return l.State == provisioner.StateReleased
	})
	h.reconcile()
	w := idleWarm(h)
	if all, _ := h.held(); len(all) != 1 || len(w) != 1 {
		t.Fatalf("after the first job: want one idle warm lease; %s", h.describe())
	}
	if r, err := h.gh.Runner(context.Background(), w[0].Scope, w[0].RunnerID); err != nil || !r.Online() {
		t.Fatalf("warm lease's runner is not online")
	}

	// A second job finds the warm runner: its replacement is made at
	// once, before GitHub hands the job over.
	_, createdBefore, _ := h.prov.counts()
	h.event("queued", 2, "q-2")
	all, warm = h.held()
	if len(all) != 2 || len(warm) != 2 {
		t.Fatalf("job 2 queued with a warm runner idle: want the warm lease and its replacement; %s", h.describe())
	}
	h.runJob(2, w[0].RunnerName)
	h.waitFor("the replacement idle and the taken one released", func() bool {
		all, _ := h.held()
		return len(idleWarm(h)) == 1 && len(all) == 1 && idleWarm(h)[0].ID != w[0].ID
	})
	if _, created, _ := h.prov.counts(); created != createdBefore+1 {
		t.Fatalf("%d hosts created for job 2, want 1 (the replacement)", created-createdBefore)
	}
	taken, _ := h.store.Lease(context.Background(), w[0].ID)
	if !taken.Warm || taken.BoundJobID != 2 {
		t.Fatalf("the warm lease that took job 2: %+v", taken)
	}
	// Surplus: nothing queued, one warm host idle; balances keep it.
	h.reconcile()
	h.reconcile()
	if all, _ := h.held(); len(all) != 1 || len(idleWarm(h)) != 1 {
		t.Fatalf("surplus release went below min_idle; %s", h.describe())
	}
	created, jobs, _, _ := obs.get()
	if created != 2 || jobs != 1 {
		t.Fatalf("observer: warm created %d (want 2), jobs %d (want 1)", created, jobs)
	}
}

// min_idle 0 (the default): no lease beyond the queued jobs.
func TestWarmMinIdleZeroMakesNone(t *testing.T) {
	h, obs := warmHarness(t, 0, nil)
	h.event("queued", 1, "q-1")
	h.waitFor("idle", func() bool { return len(h.leases(provisioner.StateIdle)) == 1 })
	h.runJob(1, h.leases(provisioner.StateIdle)[0].RunnerName)
	h.waitFor("released", func() bool { return len(h.leases(provisioner.StateReleased)) == 1 })
	h.reconcile()
	if all, warm := h.held(); len(all) != 0 || len(warm) != 0 {
		t.Fatalf("min_idle 0 kept a lease; %s", h.describe())
	}
	if created, _, _, _ := obs.get(); created != 0 {
		t.Fatalf("%d warm leases made with min_idle 0", created)
	}
}

// A warm host idle past the class's idle_timeout is released and replaced.
func TestWarmHostExpiresAndIsReplaced(t *testing.T) {
	h, obs := warmHarness(t, 1, func(c *provisioner.Config) { c.Classes[0].IdleTimeout = 700 * time.Millisecond })
	h.event("queued", 1, "q-1")
	h.waitFor("both idle", func() bool { return len(h.leases(provisioner.StateIdle)) == 2 })
	for _, l := range h.leases(provisioner.StateIdle) {
		if !l.Warm {
			h.runJob(1, l.RunnerName)
		}
	}
	h.waitFor("two warm leases released for their idle timeout", func() bool {
		n := 0
		for _, l := range h.leases(provisioner.StateReleased) {
			if l.Warm && l.ReleaseReason == "idle timeout" {
				n++
			}
		}
		return n >= 2
	})
	h.waitFor("a replacement", func() bool {
		_, warm := h.held()
		return len(warm) == 1
	})
	if all, warm := h.held(); len(all) > 1 || len(warm) > 1 {
		t.Fatalf("more than min_idle warm leases; %s", h.describe())
	}
	created, _, expired, spent := obs.get()
	if expired < 2 || created < 3 || spent <= 0 {
		t.Fatalf("observer: created %d expired %d idle spent %v", created, expired, spent)
	}
}

// Warm leases count against max_leases, and jobs get the room first: with
// a cap of two, the first job's lease and a warm one fill it; a third job
// waits; room that a finished job leaves goes to the waiting job's lease
// before a warm one.
func TestWarmRespectsMaxLeasesJobsFirst(t *testing.T) {
	h, _ := warmHarness(t, 1, func(c *provisioner.Config) { c.Limits.MaxLeases = 2 })
	check := func() {
		t.Helper()
		if all, _ := h.held(); len(all) > 2 {
			t.Fatalf("%d leases held under max_leases 2; %s", len(all), h.describe())
		}
	}
	h.event("queued", 1, "q-1")
	if all, warm := h.held(); len(all) != 2 || len(warm) != 1 {
		t.Fatalf("first job: want its lease and a warm one; %s", h.describe())
	}
	h.event("queued", 2, "q-2")
	h.event("queued", 3, "q-3")
	check()
	h.waitFor("two idle", func() bool { return len(h.leases(provisioner.StateIdle)) == 2 })
	first := map[string]bool{}
	var jobLease, warmLease *provisioner.Lease
	for _, l := range h.leases(provisioner.StateIdle) {
		first[l.ID] = true
		if l.Warm {
			warmLease = l
		} else {
			jobLease = l
		}
	}
	h.runJob(1, jobLease.RunnerName)
	check()
	h.runJob(2, warmLease.RunnerName)
	check()
	// Job 3 gets the first room a finished job left.
	var next []*provisioner.Lease
	h.waitFor("a lease for job 3", func() bool {
		next = nil
		for _, l := range h.leases() {
			if !first[l.ID] {
				next = append(next, l)
			}
		}
		return len(next) > 0
	})
	if next[0].Warm {
		t.Fatalf("the room a job left went to a warm lease while job 3 waited; %s", h.describe())
	}
	check()
	h.waitFor("job 3's lease idle", func() bool {
		l, _ := h.store.Lease(context.Background(), next[0].ID)
		return l.State == provisioner.StateIdle
	})
	h.runJob(3, next[0].RunnerName)
	h.waitFor("one warm lease idle, nothing else", func() bool {
		all, _ := h.held()
		return len(all) == 1 && len(idleWarm(h)) == 1
	})
	check()
}

// A warm lease does not wait for room under max_spend_per_hour: with room
// for one host, the job's lease rents it and the warm one is released
// without renting anything.
func TestWarmRespectsSpendCap(t *testing.T) {
	// Hosts cost $1.10/h; a cap of $2 fits one.
	h, _ := warmHarness(t, 1, func(c *provisioner.Config) { c.Limits.MaxSpendPerHour = 2 })
	h.event("queued", 1, "q-1")
	h.waitFor("the job's lease idle", func() bool { return len(h.leases(provisioner.StateIdle)) == 1 })
	h.waitFor("the warm lease released", func() bool {
		_, warm := h.held()
		return len(warm) == 0
	})
	idle := h.leases(provisioner.StateIdle)[0]
	if idle.Warm {
		t.Fatalf("the warm lease took the budget before the job's; %s", h.describe())
	}
	for _, l := range h.leases(provisioner.StateReleased) {
		if l.Warm && !strings.Contains(l.ReleaseReason, "max_spend_per_hour") {
			t.Fatalf("warm lease released for %q", l.ReleaseReason)
		}
	}
	h.reconcile() // within the back-off: no new warm lease
	if _, created, _ := h.prov.counts(); created != 1 {
		t.Fatalf("%d hosts rented under a cap of one", created)
	}
	if _, warm := h.held(); len(warm) != 0 {
		t.Fatalf("warm lease made again at once; %s", h.describe())
	}
}

// A warm runner that takes the job another lease was made for leaves that
// lease as the class's warm host: it is marked Warm, and nothing more is
// made.
func TestWarmRunnerTakesAnotherLeasesJob(t *testing.T) {
	h, obs := warmHarness(t, 1, nil)
	h.event("queued", 1, "q-1")
	h.waitFor("both idle", func() bool { return len(h.leases(provisioner.StateIdle)) == 2 })
	var warm, mine *provisioner.Lease
	for _, l := range h.leases(provisioner.StateIdle) {
		if l.Warm {
			warm = l
		} else {
			mine = l
		}
	}
	h.runJob(1, warm.RunnerName)
	h.waitFor("the warm lease released after its job", func() bool {
		l, _ := h.store.Lease(context.Background(), warm.ID)
		return l.State == provisioner.StateReleased
	})
	h.reconcile()
	l, _ := h.store.Lease(context.Background(), mine.ID)
	if !l.Warm || l.State != provisioner.StateIdle {
		t.Fatalf("the lease made for job 1 is not the warm host now: %+v", l)
	}
	if all, _ := h.held(); len(all) != 1 {
		t.Fatalf("want one lease held; %s", h.describe())
	}
	if created, jobs, _, _ := obs.get(); created != 1 || jobs != 1 {
		t.Fatalf("observer: created %d jobs %d", created, jobs)
	}
}
