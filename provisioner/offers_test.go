package provisioner_test

import (
	"context"
	"fmt"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/crabbox/crabbox-runner/provisioner"
)

// marketProvider is a marketplace of machines, as Vast is: each offer is
// one machine (Exclusive), a create takes it, and a create of a taken
// offer is refused with ErrOfferUnavailable (Vast answers 404 or 410
// no_such_ask: /work/shared/reference/vast-api.md §2, from the spec's
// PUT /api/v0/asks/{id}/ responses). With exclusive off, an offer is a
// type with capacity behind it (a Lambda type in a region) and any number
// of creates take it.
type marketProvider struct {
	mu        sync.Mutex
	exclusive bool
	offers    []provisioner.Offer
	rentedAt  map[string]time.Time // offer id → when rented; absent: free
	// listingLag: a rented offer stays in the listing this long. How fast
	// Vast's search drops a rented ask is not documented; the stricter
	// plausible behaviour is a listing that lags (and part V's client
	// shares one search among a burst's leases).
	listingLag  time.Duration
	createDelay time.Duration
	// uncertain, when set, decides per create (1-based) whether the create
	// rents the machine but answers ErrCreateUncertain, the instance
	// showing up lateBy later (an answer lost after the create went
	// through: the "lost after creating").
	uncertain func(n int) bool
	lateBy    time.Duration

	seq       int
	instances map[string]*marketInstance
	creates   int // create calls
	refused   int // of which refused: the offer was taken
	unsure    int // of which answered ErrCreateUncertain
	byOffer   map[string]int
	destroyed int
	peakLive  int
	// lateLived: how long each host of an uncertain create lived from
	// showing up (visible in listings) to its destruction.
	lateLived []time.Duration
}

type marketInstance struct {
	inst    provisioner.Instance
	offer   string
	visible time.Time
	polls   int
	unsure  bool // its create answered ErrCreateUncertain
}

func newMarket(n int, exclusive bool) *marketProvider {
	m := &marketProvider{exclusive: exclusive, rentedAt: map[string]time.Time{}, instances: map[string]*marketInstance{},
		byOffer: map[string]int{}, listingLag: time.Hour, createDelay: 5 * time.Millisecond}
	m.addOffers(n, 1.0)
	return m
}

func (m *marketProvider) addOffers(n int, base float64) {
	m.mu.Lock()
	defer m.mu.Unlock()
	start := len(m.offers)
	for i := range n {
		id := fmt.Sprintf("ask-%d", start+i+1)
		m.offers = append(m.offers, provisioner.Offer{Provider: "market", ID: id, GPU: "A100", GPUCount: 1, GPUMemoryGB: 80,
			PricePerHour: base + float64(i)/100, MachineID: "m-" + id, Exclusive: m.exclusive})
	}
}

func (m *marketProvider) Name() string { return "market" }
func (m *marketProvider) Capabilities() provisioner.Capabilities {
	return provisioner.Capabilities{HostKeyInjection: true}
}

func (m *marketProvider) Offers(ctx context.Context, c provisioner.Class) ([]provisioner.Offer, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []provisioner.Offer
	for _, o := range m.offers {
		if at, ok := m.rentedAt[o.ID]; ok && time.Since(at) > m.listingLag {
			continue
		}
		out = append(out, o)
	}
	return out, nil
}

