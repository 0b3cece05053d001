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

// hedgedReq is a one-shot request whose class hedges after hedgeAfter; its
// progress lines are collected.
func hedgedReq(timeout, hedgeAfter time.Duration) (provisioner.OneShotRequest, func() []string) {
	req := oneShotReq(timeout)
	req.Class.HedgeAfter = hedgeAfter
	var mu sync.Mutex
	var lines []string
	req.Progress = func(f string, a ...any) {
		mu.Lock()
		lines = append(lines, fmt.Sprintf(f, a...))
		mu.Unlock()
	}
	return req, func() []string {
		mu.Lock()
		defer mu.Unlock()
		return append([]string(nil), lines...)
	}
}

func said(lines []string, s string) bool {
	for _, l := range lines {
		if strings.Contains(l, s) {
			return true
		}
	}
	return false
}

// waitFor polls cond until it holds or a few seconds pass.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

func TestLeaseNowHedgeWinsOverANeverBootingHost(t *testing.T) {
	p, prov, gh, _ := oneShot(t)
	prov.behave = func(n int) memBehavior { return memBehavior{neverBoot: n == 1} }
	req, lines := hedgedReq(10*time.Second, 50*time.Millisecond)
	var races []provisioner.RaceReport
	req.Raced = func(r provisioner.RaceReport) { races = append(races, r) }
	l, err := p.LeaseNow(context.Background(), req)
	if err != nil {
		t.Fatal(err)
	}
	if len(races) != 1 || !races[0].HedgeWon || races[0].LoserInstance != "i-1" {
		t.Fatalf("race reports %+v", races)
	}
	live, created, destroyed := prov.counts()
	if l.InstanceID != "i-2" || live != 1 || created != 2 || destroyed != 1 || prov.peak > 2 {
		t.Fatalf("lease on %s; instances live %d created %d destroyed %d, at most %d at once", l.InstanceID, live, created, destroyed, prov.peak)
	}
	// The hedge is on the other machine, and the lease keeps its names.
	if l.OfferID != "o-dear" || l.ID != "lone" || l.RunnerName != "crabbox-act-lone" || l.HedgedAt.IsZero() {
		t.Fatalf("lease %+v", l)
	}
	if gh.live() != 1 || len(gh.jits) != 1 {
		t.Fatalf("%d runners, registrations %v", gh.live(), gh.jits)
	}
	if !said(lines(), "starting a second host") || !said(lines(), "the hedge won") || !said(lines(), "hedge: runner crabbox-act-lone online") {
		t.Fatalf("progress: %q", lines())
	}
	// Stop, knowing only the names, finds what is left by the marker.
	if err := p.ReleaseNow(context.Background(), &provisioner.Lease{ID: "lone", Scope: l.Scope, RunnerName: l.RunnerName}); err != nil {
		t.Fatal(err)
	}
	if live, _, _ := prov.counts(); live != 0 || gh.live() != 0 {
		t.Fatalf("left: %d instances, %d runners", live, gh.live())
	}
}

func TestLeaseNowFirstHostWinsAndItsHedgeIsDestroyed(t *testing.T) {
	p, prov, gh, _ := oneShot(t)
	holdFirstUntilHedge(t, prov, memBehavior{neverBoot: true})
	req, lines := hedgedReq(10*time.Second, 20*time.Millisecond)
	var races []provisioner.RaceReport
	req.Raced = func(r provisioner.RaceReport) { races = append(races, r) }
	l, err := p.LeaseNow(context.Background(), req)
	if err != nil {
		t.Fatal(err)
	}
	if len(races) != 1 || races[0].HedgeWon || races[0].LoserInstance != "i-2" || races[0].LoserPricePerHour != 1.9 ||
		races[0].LoserHeld <= 0 || !races[0].HedgedAt.Equal(l.HedgedAt) {
		t.Fatalf("race reports %+v", races)
	}
	// Returned only once the hedge's host is destroyed.
	live, created, destroyed := prov.counts()
	if l.InstanceID != "i-1" || live != 1 || created != 2 || destroyed != 1 {
		t.Fatalf("lease on %s; instances live %d created %d destroyed %d", l.InstanceID, live, created, destroyed)
	}
	if gh.live() != 1 || len(gh.jits) != 1 || l.HedgedAt.IsZero() {
		t.Fatalf("%d runners, registrations %v, hedged at %v", gh.live(), gh.jits, l.HedgedAt)
	}
	if !said(lines(), "the first host won; the hedge is destroyed; its last host (mem i-2)") {
		t.Fatalf("progress: %q", lines())
	}
	// A lane that lost says nothing of failure.
	if said(lines(), "failed") {
		t.Fatalf("progress: %q", lines())
	}
}

