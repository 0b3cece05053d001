package provisioner_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/crabbox/crabbox-runner/provisioner"
)

// liar is a provider whose listing also returns instances that are not
// ours, as a buggy client could: gc must still leave them alone.
type liar struct{ *memProvider }

func (l liar) ListOwned(ctx context.Context, deployment string) ([]*provisioner.Instance, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []*provisioner.Instance
	for _, mi := range l.instances { // everything, any deployment, tagged or not
		inst := mi.inst
		out = append(out, &inst)
	}
	return out, nil
}

func (m *memProvider) add(marker provisioner.Marker) string {
	inst, err := m.Create(context.Background(), provisioner.CreateRequest{Marker: marker})
	if err != nil {
		panic(err)
	}
	return inst.ID
}

func (m *memProvider) has(id string) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	_, ok := m.instances[id]
	return ok
}

func (g *memGitHub) addRunner(name, status string, busy bool) int64 {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.seq++
	g.runners[g.seq] = &provisioner.Runner{ID: g.seq, Name: name, Status: status, Busy: busy}
	return g.seq
}

func (g *memGitHub) hasRunner(id int64) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	_, ok := g.runners[id]
	return ok
}

func TestGCFromMarkersAlone(t *testing.T) {
	prov, gh := newMemProvider(), newMemGitHub()
	p, err := provisioner.New(provisioner.Config{
		Deployment: "act", Providers: map[string]provisioner.Provider{"mem": liar{prov}},
		GitHub: gh, Bootstrapper: &memBootstrapper{gh: gh}, Logger: testLogger(t),
	})
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	expired := prov.add(provisioner.Marker{Deployment: "act", LeaseID: "lold", Expires: now.Add(-time.Minute)})
	current := prov.add(provisioner.Marker{Deployment: "act", LeaseID: "lnew", Expires: now.Add(time.Hour)})
	foreign := prov.add(provisioner.Marker{Deployment: "someone-else", LeaseID: "lx", Expires: now.Add(-time.Hour)})
	untagged := prov.add(provisioner.Marker{})
	scope := provisioner.Scope{Repo: "acme/ml"}
	gone := gh.addRunner("crabbox-act-lgone", "offline", false)    // its host is gone
	booting := gh.addRunner("crabbox-act-lnew", "offline", false)  // its host exists
	online := gh.addRunner("crabbox-act-lonline", "online", false) // online: leave it
	busy := gh.addRunner("crabbox-act-lbusy", "offline", true)     // busy: leave it
	other := gh.addRunner("crabbox-other-lgone", "offline", false) // another deployment's
	manual := gh.addRunner("gpu-box-1", "offline", false)          // not ours at all

	plan, err := p.PlanGC(context.Background(), provisioner.GCOptions{Scopes: []provisioner.Scope{scope}})
	if err != nil {
		t.Fatal(err)
	}
	// Dry run: nothing changed.
	if !prov.has(expired) || !gh.hasRunner(gone) {
		t.Fatal("planning changed something")
	}
	kinds := map[string]int{}
	for _, a := range plan.Actions {
		kinds[a.Kind]++
	}
	if len(plan.Actions) != 2 || kinds[provisioner.GCDestroyInstance] != 1 || kinds[provisioner.GCRemoveRunner] != 1 {
		t.Fatalf("plan %+v", plan.Actions)
	}
	if failed := p.ApplyGC(context.Background(), plan); failed != 0 {
		t.Fatalf("%d actions failed: %+v", failed, plan.Actions)
	}
	if prov.has(expired) || !prov.has(current) || !prov.has(foreign) || !prov.has(untagged) {
		t.Fatal("gc destroyed the wrong instances")
	}
	if gh.hasRunner(gone) || !gh.hasRunner(booting) || !gh.hasRunner(online) || !gh.hasRunner(busy) || !gh.hasRunner(other) || !gh.hasRunner(manual) {
		t.Fatal("gc removed the wrong runners")
	}
}

