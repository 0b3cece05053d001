package provisioner_test

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/crabbox/crabbox-runner/provisioner"
)

// hedgeObs records what the provisioner tells a HedgeObserver.
type hedgeObs struct {
	nopObs
	mu      sync.Mutex
	started int
	skipped map[string]int
	won     map[string]int
	extra   float64
}

func newHedgeObs() *hedgeObs {
	return &hedgeObs{skipped: map[string]int{}, won: map[string]int{}}
}

func (o *hedgeObs) HedgeStarted(class string) { o.mu.Lock(); o.started++; o.mu.Unlock() }
func (o *hedgeObs) HedgeSkipped(class, reason string) {
	o.mu.Lock()
	o.skipped[reason]++
	o.mu.Unlock()
}
func (o *hedgeObs) HedgeWon(class, winner string) { o.mu.Lock(); o.won[winner]++; o.mu.Unlock() }
func (o *hedgeObs) HedgeExtraCost(class string, d float64) {
	o.mu.Lock()
	o.extra += d
	o.mu.Unlock()
}

func (o *hedgeObs) get() (started int, skipped, won map[string]int, extra float64) {
	o.mu.Lock()
	defer o.mu.Unlock()
	s, w := map[string]int{}, map[string]int{}
	for k, v := range o.skipped {
		s[k] = v
	}
	for k, v := range o.won {
		w[k] = v
	}
	return o.started, s, w, o.extra
}

const (
	testHedgeAfter = 300 * time.Millisecond
	// testHedgeBootTimeout is longer than any wait of the tests: a boot
	// timeout never settles a race in their place.
	testHedgeBootTimeout = time.Minute
)

// newHedgeHarness is the provisioner harness with a class that hedges
// after testHedgeAfter, create n's host held booting until holds[n] is
// closed (never, for a missing one), and a hedge observer.
func newHedgeHarness(t *testing.T, holds map[int]chan struct{}, tweak func(*provisioner.Config)) (*harness, *hedgeObs) {
	t.Helper()
	obs := newHedgeObs()
	h := newHarness(t, func(c *provisioner.Config) {
		c.Classes[0].HedgeAfter = testHedgeAfter
		c.Classes[0].BootTimeout = testHedgeBootTimeout
		c.Observer = obs
		if tweak != nil {
			tweak(c)
		}
	})
	never := make(chan struct{})
	h.prov.behave = func(n int) memBehavior {
		if c, ok := holds[n]; ok {
			return memBehavior{hold: c}
		}
		return memBehavior{hold: never}
	}
	return h, obs
}

// hedgeOf returns the lease that hedges (or hedged) first, nil if none.
func hedgeOf(h *harness, first string) *provisioner.Lease {
	for _, l := range h.leases() {
		if l.ID != first && (l.HedgeOf == first || hedgedBy(h, l.ID, first)) {
			return l
		}
	}
	return nil
}

// hedgedBy: lease id's events say it was started as first's hedge (its
// HedgeOf is cleared when it wins).
func hedgedBy(h *harness, id, first string) bool {
	evs, err := h.store.LeaseEvents(context.Background(), first)
	if err != nil {
		h.t.Fatal(err)
	}
	for _, e := range evs {
		if strings.HasPrefix(e.Reason, "hedge "+id+" started") {
			return true
		}
	}
	return false
}

// bootingHedge waits until first's hedge is booting and returns it.
func bootingHedge(h *harness, first string) *provisioner.Lease {
	h.t.Helper()
	var hedge *provisioner.Lease
	h.waitFor("a hedge booting", func() bool {
		hedge = hedgeOf(h, first)
		return hedge != nil && hedge.State == provisioner.StateBooting
	})
	return hedge
}

// firstLease waits for the one lease made for the job and returns it once
// its host is booting.
func firstLease(h *harness) *provisioner.Lease {
	h.t.Helper()
	var first *provisioner.Lease
	h.waitFor("the first lease booting", func() bool {
		ls := h.leases(provisioner.StateBooting)
		if len(ls) == 1 {
			first = ls[0]
		}
		return first != nil
	})
	return first
}

