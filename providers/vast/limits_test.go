package vast_test

import (
	"context"
	"errors"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/crabbox/crabbox-runner/providers/vast"
	"github.com/crabbox/crabbox-runner/providers/vast/vasttest"
	"github.com/crabbox/crabbox-runner/provisioner"
)

// scale runs Vast's documented limits and create times a hundred times
// faster: create's 4.5 s is 45 ms, its 120 s timeout 1.2 s.
const scale = 0.01

// strictFake is vasttest with Vast's per-endpoint limits, scaled.
func strictFake(t *testing.T, opts vasttest.Options) *vasttest.Server {
	opts.RateLimits = vasttest.DocumentedLimits(scale)
	return newFake(t, opts)
}

// pacedProvider paces at the documented thresholds, scaled like the fake.
func pacedProvider(t *testing.T, fake *vasttest.Server, mutate ...func(*vast.Config)) *vast.Provider {
	return newProvider(t, fake, append([]func(*vast.Config){func(c *vast.Config) {
		c.MinRequestInterval = 0
		c.PaceFactor = scale
		c.CreateTimeout = time.Duration(scale * float64(vast.DefaultCreateTimeout))
		c.StatusTTL = time.Duration(scale * float64(vast.DefaultStatusTTL))
		c.SearchTTL = time.Duration(scale * float64(vast.DefaultSearchTTL))
		c.CreateLookup = time.Duration(scale * float64(vast.DefaultCreateLookup))
	}}, mutate...)...)
}

func count429(fake *vasttest.Server) map[vasttest.Op]int {
	out := map[vasttest.Op]int{}
	for _, r := range fake.Requests() {
		if r.Status == 429 {
			out[r.Op]++
		}
	}
	return out
}

// TestPacedPerEndpoint: leases creating, polling and destroying at once
// through one provider stay under each endpoint's own threshold (no 429),
// and a slow endpoint does not hold back the others: creates are spaced
// 4.5 units apart while listings go on between them.
func TestPacedPerEndpoint(t *testing.T) {
	fake := strictFake(t, vasttest.Options{AttachAnyTime: true, Offers: a100Market(10)})
	var mu sync.Mutex
	seen := map[string]int{}
	p := pacedProvider(t, fake, func(c *vast.Config) {
		c.OnRequest = func(ep string, status int) {
			mu.Lock()
			seen[ep+" "+strconv.Itoa(status)]++
			mu.Unlock()
		}
	})
	const n = 6
	// One search for all: each lease takes its own offer, as the
	// provisioner's offer claims hand them out (a search made after some
	// creates no longer lists the offers they took, so indexes would shift).
	offers, err := p.Offers(context.Background(), a100)
	if err != nil || len(offers) < n {
		t.Fatalf("Offers: %d, %v", len(offers), err)
	}
	var wg sync.WaitGroup
	insts := make([]*provisioner.Instance, n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			insts[i] = createOn(t, p, offers[i], marker("acme-gpu", "paced"+strconv.Itoa(i)))
		}()
	}
	wg.Wait()
	if t.Failed() {
		t.FailNow()
	}
	for _, in := range insts {
		waitStatus(t, p, in.ID, provisioner.InstanceRunning)
	}
	for _, in := range insts {
		if err := p.Destroy(context.Background(), in); err != nil {
			t.Fatal(err)
		}
	}
	if got := count429(fake); len(got) != 0 {
		t.Fatalf("429s despite pacing: %v", got)
	}
	creates := fake.RequestsFor(vasttest.OpCreate)
	for i := 1; i < len(creates); i++ {
		if gap := creates[i].At.Sub(creates[i-1].At); gap < 45*time.Millisecond {
			t.Errorf("creates %d and %d %s apart, under create's threshold", i-1, i, gap)
		}
	}
	if shows := len(fake.RequestsFor(vasttest.OpShow)); shows > n {
		t.Errorf("%d GETs by id for %d hosts: the shared listing should answer them", shows, n)
	}
	mu.Lock()
	defer mu.Unlock()
	if seen["PUT /api/v0/asks/{id}/ 200"] != n || seen["DELETE /api/v0/instances/{id}/ 200"] != n {
		t.Errorf("OnRequest saw %v", seen)
	}
	for ep := range seen {
		if regexp.MustCompile(`/[0-9]{3,}`).MatchString(ep) {
			t.Errorf("endpoint %q is not a route template", ep)
		}
	}
}

