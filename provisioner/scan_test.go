package provisioner_test

import (
	"context"
	"slices"
	"sync"
	"testing"

	"github.com/crabbox/crabbox-runner/provisioner"
)

// memScanner is a JobScanner that records what each scan was asked to
// look at and reports what the test sets.
type memScanner struct {
	memJobs
	mu2      sync.Mutex
	asked    map[string][][]string // scope key → hot of each scan
	walks    int
	report   []provisioner.JobEvent
	deferred error
}

func (m *memScanner) ScanJobs(ctx context.Context, s provisioner.Scope, hot []string, walk bool) ([]provisioner.JobEvent, error) {
	m.mu2.Lock()
	defer m.mu2.Unlock()
	m.asked[s.Key()] = append(m.asked[s.Key()], slices.Clone(hot))
	if walk {
		m.walks++
	}
	out := m.report
	m.report = nil
	return out, m.deferred
}

func (m *memScanner) lastHot(key string) []string {
	m.mu2.Lock()
	defer m.mu2.Unlock()
	a := m.asked[key]
	if len(a) == 0 {
		return nil
	}
	return a[len(a)-1]
}

// TestReconcileScansOnlyHotRepositories: the scan is asked about the
// repositories where jobs of ours were seen, and about repository scopes,
// not about the rest; what it reports (a queued job, then its start and
// end) drives leases as webhooks would.
func TestReconcileScansOnlyHotRepositories(t *testing.T) {
	src := &memScanner{memJobs: memJobs{jobs: map[int64]provisioner.JobEvent{}, scopes: []provisioner.Scope{{Org: "acme"}}},
		asked: map[string][][]string{}}
	h := newHarness(t, func(c *provisioner.Config) {
		c.Reconcile = provisioner.ReconcileConfig{Interval: -1, GCInterval: -1, Jobs: src,
			Scopes: []provisioner.Scope{{Repo: "bob/tool"}}}
	})
	ctx := context.Background()
	if _, err := h.p.Reconcile(ctx); err != nil {
		t.Fatal(err)
	}
	if got := src.lastHot("org:acme"); len(got) != 0 {
		t.Errorf("idle: the org scan was asked about %v, want nothing", got)
	}
	if got := src.lastHot("repo:bob/tool"); !slices.Equal(got, []string{"bob/tool"}) {
		t.Errorf("a repository scope's scan was asked about %v", got)
	}
	if src.walks != 0 {
		t.Errorf("%d walks without ReconcileConfig.Walk", src.walks)
	}

	// A webhook for a job in acme/ml makes acme/ml hot.
	h.event("queued", 1, "g1")
	if _, err := h.p.Reconcile(ctx); err != nil {
		t.Fatal(err)
	}
	if got := src.lastHot("org:acme"); !slices.Equal(got, []string{"acme/ml"}) {
		t.Errorf("after a job in acme/ml the org scan was asked about %v", got)
	}

	// A job the scan finds (its webhook lost) gets a lease.
	src.mu2.Lock()
	src.report = []provisioner.JobEvent{jobEvent("queued", 2)}
	src.mu2.Unlock()
	rep, err := h.p.Reconcile(ctx)
	if err != nil || rep.MissedJobs != 1 {
		t.Fatalf("scan that found a job: %+v, %v", rep, err)
	}
	h.waitFor("two leases", func() bool { return len(h.leases()) == 2 })
}

// TestReconcileDefersOnBudget: a scan refused for budget is no error, the
// report says deferred, and the next pass goes on.
func TestReconcileDefersOnBudget(t *testing.T) {
	src := &memScanner{memJobs: memJobs{jobs: map[int64]provisioner.JobEvent{}, scopes: []provisioner.Scope{{Org: "acme"}}},
		asked: map[string][][]string{}, deferred: &provisioner.BudgetError{Deferred: true, Reason: "reserve"}}
	h := newHarness(t, func(c *provisioner.Config) {
		c.Reconcile = provisioner.ReconcileConfig{Interval: -1, GCInterval: -1, Jobs: src, Walk: true}
	})
	ctx := context.Background()
	rep, err := h.p.Reconcile(ctx)
	if err != nil {
		t.Fatalf("a deferred scan is no error: %v", err)
	}
	if !rep.Deferred || src.walks != 1 {
		t.Fatalf("report %+v, %d walks", rep, src.walks)
	}
	src.mu2.Lock()
	src.deferred = nil
	src.report = []provisioner.JobEvent{jobEvent("queued", 7)}
	src.mu2.Unlock()
	rep, err = h.p.Reconcile(ctx)
	if err != nil || rep.Deferred || rep.MissedJobs != 1 {
		t.Fatalf("after the reset: %+v, %v", rep, err)
	}
}