// checkTwoLeases is the invariant: the job never has more than two leases
// holding or about to hold a host (released ones and those on their way
// out aside), and no more than one of them a hedge.
func checkTwoLeases(t testing.TB, ls []*provisioner.Lease) error {
	live, hedges := map[int64]int{}, map[int64]int{}
	for _, l := range ls {
		if l.State == provisioner.StateReleasing || l.State == provisioner.StateReleased || l.State == provisioner.StateFailed {
			continue
		}
		live[l.JobID]++
		if l.HedgeOf != "" {
			hedges[l.JobID]++
		}
	}
	for job, n := range live {
		if n > 2 || hedges[job] > 1 {
			return fmt.Errorf("job %d: %d live leases, %d hedges", job, n, hedges[job])
		}
	}
	return nil
}

// A hedge is made once HedgeAfter has passed since the first host's create
// call, not before; the second host wins: it becomes the job's lease, the
// first is released at once, and the balance makes nothing more.
func TestHedgeSecondWins(t *testing.T) {
	hold2 := make(chan struct{})
	h, obs := newHedgeHarness(t, map[int]chan struct{}{2: hold2}, nil)
	h.event("queued", 1, "g1")
	first := firstLease(h)
	var hedge *provisioner.Lease
	h.waitFor("a hedge", func() bool { hedge = hedgeOf(h, first.ID); return hedge != nil })
	if hedge.JobID != 1 || hedge.HedgeOf != first.ID {
		t.Fatalf("hedge %+v: want job 1, hedge of %s", hedge, first.ID)
	}
	createdAt := first.BootDeadline.Add(-testHedgeBootTimeout)
	if hedge.CreatedAt.Before(createdAt.Add(testHedgeAfter)) {
		t.Fatalf("hedge made at %s, before hedge_after (%s) from the create call at %s", hedge.CreatedAt, testHedgeAfter, createdAt)
	}
	close(hold2)
	h.waitFor("the hedge online and the first released", func() bool {
		f, _ := h.store.Lease(context.Background(), first.ID)
		s, _ := h.store.Lease(context.Background(), hedge.ID)
		return s.State == provisioner.StateIdle && (f.State == provisioner.StateReleased)
	})
	f, _ := h.store.Lease(context.Background(), first.ID)
	if f.ReleaseReason != "hedge "+hedge.ID+" got its runner online first" {
		t.Fatalf("first released for %q", f.ReleaseReason)
	}
	s, _ := h.store.Lease(context.Background(), hedge.ID)
	if s.HedgeOf != "" {
		t.Fatalf("the winning hedge still says hedge of %q", s.HedgeOf)
	}
	h.event("queued", 1, "g1-again") // a balance: nothing to add
	if ls := h.leases(); len(ls) != 2 {
		t.Fatalf("%d leases, want 2:%s", len(ls), h.describe())
	}
	h.waitFor("the extra cost counted", func() bool { _, _, _, x := obs.get(); return x > 0 })
	started, _, won, _ := obs.get()
	if started != 1 || won["second"] != 1 || won["first"] != 0 {
		t.Fatalf("started %d, won %v", started, won)
	}
}

// The first host comes up while its hedge still boots: the hedge is
// released, the first serves.
func TestHedgeFirstWins(t *testing.T) {
	hold1 := make(chan struct{})
	h, obs := newHedgeHarness(t, map[int]chan struct{}{1: hold1}, nil)
	h.event("queued", 1, "g1")
	first := firstLease(h)
	hedge := bootingHedge(h, first.ID)
	close(hold1)
	h.waitFor("the first online and the hedge released", func() bool {
		f, _ := h.store.Lease(context.Background(), first.ID)
		s, _ := h.store.Lease(context.Background(), hedge.ID)
		return f.State == provisioner.StateIdle && s.State == provisioner.StateReleased
	})
	s, _ := h.store.Lease(context.Background(), hedge.ID)
	if want := "hedge not needed: " + first.ID + " got its runner online first"; s.ReleaseReason != want {
		t.Fatalf("hedge released for %q, want %q", s.ReleaseReason, want)
	}
	h.waitFor("the extra cost counted", func() bool { _, _, _, x := obs.get(); return x > 0 })
	started, _, won, _ := obs.get()
	if started != 1 || won["first"] != 1 || won["second"] != 0 {
		t.Fatalf("started %d, won %v", started, won)
	}
	if live, _, _ := h.prov.counts(); live != 1 {
		t.Fatalf("%d instances live, want 1", live)
	}
}