// a100Market is n A100 SXM4 offers that fit the a100 class, cheapest
// first.
func a100Market(n int) []vasttest.Offer {
	out := make([]vasttest.Offer, n)
	for i := range out {
		out[i] = vasttest.Offer{ID: 7000001 + int64(i), MachineID: 7001 + int64(i), HostID: 701 + int64(i), GPUName: "A100 SXM4", NumGPUs: 1,
			GPURAM: 81920, DphBase: 1.00 + float64(i)/100, StorageCost: 0.20, Reliability: 0.99, Geolocation: "Oregon, US",
			DirectPortCount: 64, DiskSpace: 1000, CUDAMaxGood: 12.8}
	}
	return out
}

// createOn rents one offer for the a100 class.
func createOn(t *testing.T, p *vast.Provider, offer provisioner.Offer, m provisioner.Marker) *provisioner.Instance {
	t.Helper()
	inst, err := p.Create(context.Background(), provisioner.CreateRequest{Offer: offer, Class: a100, Marker: m, SSHPublicKey: newLeaseKey(t).authorized})
	if err != nil {
		t.Errorf("Create: %v", err)
		return nil
	}
	t.Cleanup(func() { _ = p.Destroy(context.Background(), inst) })
	return inst
}

// TestLearnsTheThreshold: a client paced looser than the service (1 ms
// against show instance's 20 ms) meets 429s, reads the threshold from their text, and
// from then on spaces that endpoint by it: no call fails.
func TestLearnsTheThreshold(t *testing.T) {
	fake := strictFake(t, vasttest.Options{})
	p := pacedProvider(t, fake, func(c *vast.Config) { c.MinRequestInterval = time.Millisecond; c.StatusTTL = -1 })
	inst := create(t, p, a100, marker("acme-gpu", "learn"), newLeaseKey(t))
	var wg sync.WaitGroup
	for range 10 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, err := p.Get(context.Background(), inst.ID); err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	shows := fake.RequestsFor(vasttest.OpShow)
	limited := count429(fake)[vasttest.OpShow]
	if limited == 0 || limited >= len(shows)/2 {
		t.Fatalf("%d of %d GETs answered 429: want a few, then the learned pace", limited, len(shows))
	}
	last := shows[len(shows)-1]
	if last.Status != 200 {
		t.Fatalf("last GET %d", last.Status)
	}
}

// TestSearchShared: a burst of leases of one class costs one search.
func TestSearchShared(t *testing.T) {
	fake := strictFake(t, vasttest.Options{})
	p := pacedProvider(t, fake, func(c *vast.Config) { c.SearchTTL = time.Second })
	var wg sync.WaitGroup
	for range 20 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if offers, err := p.Offers(context.Background(), a100); err != nil || len(offers) != 2 || !offers[0].Exclusive {
				t.Errorf("offers %+v, %v", offers, err)
			}
		}()
	}
	wg.Wait()
	if n := len(fake.RequestsFor(vasttest.OpSearch)); n != 1 {
		t.Fatalf("%d searches for 20 leases", n)
	}
	// A rented offer is left out of the shared answer at once.
	inst := create(t, p, a100, marker("acme-gpu", "shared"), newLeaseKey(t))
	offers, err := p.Offers(context.Background(), a100)
	if err != nil || len(offers) != 1 || offers[0].ID == inst.ID {
		t.Fatalf("after a create: %+v, %v", offers, err)
	}
}

// TestSlowCreateWaited: a create answered after 30-90 units (scaled) is
// waited for, not given up on at 30: one create call, one host.
func TestSlowCreateWaited(t *testing.T) {
	fake := strictFake(t, vasttest.Options{CreateDelay: func(n int) time.Duration {
		return time.Duration(scale * float64(90*time.Second))
	}})
	p := pacedProvider(t, fake)
	inst := create(t, p, a100, marker("acme-gpu", "slow"), newLeaseKey(t))
	if n := len(fake.RequestsFor(vasttest.OpCreate)); n != 1 || len(fake.Live()) != 1 {
		t.Fatalf("%d creates, %d live", n, len(fake.Live()))
	}
	waitStatus(t, p, inst.ID, provisioner.InstanceRunning)
}