func (m *marketProvider) Create(ctx context.Context, req provisioner.CreateRequest) (*provisioner.Instance, error) {
	time.Sleep(m.createDelay)
	m.mu.Lock()
	defer m.mu.Unlock()
	m.creates++
	m.byOffer[req.Offer.ID]++
	if _, taken := m.rentedAt[req.Offer.ID]; taken && m.exclusive {
		m.refused++
		return nil, fmt.Errorf("ask %s: 404 no_such_ask: %w", req.Offer.ID, provisioner.ErrOfferUnavailable)
	}
	m.rentedAt[req.Offer.ID] = time.Now()
	m.seq++
	id := fmt.Sprintf("i-%d", m.seq)
	mi := &marketInstance{offer: req.Offer.ID, visible: time.Now(), inst: provisioner.Instance{Provider: "market", ID: id,
		Status: provisioner.InstancePending, Marker: req.Marker, PricePerHour: req.Offer.PricePerHour, MachineID: req.Offer.MachineID}}
	m.instances[id] = mi
	m.peakLive = max(m.peakLive, len(m.instances))
	if m.uncertain != nil && m.uncertain(m.creates) {
		m.unsure++
		mi.unsure = true
		mi.visible = time.Now().Add(m.lateBy)
		return nil, fmt.Errorf("create of ask %s: no answer in 120s and no instance labelled %s: %w", req.Offer.ID, req.Marker, provisioner.ErrCreateUncertain)
	}
	inst := mi.inst
	return &inst, nil
}

func (m *marketProvider) Get(ctx context.Context, id string) (*provisioner.Instance, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	mi, ok := m.instances[id]
	if !ok || time.Now().Before(mi.visible) {
		return nil, provisioner.ErrNotFound
	}
	mi.polls++
	if mi.polls >= 2 {
		mi.inst.Status = provisioner.InstanceRunning
		mi.inst.SSH = provisioner.Endpoint{Host: "127.0.0.1", Port: 22, User: "root"}
	}
	inst := mi.inst
	return &inst, nil
}

func (m *marketProvider) ListOwned(ctx context.Context, deployment string) ([]*provisioner.Instance, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []*provisioner.Instance
	for _, mi := range m.instances {
		if mi.inst.Marker.Deployment == deployment && !time.Now().Before(mi.visible) {
			inst := mi.inst
			out = append(out, &inst)
		}
	}
	return out, nil
}

func (m *marketProvider) Destroy(ctx context.Context, inst *provisioner.Instance) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if mi, ok := m.instances[inst.ID]; ok {
		delete(m.instances, inst.ID)
		delete(m.rentedAt, mi.offer) // the machine is back on the market
		m.destroyed++
		if mi.unsure {
			m.lateLived = append(m.lateLived, time.Since(mi.visible))
		}
	}
	return nil
}

type marketCounts struct {
	live, creates, refused, unsure, destroyed, peakLive, maxPerOffer int
	maxLateLived                                                     time.Duration
}

func (m *marketProvider) counts() marketCounts {
	m.mu.Lock()
	defer m.mu.Unlock()
	c := marketCounts{live: len(m.instances), creates: m.creates, refused: m.refused, unsure: m.unsure,
		destroyed: m.destroyed, peakLive: m.peakLive}
	for _, n := range m.byOffer {
		c.maxPerOffer = max(c.maxPerOffer, n)
	}
	for _, d := range m.lateLived {
		c.maxLateLived = max(c.maxLateLived, d)
	}
	return c
}

// hostsPerLease is the most instances any one lease has on the market now.
func (m *marketProvider) hostsPerLease() (worst int, lease string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	per := map[string]int{}
	for _, mi := range m.instances {
		per[mi.inst.Marker.LeaseID]++
		if per[mi.inst.Marker.LeaseID] > worst {
			worst, lease = per[mi.inst.Marker.LeaseID], mi.inst.Marker.LeaseID
		}
	}
	return worst, lease
}

// extraObs counts the extra hosts a sweep destroyed.
type extraObs struct {
	phaseRecorder
	mu    sync.Mutex
	extra map[string]int
}

func (o *extraObs) ExtraHostDestroyed(provider string) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.extra == nil {
		o.extra = map[string]int{}
	}
	o.extra[provider]++
}

func (o *extraObs) destroyed(provider string) int {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.extra[provider]
}