// The first lease fails while its hedge boots: the hedge is promoted to
// serve the job, with no third host while the failed first's host stands;
// once that host is destroyed, the promoted lease is hedged in turn (it is
// past hedge_after), so a job whose first host and hedge both never boot
// does not wait out the hedge's own boot timeout. The promoted lease that
// comes online first wins like any.
func TestHedgeFirstFailsHedgePromoted(t *testing.T) {
	hold2, hold3 := make(chan struct{}), make(chan struct{})
	defer close(hold3)
	h, obs := newHedgeHarness(t, map[int]chan struct{}{2: hold2, 3: hold3}, nil)
	h.prov.offers = append(h.prov.offers, provisioner.Offer{Provider: "mem", ID: "o-third", GPU: "A100", GPUCount: 1,
		GPUMemoryGB: 80, PricePerHour: 1.5, MachineID: "m-third"})
	h.event("queued", 1, "g1")
	first := firstLease(h)
	hedge := bootingHedge(h, first.ID)
	// The first's destroy is held: no new hedge meanwhile.
	destroying, letGo := h.prov.holdDestroy(first.InstanceID)
	// Its host is gone: the gc's failure path (host vanished) releases it
	// with a failure; the same as a boot timeout for the first.
	h.prov.lose(first.InstanceID, provisioner.InstanceGone)
	select {
	case <-destroying:
	case <-time.After(30 * time.Second):
		t.Fatalf("the first's host never destroyed:%s", h.describe())
	}
	s, _ := h.store.Lease(context.Background(), hedge.ID)
	if s.HedgeOf != "" || s.HedgedAt.IsZero() || s.PromotedFrom != first.ID {
		close(letGo)
		t.Fatalf("hedge not promoted: hedge_of %q hedged_at %s promoted_from %q", s.HedgeOf, s.HedgedAt, s.PromotedFrom)
	}
	time.Sleep(3 * testHedgeAfter) // time for a new hedge, were one made too early
	if ls := h.leases(); len(ls) != 2 {
		close(letGo)
		t.Fatalf("%d leases while the first's host is not destroyed yet, want 2 (no third host):%s", len(ls), h.describe())
	}
	close(letGo)
	h.waitFor("the first released", func() bool {
		f, _ := h.store.Lease(context.Background(), first.ID)
		return f.State == provisioner.StateReleased
	})
	again := bootingHedge(h, hedge.ID)
	if err := checkTwoLeases(t, h.leases()); err != nil {
		t.Fatalf("%v:%s", err, h.describe())
	}
	close(hold2)
	h.waitFor("the promoted hedge online, its own hedge released", func() bool {
		s, _ := h.store.Lease(context.Background(), hedge.ID)
		a, _ := h.store.Lease(context.Background(), again.ID)
		return s.State == provisioner.StateIdle && (a.State == provisioner.StateReleased || a.State == provisioner.StateReleasing)
	})
	if a, _ := h.store.Lease(context.Background(), again.ID); a.ReleaseReason != "hedge not needed: "+hedge.ID+" got its runner online first" {
		t.Errorf("the promoted lease's hedge released for %q", a.ReleaseReason)
	}
	if ls := h.leases(); len(ls) != 3 {
		t.Fatalf("%d leases, want 3:%s", len(ls), h.describe())
	}
	started, _, won, _ := obs.get()
	if started != 2 || won["second"] != 1 || won["first"] != 1 {
		t.Fatalf("started %d, won %v: want 2 hedges, the first won by the promotion and the second by the promoted lease", started, won)
	}
}