func TestGCWithTheStore(t *testing.T) {
	h := newHarness(t, nil)
	ctx := context.Background()
	// A lease that ran and was released, whose host somehow survived; an
	// instance whose lease the store never heard of; a live lease whose
	// host vanished behind our back.
	h.event("queued", 1, "g1")
	h.waitFor("idle", func() bool { return len(h.leases(provisioner.StateIdle)) == 1 })
	live := h.leases()[0]
	survivor := h.prov.add(provisioner.Marker{Deployment: "test", LeaseID: "lreleased", Expires: time.Now().Add(time.Hour)})
	orphan := h.prov.add(provisioner.Marker{Deployment: "test", LeaseID: "lnobody", Expires: time.Now().Add(time.Hour)})
	if err := h.store.InTx(ctx, func(tx provisioner.Tx) error {
		l := &provisioner.Lease{ID: "lreleased", Class: "a100", Scope: live.Scope, State: provisioner.StatePending, RunnerName: "crabbox-test-lreleased"}
		if err := tx.InsertLease(ctx, l); err != nil {
			return err
		}
		if _, err := tx.Transition(ctx, l.ID, provisioner.StateReleasing, "test", nil); err != nil {
			return err
		}
		_, err := tx.Transition(ctx, l.ID, provisioner.StateReleased, "test", nil)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	h.prov.Destroy(ctx, &provisioner.Instance{ID: live.InstanceID}) // vanished

	plan, err := h.p.PlanGC(ctx, provisioner.GCOptions{})
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{survivor: provisioner.GCDestroyInstance, orphan: provisioner.GCDestroyInstance, live.InstanceID: provisioner.GCFailLease}
	if len(plan.Actions) != len(want) {
		t.Fatalf("plan %+v", plan.Actions)
	}
	for _, a := range plan.Actions {
		if want[a.InstanceID] != a.Kind {
			t.Fatalf("unexpected %+v", a)
		}
	}
	if failed := h.p.ApplyGC(ctx, plan); failed != 0 {
		t.Fatalf("%d failed: %+v", failed, plan.Actions)
	}
	if h.prov.has(survivor) || h.prov.has(orphan) {
		t.Fatal("left over instances survived gc")
	}
	// The lease whose host vanished is released, and its job (still
	// queued) gets a new lease.
	h.waitFor("vanished lease released and replaced", func() bool {
		l, _ := h.store.Lease(ctx, live.ID)
		return l.State == provisioner.StateReleased && len(h.leases(provisioner.StateIdle)) == 1
	})
}

// A lease that gets its instance while gc's listing is on the wire is
// missing from that listing without being gone: gc must not fail it (it
// did, and destroyed a host about to serve: TestServeHedgeFirstWins saw a
// hedge "vanish" this way under CI load).
func TestGCLeavesALeaseCreatedDuringItsListing(t *testing.T) {
	h := newHarness(t, nil)
	ctx := context.Background()
	hold := make(chan struct{})
	defer close(hold)
	h.prov.behave = func(int) memBehavior { return memBehavior{hold: hold} }
	var once sync.Once
	h.prov.mu.Lock()
	h.prov.afterList = func() {
		once.Do(func() {
			h.event("queued", 1, "g1")
			h.waitFor("the lease booting on its instance", func() bool {
				ls := h.leases(provisioner.StateBooting)
				return len(ls) == 1 && ls[0].InstanceID != ""
			})
		})
	}
	h.prov.mu.Unlock()
	plan, err := h.p.PlanGC(ctx, provisioner.GCOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if len(h.leases(provisioner.StateBooting)) != 1 {
		t.Fatalf("the lease was not booting during the plan: %s", h.describe())
	}
	for _, a := range plan.Actions {
		t.Errorf("planned %s for %s: %s", a.Kind, a.LeaseID, a.Reason)
	}
}

// A listing that lags (the instance there when asked for by id, absent
// from the list) does not fail a lease either: gc asks by id first, and
// says in the action why it did nothing.
func TestGCAsksByIDBeforeFailingALease(t *testing.T) {
	h := newHarness(t, nil)
	ctx := context.Background()
	h.event("queued", 1, "g1")
	h.waitFor("idle", func() bool { return len(h.leases(provisioner.StateIdle)) == 1 })
	live := h.leases()[0]
	h.prov.mu.Lock()
	h.prov.unlisted = map[string]bool{live.InstanceID: true}
	gets := h.prov.gets
	h.prov.mu.Unlock()

	plan, err := h.p.PlanGC(ctx, provisioner.GCOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if len(plan.Actions) != 1 || plan.Actions[0].Kind != provisioner.GCFailLease {
		t.Fatalf("plan %+v, want the lease's failure planned from the listing", plan.Actions)
	}
	if failed := h.p.ApplyGC(ctx, plan); failed != 0 {
		t.Fatalf("%d failed: %+v", failed, plan.Actions)
	}
	a := plan.Actions[0]
	if a.Done || a.Skipped == "" {
		t.Errorf("action done %v, skipped %q: want skipped", a.Done, a.Skipped)
	}
	h.prov.mu.Lock()
	asked := h.prov.gets - gets
	h.prov.mu.Unlock()
	if asked < 1 {
		t.Error("gc did not ask for the instance by id")
	}
	if l, _ := h.store.Lease(ctx, live.ID); l.State != provisioner.StateIdle || l.ReleaseReason != "" {
		t.Errorf("lease %s %s (%q): want idle", l.ID, l.State, l.ReleaseReason)
	}
	if !h.prov.has(live.InstanceID) {
		t.Error("the instance was destroyed")
	}
}