func TestLeaseNowFastFirstHostStartsNoHedge(t *testing.T) {
	p, prov, _, _ := oneShot(t)
	req, lines := hedgedReq(10*time.Second, 5*time.Second)
	l, err := p.LeaseNow(context.Background(), req)
	if err != nil {
		t.Fatal(err)
	}
	if _, created, _ := prov.counts(); created != 1 || !l.HedgedAt.IsZero() || said(lines(), "hedge") {
		t.Fatalf("created %d, hedged at %v, progress %q", created, l.HedgedAt, lines())
	}
}

// The runner name is the lease's, and GitHub takes it once: a hedge ready
// while the first host holds it waits, and registers it once the first
// failed and removed its runner.
func TestLeaseNowHedgeRegistersOnceTheFirstLetsGo(t *testing.T) {
	p, prov, gh, boot := oneShot(t)
	req, lines := hedgedReq(10*time.Second, 20*time.Millisecond)
	firstStarts := firstRunnerFailsWhenClosed(boot)
	go func() {
		waitFor(t, "the hedge waiting for the runner name", func() bool { return said(lines(), "hedge: host ready, but the other host registered") })
		close(firstStarts)
	}()
	l, err := p.LeaseNow(context.Background(), req)
	if err != nil {
		t.Fatal(err)
	}
	if l.InstanceID != "i-2" || l.RunnerID != 2 || gh.live() != 1 {
		t.Fatalf("lease on %s with runner %d; %d runners", l.InstanceID, l.RunnerID, gh.live())
	}
	if len(gh.jits) != 2 || gh.jits[0] != gh.jits[1] {
		t.Fatalf("registrations %v", gh.jits)
	}
	if live, _, _ := prov.counts(); live != 1 || prov.peak > 2 {
		t.Fatalf("%d instances live, at most %d at once", live, prov.peak)
	}
}

func TestLeaseNowHedgedFailureLeavesNothing(t *testing.T) {
	p, prov, gh, _ := oneShot(t)
	prov.behave = func(n int) memBehavior { return memBehavior{neverBoot: true} }
	req, _ := hedgedReq(300*time.Millisecond, 50*time.Millisecond)
	_, err := p.LeaseNow(context.Background(), req)
	if err == nil || !strings.Contains(err.Error(), "timeout") || !strings.Contains(err.Error(), "; hedge: ") {
		t.Fatalf("err %v", err)
	}
	if live, created, _ := prov.counts(); live != 0 || created != 2 || gh.live() != 0 || prov.peak > 2 {
		t.Fatalf("left: %d instances of %d (at most %d at once), %d runners", live, created, prov.peak, gh.live())
	}
}

// A hedge whose create call is cut short by the first host's win may have
// rented a host all the same: it is found by the lease's marker and
// destroyed before LeaseNow returns.
func TestLeaseNowDestroysAHedgeWhoseCreateWasCutShort(t *testing.T) {
	p, prov, gh, _ := oneShot(t)
	holdFirstUntilHedge(t, prov, memBehavior{answerOnCancel: true})
	req, _ := hedgedReq(10*time.Second, 20*time.Millisecond)
	l, err := p.LeaseNow(context.Background(), req)
	if err != nil {
		t.Fatal(err)
	}
	if live, created, _ := prov.counts(); l.InstanceID != "i-1" || live != 1 || created != 2 || gh.live() != 1 {
		t.Fatalf("lease on %s; %d instances live of %d, %d runners", l.InstanceID, live, created, gh.live())
	}
}