// A hedge that fails while the first lease still boots and its job waits
// is replaced by a new hedge, but only once the failed hedge's host is
// destroyed: the job never has three hosts. The new hedge wins like any.
func TestHedgeFailsHedgedAgain(t *testing.T) {
	hold1, hold3 := make(chan struct{}), make(chan struct{})
	h, obs := newHedgeHarness(t, map[int]chan struct{}{1: hold1, 3: hold3}, nil)
	// A third machine: the first's is left out for a hedge, the failed
	// hedge's is marked bad.
	h.prov.offers = append(h.prov.offers, provisioner.Offer{Provider: "mem", ID: "o-third", GPU: "A100", GPUCount: 1,
		GPUMemoryGB: 80, PricePerHour: 1.5, MachineID: "m-third"})
	h.event("queued", 1, "g1")
	first := firstLease(h)
	hedge := bootingHedge(h, first.ID)
	// The failed hedge's destroy is held: no new hedge meanwhile.
	destroying, letGo := h.prov.holdDestroy(hedge.InstanceID)
	h.prov.lose(hedge.InstanceID, provisioner.InstanceFailed)
	select {
	case <-destroying:
	case <-time.After(30 * time.Second):
		t.Fatalf("the failed hedge's host never destroyed:%s", h.describe())
	}
	time.Sleep(3 * testHedgeAfter) // time for a new hedge, were one made too early
	if ls := h.leases(); len(ls) != 2 {
		close(letGo)
		t.Fatalf("%d leases while the failed hedge's host is not destroyed yet, want 2:%s", len(ls), h.describe())
	}
	close(letGo)
	var again *provisioner.Lease
	h.waitFor("a new hedge", func() bool {
		for _, l := range h.leases() {
			if l.HedgeOf == first.ID && l.ID != hedge.ID {
				again = l
			}
		}
		return again != nil
	})
	old, _ := h.store.Lease(context.Background(), hedge.ID)
	if old.State != provisioner.StateReleased || again.CreatedAt.Before(old.ReleasedAt) {
		t.Fatalf("new hedge made at %s, the failed one %s released at %s", again.CreatedAt, old.State, old.ReleasedAt)
	}
	close(hold3)
	h.waitFor("the new hedge online and the first released", func() bool {
		f, _ := h.store.Lease(context.Background(), first.ID)
		s, _ := h.store.Lease(context.Background(), again.ID)
		return s.State == provisioner.StateIdle && f.State == provisioner.StateReleased
	})
	if ls := h.leases(); len(ls) != 3 {
		t.Fatalf("%d leases, want 3 (first, failed hedge, new hedge):%s", len(ls), h.describe())
	}
	if started, _, won, _ := obs.get(); started != 2 || won["second"] != 1 {
		t.Fatalf("started %d, won %v; want 2 hedges started, the second's win", started, won)
	}
	close(hold1)
}

