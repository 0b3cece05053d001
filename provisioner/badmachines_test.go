package provisioner_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/crabbox/crabbox-runner/provisioner"
	"github.com/crabbox/crabbox-runner/store/sqlite"
)

// avoidObserver records the offers avoided (provisioner.BadMachineObserver).
type avoidObserver struct {
	provisioner.Observer
	mu      sync.Mutex
	avoided map[string]int // provider/how → offers
}

func (o *avoidObserver) OffersAvoided(provider, how string, n int) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.avoided == nil {
		o.avoided = map[string]int{}
	}
	o.avoided[provider+"/"+how] += n
}

func (o *avoidObserver) count(key string) int {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.avoided[key]
}

type nopObs struct{}

func (nopObs) Phase(string, string, provisioner.Phase, time.Duration) {}
func (nopObs) Spent(string, string, float64)                          {}
func (nopObs) LimitWait(string, time.Duration)                        {}

// badMarks reads the marks in the store, waiting for the one the failed
// lease's machine gets (it is written in the background).
func badMarks(h *harness, want int) []provisioner.BadMachine {
	h.t.Helper()
	var marks []provisioner.BadMachine
	h.waitFor("the bad machine recorded in the store", func() bool {
		var err error
		marks, err = h.store.BadMachines(context.Background(), time.Now())
		if err != nil {
			h.t.Fatal(err)
		}
		return len(marks) == want
	})
	return marks
}

// A machine whose GPU check failed is recorded in the store with the
// reason, the lease and the default day; a provisioner started again on
// the same database skips it, and says so to its observer.
func TestBadMachineSurvivesRestart(t *testing.T) {
	h := newHarness(t, nil)
	h.boot.gpuBad = func(_ provisioner.Endpoint, n int) bool { return n == 1 }
	h.event("queued", 1, "g1")
	h.waitFor("online on another machine", func() bool { return len(h.leases(provisioner.StateIdle)) == 1 })
	first := h.leases(provisioner.StateReleased, provisioner.StateReleasing)[0]
	marks := badMarks(h, 1)
	m := marks[0]
	if m.Provider != "mem" || m.Machine != "m-cheap" || m.LeaseID != first.ID || !strings.Contains(m.Reason, "GPU") || m.Marks != 1 {
		t.Fatalf("mark %+v (first lease %s)", m, first.ID)
	}
	if left := time.Until(m.Until); left < 23*time.Hour || left > 24*time.Hour {
		t.Fatalf("mark until %s: %s from now, want the default day", m.Until, left)
	}

	// Stop, and start another provisioner on the same database: it knows
	// nothing in memory, only what the store has.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := h.p.Stop(ctx); err != nil {
		t.Fatal(err)
	}
	obs := &avoidObserver{Observer: nopObs{}}
	h2 := newHarness(t, func(c *provisioner.Config) { c.Store = h.store; c.Observer = obs })
	h2.store = h.store
	if got := h2.p.BadMachines(context.Background()); len(got) != 1 || got[0].Machine != "m-cheap" {
		t.Fatalf("restarted provisioner knows %+v", got)
	}
	h2.event("queued", 2, "g2")
	h2.waitFor("job 2 online", func() bool {
		for _, l := range h2.leases(provisioner.StateIdle) {
			if l.JobID == 2 {
				return true
			}
		}
		return false
	})
	for _, l := range h2.leases() {
		if l.JobID == 2 && l.MachineID != "m-dear" {
			t.Fatalf("job 2 leased on %s after the restart, want m-dear: %s", l.MachineID, h2.describe())
		}
	}
	if obs.count("mem/skipped") == 0 {
		t.Fatalf("no skipped offer observed: %v", obs.avoided)
	}
}

// After bad_machines.avoid_for the machine is offered again.
func TestBadMachineTTL(t *testing.T) {
	h := newHarness(t, func(c *provisioner.Config) { c.BadMachineTTL = 1500 * time.Millisecond })
	h.boot.gpuBad = func(_ provisioner.Endpoint, n int) bool { return n == 1 }
	h.event("queued", 1, "g1")
	h.waitFor("online on another machine", func() bool { return len(h.leases(provisioner.StateIdle)) == 1 })
	if ok := h.leases(provisioner.StateIdle)[0]; ok.MachineID != "m-dear" {
		t.Fatalf("replacement on %s within the TTL", ok.MachineID)
	}
	m := badMarks(h, 1)[0]
	if d := m.Until.Sub(m.LastAt); d != 1500*time.Millisecond {
		t.Fatalf("mark lasts %s, want the configured 1.5s", d)
	}
	time.Sleep(time.Until(m.Until) + 100*time.Millisecond)
	if got := h.p.BadMachines(context.Background()); len(got) != 0 {
		t.Fatalf("still avoided after the TTL: %+v", got)
	}
	h.event("queued", 2, "g2")
	h.waitFor("job 2 online", func() bool { return len(h.leases(provisioner.StateIdle)) == 2 })
	for _, l := range h.leases(provisioner.StateIdle) {
		if l.JobID == 2 && l.MachineID != "m-cheap" {
			t.Fatalf("job 2 on %s after the TTL, want the cheap machine again", l.MachineID)
		}
	}
	// The retention pass deletes the mark that ran out.
	if _, err := h.p.Reconcile(context.Background()); err != nil {
		t.Fatal(err)
	}
	if got, err := h.store.BadMachines(context.Background(), time.Time{}); err != nil || len(got) != 0 {
		t.Fatalf("marks after the retention pass: %+v %v", got, err)
	}
}

