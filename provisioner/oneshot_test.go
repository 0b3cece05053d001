package provisioner_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/crabbox/crabbox-runner/provisioner"
)

func oneShot(t *testing.T) (*provisioner.Provisioner, *memProvider, *memGitHub, *memBootstrapper) {
	t.Helper()
	prov, gh := newMemProvider(), newMemGitHub()
	boot := &memBootstrapper{gh: gh}
	p, err := provisioner.New(provisioner.Config{
		Deployment: "act", Classes: []provisioner.Class{testClass()},
		Providers: map[string]provisioner.Provider{"mem": prov}, GitHub: gh, Bootstrapper: boot,
		PollInterval: 5 * time.Millisecond, Logger: testLogger(t),
		Endpoints: provisioner.EndpointPolicy{AllowPrivate: map[string]bool{"mem": true}},
	})
	if err != nil {
		t.Fatal(err)
	}
	return p, prov, gh, boot
}

func oneShotReq(timeout time.Duration) provisioner.OneShotRequest {
	return provisioner.OneShotRequest{
		LeaseID: "lone", Class: testClass(), Scope: provisioner.Scope{Repo: "acme/ml"},
		RunnerName: "crabbox-act-lone", Labels: []string{"crabbox-77-1-lone"},
		Expires: time.Now().Add(time.Hour), Timeout: timeout,
	}
}

func TestLeaseNowAndReleaseNow(t *testing.T) {
	p, prov, gh, _ := oneShot(t)
	var lines []string
	req := oneShotReq(10 * time.Second)
	req.Progress = func(f string, a ...any) { lines = append(lines, f) }
	l, err := p.LeaseNow(context.Background(), req)
	if err != nil {
		t.Fatal(err)
	}
	if l.State != provisioner.StateIdle || l.RunnerID == 0 || l.InstanceID == "" || l.PricePerHour != 1.1 {
		t.Fatalf("lease %+v", l)
	}
	if r, _ := gh.Runner(context.Background(), l.Scope, l.RunnerID); r == nil || !r.Online() || r.Labels[0] != "crabbox-77-1-lone" {
		t.Fatalf("runner %+v", r)
	}
	if len(lines) < 4 {
		t.Fatalf("progress: %v", lines)
	}
	found, inst, err := p.FindLease(context.Background(), "lone")
	if err != nil || inst.ID != l.InstanceID || found.Provider != "mem" || found.ExpiresAt.IsZero() {
		t.Fatalf("FindLease: %+v %+v %v", found, inst, err)
	}
	// Stop knows only the lease id, the scope and the runner name.
	stop := &provisioner.Lease{ID: "lone", Scope: l.Scope, RunnerName: l.RunnerName}
	for i := 0; i < 2; i++ { // idempotent
		if err := p.ReleaseNow(context.Background(), stop); err != nil {
			t.Fatal(err)
		}
	}
	if live, _, _ := prov.counts(); live != 0 || gh.live() != 0 {
		t.Fatalf("left: %d instances, %d runners", live, gh.live())
	}
	if _, _, err := p.FindLease(context.Background(), "lone"); !errors.Is(err, provisioner.ErrNotFound) {
		t.Fatalf("FindLease after release: %v", err)
	}
}