// No new hedge after a hedge fails when the job no longer waits (counted
// as skipped), nor when the first lease came online while the failed
// hedge's host was being destroyed.
func TestHedgeFailsNotHedgedAgain(t *testing.T) {
	t.Run("job gone", func(t *testing.T) {
		hold1 := make(chan struct{})
		defer close(hold1)
		h, obs := newHedgeHarness(t, map[int]chan struct{}{1: hold1}, nil)
		h.event("queued", 1, "g1")
		first := firstLease(h)
		hedge := bootingHedge(h, first.ID)
		h.event("in_progress", 1, "g2", func(e *provisioner.JobEvent) { e.RunnerName = "someone-else" })
		h.prov.lose(hedge.InstanceID, provisioner.InstanceGone)
		h.waitFor("the hedge released", func() bool {
			s, _ := h.store.Lease(context.Background(), hedge.ID)
			return s.State == provisioner.StateReleased
		})
		h.waitFor("the skip counted", func() bool { _, s, _, _ := obs.get(); return s[provisioner.HedgeSkipJobGone] > 0 })
		time.Sleep(3 * testHedgeAfter)
		if ls := h.leases(); len(ls) != 2 {
			t.Fatalf("%d leases, want 2 (no new hedge for a job gone):%s", len(ls), h.describe())
		}
		if started, _, _, _ := obs.get(); started != 1 {
			t.Fatalf("%d hedges started, want 1", started)
		}
	})
	t.Run("first online", func(t *testing.T) {
		hold1 := make(chan struct{})
		h, obs := newHedgeHarness(t, map[int]chan struct{}{1: hold1}, nil)
		h.event("queued", 1, "g1")
		first := firstLease(h)
		hedge := bootingHedge(h, first.ID)
		destroying, letGo := make(chan struct{}), make(chan struct{})
		var once sync.Once
		h.prov.mu.Lock()
		h.prov.destroyGate = func(id string) {
			if id == hedge.InstanceID {
				once.Do(func() { close(destroying) })
				<-letGo
			}
		}
		h.prov.mu.Unlock()
		h.prov.lose(hedge.InstanceID, provisioner.InstanceFailed)
		<-destroying
		close(hold1)
		h.waitFor("the first online", func() bool {
			f, _ := h.store.Lease(context.Background(), first.ID)
			return f.State == provisioner.StateIdle
		})
		close(letGo)
		h.waitFor("the failed hedge released", func() bool {
			s, _ := h.store.Lease(context.Background(), hedge.ID)
			return s.State == provisioner.StateReleased
		})
		time.Sleep(3 * testHedgeAfter)
		if ls := h.leases(); len(ls) != 2 {
			t.Fatalf("%d leases, want 2 (no new hedge for a lease online):%s", len(ls), h.describe())
		}
		if started, _, _, _ := obs.get(); started != 1 {
			t.Fatalf("%d hedges started, want 1", started)
		}
	})
}

// No hedge for a job no longer queued, over max_leases, or over the spend
// cap; each is counted as skipped.
func TestHedgeSkipped(t *testing.T) {
	for _, tc := range []struct {
		name  string
		tweak func(*provisioner.Config)
		job   func(h *harness)
		want  string
	}{
		{"job gone", nil, func(h *harness) {
			h.event("in_progress", 1, "g2", func(e *provisioner.JobEvent) { e.RunnerName = "someone-else" })
		}, provisioner.HedgeSkipJobGone},
		{"max_leases", func(c *provisioner.Config) { c.Limits.MaxLeases = 1 }, nil, provisioner.HedgeSkipNoRoom},
		{"class max_leases", func(c *provisioner.Config) { c.Classes[0].MaxLeases = 1 }, nil, provisioner.HedgeSkipNoRoom},
		{"budget", func(c *provisioner.Config) { c.Limits.MaxSpendPerHour = 2 }, nil, provisioner.HedgeSkipBudget},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h, obs := newHedgeHarness(t, nil, tc.tweak)
			h.event("queued", 1, "g1")
			first := firstLease(h)
			if tc.job != nil {
				tc.job(h)
			}
			h.waitFor("the skip counted", func() bool { _, s, _, _ := obs.get(); return s[tc.want] > 0 })
			if hedge := hedgeOf(h, first.ID); hedge != nil {
				t.Fatalf("hedge made: %+v", hedge)
			}
			started, skipped, _, _ := obs.get()
			if started != 0 || skipped[tc.want] != 1 {
				t.Fatalf("started %d, skipped %v", started, skipped)
			}
		})
	}
}

