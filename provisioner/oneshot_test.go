package provisioner_test

import (
	"context"
	"errors"
	"strings"
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