// A negative TTL avoids nothing: the replacement lands on the cheap
// machine again, and nothing is recorded.
func TestBadMachineAvoidanceOff(t *testing.T) {
	h := newHarness(t, func(c *provisioner.Config) { c.BadMachineTTL = -1 })
	h.boot.gpuBad = func(_ provisioner.Endpoint, n int) bool { return n == 1 }
	h.event("queued", 1, "g1")
	h.waitFor("online", func() bool { return len(h.leases(provisioner.StateIdle)) == 1 })
	if ok := h.leases(provisioner.StateIdle)[0]; ok.MachineID != "m-cheap" {
		t.Fatalf("replacement on %s with avoidance off", ok.MachineID)
	}
	if got := h.p.BadMachines(context.Background()); len(got) != 0 {
		t.Fatalf("marks with avoidance off: %+v", got)
	}
}

// poolProvider's machine ids name capacity pools, as Lambda's type@region.
type poolProvider struct{ *memProvider }

func (p poolProvider) Capabilities() provisioner.Capabilities {
	c := p.memProvider.Capabilities()
	c.MachinePools = true
	return c
}

// A pool whose host failed is tried after the other offers, for
// BadPoolTTL, and still used when it is the only one.
func TestBadPoolIsTriedLast(t *testing.T) {
	obs := &avoidObserver{Observer: nopObs{}}
	var pool poolProvider
	h := newHarness(t, func(c *provisioner.Config) {
		pool = poolProvider{c.Providers["mem"].(*memProvider)}
		c.Providers = map[string]provisioner.Provider{"mem": pool}
		c.Observer = obs
	})
	h.boot.gpuBad = func(_ provisioner.Endpoint, n int) bool { return n == 1 }
	h.event("queued", 1, "g1")
	h.waitFor("online", func() bool { return len(h.leases(provisioner.StateIdle)) == 1 })
	if ok := h.leases(provisioner.StateIdle)[0]; ok.MachineID != "m-dear" {
		t.Fatalf("replacement on %s, want the other pool first", ok.MachineID)
	}
	m := badMarks(h, 1)[0]
	if d := m.Until.Sub(m.LastAt); d != provisioner.DefaultBadPoolTTL {
		t.Fatalf("pool mark lasts %s, want %s", d, provisioner.DefaultBadPoolTTL)
	}
	if obs.count("mem/tried_last") == 0 || obs.count("mem/skipped") != 0 {
		t.Fatalf("avoided offers observed: %v", obs.avoided)
	}
	// With the bad pool the only offer left, it is used.
	h.prov.mu.Lock()
	h.prov.offers = h.prov.offers[:1]
	h.prov.mu.Unlock()
	h.event("queued", 2, "g2")
	h.waitFor("job 2 online", func() bool { return len(h.leases(provisioner.StateIdle)) == 2 })
	for _, l := range h.leases(provisioner.StateIdle) {
		if l.JobID == 2 && l.MachineID != "m-cheap" {
			t.Fatalf("job 2 on %s", l.MachineID)
		}
	}
}

func TestAvoidBadMachines(t *testing.T) {
	now := time.Date(2026, 12, 7, 2, 0, 0, 0, time.UTC)
	offers := []provisioner.Offer{
		{Provider: "vast", ID: "1", MachineID: "m1", PricePerHour: 1},
		{Provider: "lambda", ID: "t@r", MachineID: "t@r", PricePerHour: 2},
		{Provider: "vast", ID: "2", MachineID: "m2", PricePerHour: 3},
		{Provider: "vast", ID: "3", PricePerHour: 4}, // no machine id: never avoided
		{Provider: "lambda", ID: "u@r", MachineID: "u@r", PricePerHour: 5},
		{Provider: "vast", ID: "4", MachineID: "m4", PricePerHour: 6},
	}
	bad := provisioner.NewBadMachineSet([]provisioner.BadMachine{
		{Provider: "vast", Machine: "m1", Until: now.Add(time.Hour), Reason: "boot timeout"},
		{Provider: "lambda", Machine: "t@r", Until: now.Add(time.Minute)},
		{Provider: "vast", Machine: "m4", Until: now},                  // ran out just now
		{Provider: "lambda", Machine: "m2", Until: now.Add(time.Hour)}, // another provider's machine
	})
	try, avoided := provisioner.AvoidBadMachines(offers, bad, func(p string) bool { return p == "lambda" }, now)
	var ids []string
	for _, o := range try {
		ids = append(ids, o.ID)
	}
	if got := strings.Join(ids, ","); got != "2,3,u@r,4,t@r" {
		t.Fatalf("offers to try %s, want the bad pool last and the bad machine out", got)
	}
	if len(avoided) != 2 || avoided[0].Offer.ID != "1" || avoided[0].How != provisioner.AvoidSkipped || avoided[0].Mark.Reason != "boot timeout" ||
		avoided[1].Offer.ID != "t@r" || avoided[1].How != provisioner.AvoidTriedLast {
		t.Fatalf("avoided %+v", avoided)
	}
}