// The two-leases invariant under every order of the events that settle a
// race: the first host up, the hedge's host up, the first released by hand,
// the job taken by another runner.
func TestHedgeEventOrders(t *testing.T) {
	if testing.Short() {
		t.Skip("24 runs")
	}
	names := []string{"first up", "hedge up", "release first", "job taken"}
	for _, order := range permutations([]int{0, 1, 2, 3}) {
		var label []string
		for _, i := range order {
			label = append(label, names[i])
		}
		t.Run(strings.Join(label, ", "), func(t *testing.T) {
			hold1, hold2 := make(chan struct{}), make(chan struct{})
			h, _ := newHedgeHarness(t, map[int]chan struct{}{1: hold1, 2: hold2}, nil)
			// A lease made after a release by hand (the job still
			// waiting, no hedge left) boots at once.
			h.prov.behave = holdCreates(map[int]chan struct{}{1: hold1, 2: hold2})
			h.event("queued", 1, "g1")
			first := firstLease(h)
			h.waitFor("a hedge booting", func() bool {
				hd := hedgeOf(h, first.ID)
				return hd != nil && hd.State == provisioner.StateBooting
			})
			// Sample the invariant throughout.
			stop, failed := make(chan struct{}), make(chan error, 1)
			var wg sync.WaitGroup
			wg.Add(1)
			go func() {
				defer wg.Done()
				for {
					select {
					case <-stop:
						return
					case <-time.After(2 * time.Millisecond):
					}
					ls, err := h.store.Leases(context.Background(), provisioner.LeaseFilter{})
					if err != nil {
						continue
					}
					if err := checkTwoLeases(t, ls); err != nil {
						select {
						case failed <- err:
						default:
						}
						return
					}
				}
			}()
			for _, i := range order {
				switch i {
				case 0:
					close(hold1)
				case 1:
					close(hold2)
				case 2:
					if err := h.p.Release(context.Background(), first.ID, "released by hand"); err != nil {
						t.Fatal(err)
					}
				case 3:
					h.event("in_progress", 1, "g2", func(e *provisioner.JobEvent) { e.RunnerName = "someone-else" })
				}
				time.Sleep(50 * time.Millisecond)
			}
			// Settled: nothing queued, so at most leases on their way out.
			h.waitFor("settled", func() bool {
				for _, l := range h.leases() {
					if l.State.Starting() {
						return false
					}
				}
				return true
			})
			close(stop)
			wg.Wait()
			select {
			case err := <-failed:
				t.Fatalf("%v:%s", err, h.describe())
			default:
			}
			if err := checkTwoLeases(t, h.leases()); err != nil {
				t.Fatalf("%v:%s", err, h.describe())
			}
		})
	}
}

func permutations(xs []int) [][]int {
	if len(xs) <= 1 {
		return [][]int{append([]int(nil), xs...)}
	}
	var out [][]int
	for i := range xs {
		rest := append(append([]int(nil), xs[:i]...), xs[i+1:]...)
		for _, p := range permutations(rest) {
			out = append(out, append([]int{xs[i]}, p...))
		}
	}
	return out
}

// A racing hedge is not a lease another job can count on: a second job
// queued while the first job's hedge boots gets a lease of its own.
func TestHedgeNotCountedForAnotherJob(t *testing.T) {
	h, _ := newHedgeHarness(t, nil, nil)
	h.event("queued", 1, "g1")
	first := firstLease(h)
	h.waitFor("a hedge", func() bool { return hedgeOf(h, first.ID) != nil })
	h.event("queued", 2, "g2")
	h.waitFor("a lease for job 2", func() bool {
		for _, l := range h.leases() {
			if l.JobID == 2 && l.HedgeOf == "" {
				return true
			}
		}
		return false
	})
}

// A lease due a hedge whose boot worker is not running (every worker busy,
// or its process gone) is hedged by the deadline scan.
func TestHedgeBackstop(t *testing.T) {
	h, obs := newHedgeHarness(t, nil, nil)
	l := h.bootingLease("lorphan") // booting, no work queued for it
	h.waitFor("a hedge from the deadline scan", func() bool { return hedgeOf(h, l.ID) != nil })
	if hd := hedgeOf(h, l.ID); hd.HedgeOf != l.ID || hd.JobID != l.JobID {
		t.Fatalf("hedge %+v", hd)
	}
	time.Sleep(3 * testHedgeAfter) // time for a second hedge, were one made
	if started, _, _, _ := obs.get(); started != 1 {
		t.Fatalf("%d hedges started, want 1", started)
	}
}