// TestLostCreateAdopted: a create that took effect and never answered is
// found by its label after the create timeout and adopted: the lease has
// its host, and no other offer was tried.
func TestLostCreateAdopted(t *testing.T) {
	fake := strictFake(t, vasttest.Options{LoseCreate: func(n int) bool { return n == 1 }})
	p := pacedProvider(t, fake)
	key := newLeaseKey(t)
	start := time.Now()
	inst := create(t, p, a100, marker("acme-gpu", "lost"), key)
	if waited := time.Since(start); waited < time.Duration(scale*float64(vast.DefaultCreateTimeout)) {
		t.Errorf("gave up on the create after %s", waited)
	}
	live := fake.Live()
	if n := len(fake.RequestsFor(vasttest.OpCreate)); n != 1 || len(live) != 1 || strconv.FormatInt(live[0].ID, 10) != inst.ID {
		t.Fatalf("%d creates, live %+v, adopted %s", n, live, inst.ID)
	}
	running := waitStatus(t, p, inst.ID, provisioner.InstanceRunning)
	if out, err := sshRun(t, running.SSH, key, "echo mine"); err != nil || !strings.Contains(out, "mine") {
		t.Fatalf("ssh: %v %s", err, out)
	}
}

// TestLostCreateUncertain: a lost create whose instance cannot be looked
// up (the listing fails throughout the window) is reported uncertain, not
// as an unavailable offer, so the provisioner does not try the next offer
// as if nothing was rented.
func TestLostCreateUncertain(t *testing.T) {
	fake := strictFake(t, vasttest.Options{LoseCreate: func(int) bool { return true }})
	p := pacedProvider(t, fake, func(c *vast.Config) {
		c.Retry = vast.Retry{MaxRetries: 1, Initial: time.Millisecond, Max: time.Millisecond}
	})
	for range 40 {
		fake.FailNext(vasttest.OpList, vasttest.Unavailable)
	}
	offers, err := p.Offers(context.Background(), a100)
	if err != nil {
		t.Fatal(err)
	}
	_, err = p.Create(context.Background(), provisioner.CreateRequest{Offer: offers[0], Class: a100, Marker: marker("acme-gpu", "unsure"), SSHPublicKey: newLeaseKey(t).authorized})
	if !errors.Is(err, provisioner.ErrCreateUncertain) || errors.Is(err, provisioner.ErrOfferUnavailable) {
		t.Fatalf("err = %v", err)
	}
	if len(fake.Live()) != 1 {
		t.Fatalf("the create took effect: want its host left for the provisioner's sweep")
	}
}

// TestSharedListing: many booting hosts polled at once cost one listing per
// TTL, not one GET each; a host missing from a fresh listing is asked for
// by id once before it is called gone.
func TestSharedListing(t *testing.T) {
	fake := strictFake(t, vasttest.Options{AttachAnyTime: true})
	p := pacedProvider(t, fake, func(c *vast.Config) { c.StatusTTL = 200 * time.Millisecond })
	var insts []*provisioner.Instance
	for i := range 2 {
		insts = append(insts, create(t, p, a100, marker("acme-gpu", "list"+strconv.Itoa(i)), newLeaseKey(t)))
	}
	before := len(fake.RequestsFor(vasttest.OpList))
	var wg sync.WaitGroup
	for range 10 {
		for _, in := range insts {
			wg.Add(1)
			go func() {
				defer wg.Done()
				if _, err := p.Get(context.Background(), in.ID); err != nil {
					t.Error(err)
				}
			}()
		}
	}
	wg.Wait()
	if n := len(fake.RequestsFor(vasttest.OpList)) - before; n != 1 {
		t.Errorf("%d listings for 20 concurrent Gets", n)
	}
	if n := len(fake.RequestsFor(vasttest.OpShow)); n != 0 {
		t.Errorf("%d GETs by id", n)
	}
	// Destroyed behind the provider's back: a fresh listing lacks it, one
	// GET confirms it gone.
	id := insts[0].ID
	n, _ := strconv.ParseInt(id, 10, 64)
	if err := p.Client().DestroyInstance(context.Background(), n); err != nil {
		t.Fatal(err)
	}
	time.Sleep(250 * time.Millisecond)
	if _, err := p.Get(context.Background(), id); !errors.Is(err, provisioner.ErrNotFound) {
		t.Fatalf("Get(destroyed) = %v", err)
	}
	if n := len(fake.RequestsFor(vasttest.OpShow)); n != 1 {
		t.Errorf("%d GETs to confirm a host gone, want 1", n)
	}
}