func marketHarness(t testing.TB, m *marketProvider, tweak func(*provisioner.Config)) *harness {
	return newHarness(t, func(c *provisioner.Config) {
		c.Providers["market"] = m
		c.Classes[0].Providers = []string{"market"}
		c.Classes[0].BootTimeout = time.Minute
		c.Logger = discardLog()
		c.QueuePollInterval = 10 * time.Millisecond
		if tweak != nil {
			tweak(c)
		}
	})
}

func (h *harness) queueJobs(n int) {
	var wg sync.WaitGroup
	for j := 1; j <= n; j++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			h.send(context.Background(), "queued", int64(j), "")
		}()
	}
	wg.Wait()
}

// burstOnMarket queues n jobs against a market of offers exclusive
// machines, then adds enough offers for the rest. It returns the creates
// made while only the first offers existed and the final counts.
func burstOnMarket(t testing.TB, n, offers int) (first, final marketCounts, took time.Duration) {
	m := newMarket(offers, true)
	h := marketHarness(t, m, nil)
	start := time.Now()
	h.queueJobs(n)
	h.waitFor("a host on every offer", func() bool { return h.count(provisioner.StateIdle) == offers })
	// The leases left have no offer: they wait, without creating.
	time.Sleep(300 * time.Millisecond)
	first = m.counts()
	m.addOffers(n-offers, 1.5)
	h.waitFor("every lease online", func() bool { return h.count(provisioner.StateIdle) == n })
	return first, m.counts(), time.Since(start)
}

// A burst of 50 leases on 20 exclusive offers: each offer is created once,
// the 30 leases left wait for offers instead of sending creates that would
// be refused, and take the new offers when they come, with no offer
// created twice.
func TestBurstTakesDistinctOffers(t *testing.T) {
	const n, offers = 50, 20
	first, final, took := burstOnMarket(t, n, offers)
	t.Logf("while %d offers: %+v; at the end: %+v; %s", offers, first, final, took.Round(time.Millisecond))
	if first.creates != offers || first.refused != 0 || first.maxPerOffer != 1 {
		t.Errorf("with %d offers: %d creates, %d refused, an offer created up to %d times; want %d, 0, 1",
			offers, first.creates, first.refused, first.maxPerOffer, offers)
	}
	if final.creates != n || final.refused != 0 || final.maxPerOffer != 1 || final.live != n || final.peakLive != n {
		t.Errorf("at the end: %+v; want %d creates, none refused, each offer once, %d hosts", final, n, n)
	}
}

// BenchmarkDistinctOffers prints the creates of the 50-lease burst on 20
// exclusive offers then 30 more (docs/benchmarks.md, "Distinct offers in a
// burst (#14)"):
//
//	go test -run '^$' -bench BenchmarkDistinctOffers -benchtime 1x ./provisioner/
func BenchmarkDistinctOffers(b *testing.B) {
	for range b.N {
		first, final, took := burstOnMarket(b, 50, 20)
		failed := float64(final.refused) / float64(max(final.creates, 1))
		b.ReportMetric(float64(final.creates), "creates")
		b.ReportMetric(100*failed, "failed-%")
		fmt.Fprintf(os.Stderr, "50 leases, 20 exclusive offers then 30 more: with 20 offers %d creates (%d refused); "+
			"in all %d creates, %d refused (%.0f%%), most creates of one offer %d, hosts at most %d; all online in %s\n",
			first.creates, first.refused, final.creates, final.refused, 100*failed, final.maxPerOffer, final.peakLive, took.Round(time.Millisecond))
	}
}

// Offers that are not exclusive (capacity behind them) are still shared:
// every lease creates on the cheapest.
func TestSharedOffersStillShared(t *testing.T) {
	m := newMarket(2, false)
	h := marketHarness(t, m, nil)
	h.queueJobs(10)
	h.waitFor("every lease online", func() bool { return h.count(provisioner.StateIdle) == 10 })
	c := m.counts()
	m.mu.Lock()
	cheapest := m.byOffer["ask-1"]
	m.mu.Unlock()
	if c.creates != 10 || cheapest != 10 {
		t.Errorf("creates %d, on the cheapest offer %d; want 10 and 10", c.creates, cheapest)
	}
}