func TestLeaseNowMovesOnFromABadHost(t *testing.T) {
	p, prov, gh, boot := oneShot(t)
	boot.gpuBad = func(_ provisioner.Endpoint, n int) bool { return n == 1 }
	l, err := p.LeaseNow(context.Background(), oneShotReq(10*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	if live, created, destroyed := prov.counts(); live != 1 || created != 2 || destroyed != 1 {
		t.Fatalf("instances live %d created %d destroyed %d", live, created, destroyed)
	}
	if l.OfferID != "o-dear" || gh.live() != 1 {
		t.Fatalf("took %s with %d runners", l.OfferID, gh.live())
	}
}

func TestLeaseNowFailureLeavesNothing(t *testing.T) {
	p, prov, gh, _ := oneShot(t)
	prov.behave = func(n int) memBehavior { return memBehavior{neverBoot: true} }
	_, err := p.LeaseNow(context.Background(), oneShotReq(300*time.Millisecond))
	if err == nil || !strings.Contains(err.Error(), "timeout") {
		t.Fatalf("err %v", err)
	}
	if live, created, _ := prov.counts(); live != 0 || created == 0 || gh.live() != 0 {
		t.Fatalf("left: %d instances of %d, %d runners", live, created, gh.live())
	}
}

// A host without a runner online within the class's boot timeout is
// destroyed and the next offer tried while the lease's timeout still runs:
// a never-booting host does not hold the start until it fails.
func TestLeaseNowReplacesAHostPastItsBootTimeout(t *testing.T) {
	p, prov, gh, _ := oneShot(t)
	prov.behave = func(n int) memBehavior { return memBehavior{neverBoot: n == 1} }
	var mu sync.Mutex
	var lines []string
	req := oneShotReq(10 * time.Second)
	req.Class.BootTimeout = 200 * time.Millisecond
	req.Progress = func(f string, a ...any) {
		mu.Lock()
		lines = append(lines, fmt.Sprintf(f, a...))
		mu.Unlock()
	}
	began := time.Now()
	l, err := p.LeaseNow(context.Background(), req)
	if err != nil {
		t.Fatal(err)
	}
	if took := time.Since(began); took > 5*time.Second {
		t.Fatalf("took %s: the first host was held to the lease's timeout", took)
	}
	if live, created, destroyed := prov.counts(); l.InstanceID != "i-2" || live != 1 || created != 2 || destroyed != 1 || gh.live() != 1 {
		t.Fatalf("lease on %s; instances live %d created %d destroyed %d; %d runners", l.InstanceID, live, created, destroyed, gh.live())
	}
	if !said(lines, "offer o-cheap failed: host not reachable over SSH (last: instance i-1 is pending): boot timeout: no runner online 200ms after this host's creation") {
		t.Fatalf("progress: %q", lines)
	}
	// The never-booting host's machine is avoided.
	if l.OfferID != "o-dear" {
		t.Fatalf("second host on %s", l.OfferID)
	}
}

// The boot timeout runs out for every host: the lease fails at its own
// timeout or its attempts, with nothing left behind.
func TestLeaseNowEveryHostPastItsBootTimeout(t *testing.T) {
	p, prov, gh, _ := oneShot(t)
	prov.behave = func(n int) memBehavior { return memBehavior{neverBoot: true} }
	req := oneShotReq(10 * time.Second)
	req.Class.BootTimeout = 100 * time.Millisecond
	req.Attempts = 2
	_, err := p.LeaseNow(context.Background(), req)
	if err == nil || !strings.Contains(err.Error(), "boot timeout: no runner online 100ms after this host's creation") || !strings.Contains(err.Error(), "tried: mem o-cheap: host not reachable over SSH (last: instance i-1 is pending): boot timeout") {
		t.Fatalf("err %v", err)
	}
	if live, created, _ := prov.counts(); live != 0 || created != 2 || gh.live() != 0 {
		t.Fatalf("left: %d instances of %d, %d runners", live, created, gh.live())
	}
}

// The boot timeout runs from the host's creation, as serve's boot deadline
// does: a create call held by the provider's pace is not boot time.
func TestLeaseNowBootTimeoutStartsAtTheCreation(t *testing.T) {
	p, prov, _, _ := oneShot(t)
	prov.behave = func(n int) memBehavior { return memBehavior{createTook: 300 * time.Millisecond} }
	req := oneShotReq(10 * time.Second)
	req.Class.BootTimeout = 200 * time.Millisecond
	l, err := p.LeaseNow(context.Background(), req)
	if err != nil {
		t.Fatal(err)
	}
	if live, created, _ := prov.counts(); l.InstanceID != "i-1" || live != 1 || created != 1 {
		t.Fatalf("lease on %s; %d live of %d created", l.InstanceID, live, created)
	}
}
