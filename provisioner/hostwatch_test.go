package provisioner_test

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/crabbox/crabbox-runner/provisioner"
)

type lossRecorder struct {
	phaseRecorder
	mu     sync.Mutex
	lost   map[string]int
	served map[string]time.Duration
}

func (r *lossRecorder) HostLost(provider, reason string, served time.Duration) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.lost == nil {
		r.lost, r.served = map[string]int{}, map[string]time.Duration{}
	}
	r.lost[provider+"/"+reason]++
	r.served[provider+"/"+reason] += served
}

func (r *lossRecorder) count(key string) (int, time.Duration) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.lost[key], r.served[key]
}

// The host watch: a reconcile pass lists each provider's hosts once and
// releases every idle or busy lease whose host is lost, with LostReason
// set in the same transaction as the release and the host destroyed; the
// machine is avoided when the machine is to blame (not for the market's
// outbid or preemption, nor for a host gone by an unknown hand).
func TestHostWatchReleasesLostHosts(t *testing.T) {
	cases := []struct {
		status provisioner.InstanceStatus
		reason string
		bad    bool
		busy   bool
	}{
		{provisioner.InstanceOutbid, provisioner.LostOutbid, false, true},
		{provisioner.InstancePreempted, provisioner.LostPreempted, false, false},
		{provisioner.InstanceStopped, provisioner.LostStopped, true, true},
		{provisioner.InstanceFailed, provisioner.LostFailed, true, false},
		{provisioner.InstanceGone, provisioner.LostGone, false, true},
	}
	for _, tc := range cases {
		t.Run(string(tc.status), func(t *testing.T) {
			obs := &lossRecorder{}
			h := newHarness(t, func(c *provisioner.Config) { c.Observer = obs })
			ctx := context.Background()
			h.event("queued", 1, "g1")
			h.waitFor("idle", func() bool { return len(h.leases(provisioner.StateIdle)) == 1 })
			l := h.leases()[0]
			if tc.busy {
				h.event("in_progress", 1, "g2", func(e *provisioner.JobEvent) { e.RunnerName = l.RunnerName })
				h.waitFor("busy", func() bool { return len(h.leases(provisioner.StateBusy)) == 1 })
			}
			// A pass with every host well changes nothing.
			lists0, _ := h.prov.requests()
			if rep, err := h.p.Reconcile(ctx); err != nil || rep.HostsLost != 0 {
				t.Fatalf("healthy pass: %+v %v", rep, err)
			}
			if lists, _ := h.prov.requests(); lists != lists0+1 {
				t.Fatalf("a pass made %d listings, want 1", lists-lists0)
			}
			h.prov.lose(l.InstanceID, tc.status)
			rep, err := h.p.Reconcile(ctx)
			if err != nil || rep.HostsLost != 1 || rep.RunnerGone != 0 {
				t.Fatalf("pass after the loss: %+v %v", rep, err)
			}
			got, _ := h.store.Lease(ctx, l.ID)
			if got.LostReason != tc.reason || got.ReleaseReason != "host lost: "+tc.reason {
				t.Fatalf("lease: lost %q release %q, want %q", got.LostReason, got.ReleaseReason, tc.reason)
			}
			h.waitFor("released", func() bool {
				got, _ := h.store.Lease(ctx, l.ID)
				return got.State == provisioner.StateReleased
			})
			if _, err := h.prov.Get(ctx, l.InstanceID); err == nil {
				t.Fatalf("host %s not destroyed", l.InstanceID)
			}
			if n, served := obs.count("mem/" + tc.reason); n != 1 || served <= 0 {
				t.Fatalf("observer: %d lost, %v served", n, served)
			}
			// The next lease (the idle lease's job still queued, or a new
			// job) goes to the dearer machine only when the cheap one was
			// marked bad.
			if tc.busy {
				h.event("queued", 2, "g3")
			}
			h.waitFor("a second lease", func() bool {
				for _, x := range h.leases() {
					if x.ID != l.ID && x.OfferID != "" {
						return true
					}
				}
				return false
			})
			for _, x := range h.leases() {
				if x.ID == l.ID {
					continue
				}
				if want := map[bool]string{true: "o-dear", false: "o-cheap"}[tc.bad]; x.OfferID != want {
					t.Fatalf("next lease took %s, want %s (machine bad: %v)", x.OfferID, want, tc.bad)
				}
			}
		})
	}
}

// An unreachable host may be a heartbeat blip: it counts as lost only
// once it has stayed unreachable for the grace, and a host that answers
// again starts afresh.
func TestHostWatchUnreachableGrace(t *testing.T) {
	grace := 300 * time.Millisecond
	h := newHarness(t, func(c *provisioner.Config) { c.Reconcile.UnreachableGrace = grace })
	ctx := context.Background()
	h.event("queued", 1, "g1")
	h.waitFor("idle", func() bool { return len(h.leases(provisioner.StateIdle)) == 1 })
	l := h.leases()[0]
	h.prov.lose(l.InstanceID, provisioner.InstanceUnreachable)
	if rep, err := h.p.Reconcile(ctx); err != nil || rep.HostsLost != 0 {
		t.Fatalf("first sight: %+v %v", rep, err)
	}
	// Back before the grace ends: the mark goes.
	h.prov.lose(l.InstanceID, provisioner.InstanceRunning)
	time.Sleep(grace)
	if rep, err := h.p.Reconcile(ctx); err != nil || rep.HostsLost != 0 {
		t.Fatalf("back again: %+v %v", rep, err)
	}
	h.prov.lose(l.InstanceID, provisioner.InstanceUnreachable)
	if rep, err := h.p.Reconcile(ctx); err != nil || rep.HostsLost != 0 {
		t.Fatalf("unreachable anew: %+v %v", rep, err)
	}
	time.Sleep(grace)
	if rep, err := h.p.Reconcile(ctx); err != nil || rep.HostsLost != 1 {
		t.Fatalf("after the grace: %+v %v", rep, err)
	}
	got, _ := h.store.Lease(ctx, l.ID)
	if got.LostReason != provisioner.LostUnreachable {
		t.Fatalf("lost reason %q", got.LostReason)
	}
}

// A provider whose listing fails releases nothing and does not fail the
// pass (a retried pass would repeat its GitHub scans); the next pass that
// lists finds the lost host.
func TestHostWatchListingFails(t *testing.T) {
	h := newHarness(t, nil)
	ctx := context.Background()
	h.event("queued", 1, "g1")
	h.waitFor("idle", func() bool { return len(h.leases(provisioner.StateIdle)) == 1 })
	l := h.leases()[0]
	h.prov.lose(l.InstanceID, provisioner.InstancePreempted)
	h.prov.mu.Lock()
	h.prov.listErr = errors.New("429 too many requests")
	h.prov.mu.Unlock()
	if rep, err := h.p.Reconcile(ctx); err != nil || rep.HostsLost != 0 {
		t.Fatalf("pass with a failed listing: %+v %v", rep, err)
	}
	h.prov.mu.Lock()
	h.prov.listErr = nil
	h.prov.mu.Unlock()
	if rep, err := h.p.Reconcile(ctx); err != nil || rep.HostsLost != 1 {
		t.Fatalf("next pass: %+v %v", rep, err)
	}
}