// Creates whose answer is lost after they went through
// (ErrCreateUncertain): each lease goes on to the next offer, and the
// host of the lost answer, showing up late, is destroyed by the sweep
// within its interval; once swept, no lease has two hosts.
func TestUncertainCreateExtraHostDestroyed(t *testing.T) {
	c, extra, swept := uncertainCreates(t, 20)
	t.Logf("%+v; %d extra hosts destroyed; all swept %s after the burst", c, extra, swept.Round(time.Millisecond))
	if c.unsure == 0 || extra != c.unsure {
		t.Errorf("%d uncertain creates, %d extra hosts destroyed by the sweep; want them equal and > 0", c.unsure, extra)
	}
	if c.refused != 0 {
		t.Errorf("%d creates refused: an uncertain create's offer must count as taken", c.refused)
	}
	// How long a late host lives once it shows up is a figure, not a
	// property: about one sweep interval (200 ms here), 0.2 s without
	// -race, up to 1.5 s with it, over 5 s on two cores with a dozen other
	// test processes. BenchmarkUncertainCreates reports it
	// (docs/benchmarks.md); what must hold is above, every extra host
	// destroyed, and in uncertainCreates, no lease with two hosts after.
}

// BenchmarkUncertainCreates prints, for 50 leases whose every other create
// answers ErrCreateUncertain after renting a host that shows up 300 ms
// later, how many extra hosts the sweep (every 200 ms) destroyed and how
// long the longest lived (docs/benchmarks.md, "Distinct offers in a burst
// (#14)"):
//
//	go test -run '^$' -bench BenchmarkUncertainCreates -benchtime 1x ./provisioner/
func BenchmarkUncertainCreates(b *testing.B) {
	for range b.N {
		c, extra, swept := uncertainCreates(b, 50)
		b.ReportMetric(float64(extra), "extra-destroyed")
		fmt.Fprintf(os.Stderr, "50 leases, every other create uncertain: %d creates, %d uncertain, %d refused, %d extra hosts destroyed by the sweep, "+
			"the longest-lived %s from showing up; hosts at most %d at once; after the sweep, %d hosts; all swept %s after the burst\n",
			c.creates, c.unsure, c.refused, extra, c.maxLateLived.Round(time.Millisecond), c.peakLive, c.live, swept.Round(time.Millisecond))
	}
}

// uncertainCreates runs n leases on a market whose every other create
// rents a host but answers ErrCreateUncertain, the host showing up 300 ms
// later; the sweep runs every 200 ms for 3 s. It returns when every late
// host is gone, and checks through the rest of the window that no lease
// has two hosts.
const sweepWindow = 3 * time.Second

func uncertainCreates(t testing.TB, n int) (marketCounts, int, time.Duration) {
	m := newMarket(3*n, true)
	m.lateBy = 300 * time.Millisecond
	m.uncertain = func(k int) bool { return k%2 == 1 }
	obs := &extraObs{}
	h := marketHarness(t, m, func(c *provisioner.Config) {
		c.Observer = obs
		c.ExtraHostSweepInterval = 200 * time.Millisecond
		c.ExtraHostWindow = sweepWindow
	})
	start := time.Now()
	h.queueJobs(n)
	h.waitFor("every lease online", func() bool { return h.count(provisioner.StateIdle) == n })
	h.waitFor("every late host destroyed", func() bool { return m.counts().live == n })
	swept := time.Since(start)
	// The window runs out: nothing more shows up, and no lease has two hosts.
	deadline := start.Add(sweepWindow + 500*time.Millisecond)
	for time.Now().Before(deadline) {
		if worst, lease := m.hostsPerLease(); worst > 1 {
			t.Fatalf("lease %s has %d hosts after the sweep", lease, worst)
		}
		time.Sleep(20 * time.Millisecond)
	}
	return m.counts(), obs.destroyed("market"), swept
}