// A warm lease (min_idle) is never hedged, even while a job is queued: no
// job waits on it. The job's own slow lease is.
func TestHedgeNotForWarmLeases(t *testing.T) {
	h, obs := newHedgeHarness(t, nil, func(c *provisioner.Config) { c.Classes[0].MinIdle = 1 })
	h.event("queued", 1, "w1")
	var jobLease, warm *provisioner.Lease
	h.waitFor("the job's lease and a warm lease booting", func() bool {
		jobLease, warm = nil, nil
		for _, l := range h.leases(provisioner.StateBooting) {
			if l.Warm {
				warm = l
			} else if l.HedgeOf == "" {
				jobLease = l
			}
		}
		return jobLease != nil && warm != nil
	})
	h.waitFor("the job's lease hedged", func() bool { s, _, _, _ := obs.get(); return s == 1 })
	time.Sleep(3 * testHedgeAfter) // the warm lease is as overdue as the job's
	var hedges []*provisioner.Lease
	for _, l := range h.leases() {
		if l.HedgeOf != "" {
			hedges = append(hedges, l)
		}
	}
	if started, _, _, _ := obs.get(); started != 1 || len(hedges) != 1 || hedges[0].HedgeOf != jobLease.ID {
		t.Fatalf("want one hedge, of the job's lease %s (warm lease %s); started %d: %s", jobLease.ID, warm.ID, started, h.describe())
	}
}

// In webhook mode any runner of the class takes the oldest queued job: a
// slow lease whose own job went to another runner is hedged for the job
// that now waits on it.
func TestHedgeForAnotherWaitingJob(t *testing.T) {
	h, obs := newHedgeHarness(t, nil, nil)
	h.event("queued", 1, "g1")
	first := firstLease(h)
	h.event("in_progress", 1, "g2", func(e *provisioner.JobEvent) { e.RunnerName = "someone-else" })
	h.event("queued", 2, "g3") // the booting first lease is counted for it: no new lease
	h.waitFor("a hedge for the job that waits", func() bool { return hedgeOf(h, first.ID) != nil })
	time.Sleep(3 * testHedgeAfter) // time for more, were any made
	if started, skipped, _, _ := obs.get(); started != 1 || skipped[provisioner.HedgeSkipJobGone] != 0 {
		t.Fatalf("started %d, skipped %v; want one hedge, no job_gone skip", started, skipped)
	}
	if n := len(h.leases()); n != 2 {
		t.Fatalf("%d leases, want the first and its hedge", n)
	}
}

// Slow leases whose own jobs are gone get no more hedges than there are
// jobs waiting: two such leases, one job queued, one hedge.
func TestHedgeNoMoreHedgesThanWaitingJobs(t *testing.T) {
	h, obs := newHedgeHarness(t, nil, nil)
	h.event("queued", 1, "g1")
	h.event("queued", 2, "g2")
	h.waitFor("two leases booting", func() bool { return len(h.leases(provisioner.StateBooting)) == 2 })
	h.event("in_progress", 1, "g3", func(e *provisioner.JobEvent) { e.RunnerName = "someone-else" })
	h.event("in_progress", 2, "g4", func(e *provisioner.JobEvent) { e.RunnerName = "someone-else-too" })
	h.event("queued", 3, "g5")
	h.waitFor("one hedge and one job_gone skip", func() bool {
		started, skipped, _, _ := obs.get()
		return started == 1 && skipped[provisioner.HedgeSkipJobGone] == 1
	})
	time.Sleep(3 * testHedgeAfter)
	if started, _, _, _ := obs.get(); started != 1 {
		t.Fatalf("%d hedges for one waiting job", started)
	}
}