// holdFirstUntilHedge keeps the first host booting until the hedge's create
// has been called; the hedge's host behaves as given.
func holdFirstUntilHedge(t *testing.T, prov *memProvider, hedge memBehavior) {
	hold := make(chan struct{})
	prov.behave = func(n int) memBehavior {
		if n == 1 {
			return memBehavior{hold: hold}
		}
		return hedge
	}
	go func() {
		waitFor(t, "the hedge's create", func() bool { _, created, _ := prov.counts(); return created == 2 })
		close(hold)
	}()
}

// A host waiting for the runner name the other lane holds is not charged
// that wait against its boot timeout: when the holder fails late, the
// waiting host registers and serves instead of being destroyed for a
// timeout that was not its own.
func TestLeaseNowHedgeWaitingForTheNameKeepsItsBootTime(t *testing.T) {
	p, prov, gh, boot := oneShot(t)
	prov.offers = append(prov.offers, provisioner.Offer{Provider: "mem", ID: "o-mid", GPU: "A100", GPUCount: 1, GPUMemoryGB: 80, PricePerHour: 1.5, MachineID: "m-mid"})
	const bootTimeout = time.Second
	req, lines := hedgedReq(20*time.Second, 50*time.Millisecond)
	req.Class.BootTimeout = bootTimeout
	// i-1 (first lane, o-cheap) boots late and fails its GPU check; the
	// first lane's next host, i-3 (o-dear), registers the name and holds it
	// until the hedge, i-2 (o-mid), has waited for it past the hedge's
	// boot timeout counted from its create; then i-3's runner fails.
	hold1, hold2 := make(chan struct{}), make(chan struct{})
	prov.behave = holdCreates(map[int]chan struct{}{1: hold1, 2: hold2})
	boot.gpuBad = func(_ provisioner.Endpoint, n int) bool { return n == 1 }
	firstStarts := firstRunnerFailsWhenClosed(boot)
	var hedgeCreated time.Time
	go func() {
		waitFor(t, "the hedge's create", func() bool { _, created, _ := prov.counts(); return created == 2 })
		hedgeCreated = time.Now()
		time.Sleep(bootTimeout / 2)
		close(hold1)
		waitFor(t, "the first lane's second host registering", func() bool {
			gh.mu.Lock()
			defer gh.mu.Unlock()
			return len(gh.jits) == 1
		})
		close(hold2)
		waitFor(t, "the hedge waiting for the runner name", func() bool { return said(lines(), "hedge: host ready, but the other host registered") })
		time.Sleep(time.Until(hedgeCreated.Add(bootTimeout + bootTimeout/5)))
		close(firstStarts)
	}()
	l, err := p.LeaseNow(context.Background(), req)
	if err != nil {
		t.Fatalf("%v; progress: %q", err, lines())
	}
	if l.InstanceID != "i-2" || l.RunnerID != 2 || gh.live() != 1 {
		t.Fatalf("lease on %s with runner %d; %d runners; progress: %q", l.InstanceID, l.RunnerID, gh.live(), lines())
	}
	if live, _, _ := prov.counts(); live != 1 || prov.peak > 2 {
		t.Fatalf("%d instances live, at most %d at once", live, prov.peak)
	}
}

// firstRunnerFailsWhenClosed holds the start of the first runner registered
// until the returned channel is closed, and then fails it; every other
// runner starts at once.
func firstRunnerFailsWhenClosed(boot *memBootstrapper) chan struct{} {
	firstStarts, now := make(chan struct{}), make(chan struct{})
	close(now)
	boot.registered = func(id int64) <-chan struct{} {
		if id == 1 {
			return firstStarts
		}
		return now
	}
	boot.failStart = func(id int64) error {
		if id == 1 {
			return errors.New("Runner.Listener exited")
		}
		return nil
	}
	return firstStarts
}