// The sweep destroys what is extra and nothing else: a host of a lease
// that runs on another provider, a host whose lease is gone; not the
// lease's own host, nor a host of a lease still being created (its create
// may be making it; its next run looks by marker).
func TestSweepDestroysOnlyExtraHosts(t *testing.T) {
	m := newMarket(4, true)
	obs := &extraObs{}
	h := newHarness(t, func(c *provisioner.Config) {
		c.Providers["market"] = m
		c.Classes[0].Providers = []string{"mem", "market"}
		c.Observer = obs
		c.Logger = discardLog()
		c.ExtraHostSweepInterval = 50 * time.Millisecond
		c.ExtraHostWindow = 300 * time.Millisecond
	})
	ctx := context.Background()
	marker := func(lease string) provisioner.Marker {
		return provisioner.Marker{Deployment: "test", LeaseID: lease, Expires: time.Now().Add(time.Hour)}
	}
	create := func(i int, lease string) *provisioner.Instance {
		inst, err := m.Create(ctx, provisioner.CreateRequest{Offer: m.offers[i], Marker: marker(lease)})
		if err != nil {
			t.Fatal(err)
		}
		return inst
	}
	// Lease "moved" runs on mem; a market host carries its marker too.
	movedExtra := create(0, h.bootingLease("moved").ID)
	// Lease "onmarket" runs on market: its own host stays, a second goes.
	own := create(1, "onmarket")
	second := create(2, "onmarket")
	creating := create(3, "creating")
	gone, err := m.Create(ctx, provisioner.CreateRequest{Offer: provisioner.Offer{Provider: "market", ID: "ask-x"}, Marker: marker("gone")})
	if err != nil {
		t.Fatal(err)
	}
	if err := h.store.InTx(ctx, func(tx provisioner.Tx) error {
		for _, id := range []string{"onmarket", "creating"} {
			if err := tx.InsertLease(ctx, &provisioner.Lease{ID: id, Class: "a100", Scope: provisioner.Scope{Org: "acme"},
				State: provisioner.StatePending, RunnerName: "crabbox-test-" + id}); err != nil {
				return err
			}
		}
		if _, err := tx.Transition(ctx, "onmarket", provisioner.StateProvisioning, "test", func(l *provisioner.Lease) {
			l.Attempts, l.Provider = 1, "market"
			l.BootDeadline, l.ExpiresAt = time.Now().Add(time.Minute), time.Now().Add(time.Hour)
		}); err != nil {
			return err
		}
		if _, err := tx.Transition(ctx, "onmarket", provisioner.StateBooting, "test", func(l *provisioner.Lease) {
			l.InstanceID, l.HostKey = own.ID, "ssh-ed25519 HOST"
		}); err != nil {
			return err
		}
		for _, id := range []string{"moved", "onmarket", "creating", "gone"} {
			if err := tx.Enqueue(ctx, provisioner.SweepArgs{LeaseID: id, Provider: "market", Until: time.Now().Add(300 * time.Millisecond)}, nil); err != nil {
				return err
			}
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	h.waitFor("three extra hosts destroyed", func() bool { return obs.destroyed("market") == 3 })
	time.Sleep(500 * time.Millisecond) // the window runs out; nothing more goes
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, c := range []struct {
		inst *provisioner.Instance
		want bool
		why  string
	}{
		{movedExtra, false, "lease runs on another provider"}, {own, true, "the lease's own host"},
		{second, false, "a second host of the lease"}, {creating, true, "the lease is being created"},
		{gone, false, "no such lease"},
	} {
		if _, live := m.instances[c.inst.ID]; live != c.want {
			t.Errorf("%s (%s): live %v, want %v", c.inst.ID, c.why, live, c.want)
		}
	}
	if n := obs.destroyed("market"); n != 3 {
		t.Errorf("%d extra hosts counted; want 3", n)
	}
}