// BenchmarkAvoidBadMachines: one look at a large market against many marks,
// what every create attempt pays (docs/benchmarks.md, "Bad machines").
func BenchmarkAvoidBadMachines(b *testing.B) {
	now := time.Date(2026, 12, 7, 2, 0, 0, 0, time.UTC)
	offers := make([]provisioner.Offer, 1000)
	for i := range offers {
		offers[i] = provisioner.Offer{Provider: "vast", ID: fmt.Sprint(8000000 + i), MachineID: fmt.Sprint(i), PricePerHour: float64(i)}
	}
	marks := make([]provisioner.BadMachine, 10000)
	for i := range marks {
		marks[i] = provisioner.BadMachine{Provider: "vast", Machine: fmt.Sprint(i * 7), Until: now.Add(time.Hour)}
	}
	bad := provisioner.NewBadMachineSet(marks)
	pools := func(string) bool { return false }
	b.ResetTimer()
	for b.Loop() {
		try, avoided := provisioner.AvoidBadMachines(offers, bad, pools, now)
		if len(try)+len(avoided) != len(offers) {
			b.Fatal(len(try), len(avoided))
		}
	}
}

// failMarkStore is a store whose bad-machine writes fail.
type failMarkStore struct {
	*sqlite.Store
	tried atomic.Int32
}

type failMarkTx struct {
	provisioner.Tx
	s *failMarkStore
}

func (t failMarkTx) MarkBadMachine(context.Context, provisioner.BadMachine) error {
	t.s.tried.Add(1)
	return errors.New("database is locked")
}

func (s *failMarkStore) InTx(ctx context.Context, fn func(tx provisioner.Tx) error) error {
	return s.Store.InTx(ctx, func(tx provisioner.Tx) error { return fn(failMarkTx{tx, s}) })
}

// A mark the store refuses is logged and still holds in the process.
func TestBadMachineStoreErrorKeepsTheMark(t *testing.T) {
	var logs syncLog
	var fs *failMarkStore
	h := newHarness(t, func(c *provisioner.Config) {
		fs = &failMarkStore{Store: c.Store.(*sqlite.Store)}
		c.Store = fs
		c.Logger = slog.New(slog.NewTextHandler(&logs, nil))
	})
	h.boot.gpuBad = func(_ provisioner.Endpoint, n int) bool { return n == 1 }
	h.event("queued", 1, "g1")
	h.waitFor("online", func() bool { return len(h.leases(provisioner.StateIdle)) == 1 })
	if ok := h.leases(provisioner.StateIdle)[0]; ok.MachineID != "m-dear" {
		t.Fatalf("replacement on %s: the mark did not hold in memory", ok.MachineID)
	}
	h.waitFor("the write tried", func() bool {
		return fs.tried.Load() == 1 && strings.Contains(logs.String(), "avoided by this process only")
	})
	if got, _ := h.store.BadMachines(context.Background(), time.Now()); len(got) != 0 {
		t.Fatalf("marks in the store %+v", got)
	}
	if got := h.p.BadMachines(context.Background()); len(got) != 1 || got[0].Machine != "m-cheap" {
		t.Fatalf("the process avoids %+v", got)
	}
}

type syncLog struct {
	mu  sync.Mutex
	buf strings.Builder
}

func (l *syncLog) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.Write(p)
}

func (l *syncLog) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.String()
}

// Another replica on the same database sees a mark within the copy's
// refresh (5 s), without a restart.
func TestBadMachineSeenByAnotherReplica(t *testing.T) {
	h := newHarness(t, nil)
	other, err := provisioner.New(provisioner.Config{Deployment: "test", Classes: []provisioner.Class{h.class},
		Providers: map[string]provisioner.Provider{"mem": h.prov}, Store: h.store, Logger: discardLog()})
	if err != nil {
		t.Fatal(err)
	}
	if got := other.BadMachines(context.Background()); len(got) != 0 {
		t.Fatalf("marks before any failure: %+v", got)
	}
	h.boot.gpuBad = func(_ provisioner.Endpoint, n int) bool { return n == 1 }
	h.event("queued", 1, "g1")
	h.waitFor("online", func() bool { return len(h.leases(provisioner.StateIdle)) == 1 })
	marked := time.Now()
	h.waitFor("the other replica sees the mark", func() bool {
		got := other.BadMachines(context.Background())
		return len(got) == 1 && got[0].Machine == "m-cheap"
	})
	if d := time.Since(marked); d > 15*time.Second { // 5 s, and room for a loaded machine
		t.Fatalf("seen after %s, want within the 5 s refresh", d)
	}
}
