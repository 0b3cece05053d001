package provisioner_test

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/crabbox/crabbox-runner/provisioner"
)

func TestMatchJobPolicy(t *testing.T) {
	private := provisioner.Class{Name: "a100", Labels: []string{"self-hosted", "linux", "x64", "a100"},
		Repositories: []string{"acme/*", "Other/ML"}}
	public := provisioner.Class{Name: "a100-public", Labels: []string{"self-hosted", "a100"}, PublicRepositories: true,
		Repositories: []string{"acme/open"}}
	classes := []provisioner.Class{private, public}
	for _, tc := range []struct {
		name        string
		labels      []string
		repo, vis   string
		wantClass   string
		wantRefusal provisioner.UnservableKind
	}{
		{"private repo of an allowed owner", []string{"self-hosted", "a100"}, "ACME/ml", "private", "a100", ""},
		{"internal counts as not public", []string{"a100"}, "acme/ml", "internal", "a100", ""},
		{"named repository, any case", []string{"a100"}, "other/ml", "private", "a100", ""},
		{"self-hosted alone", []string{"self-hosted"}, "acme/ml", "private", "", provisioner.RefusedDefaultLabels},
		{"only default labels", []string{"self-hosted", "Linux", "X64"}, "acme/ml", "private", "", provisioner.RefusedDefaultLabels},
		{"repository outside the list", []string{"a100"}, "evil/ml", "private", "", provisioner.RefusedRepository},
		{"public by default refused", []string{"a100"}, "acme/ml", "public", "", provisioner.RefusedPublic},
		{"unknown visibility is public", []string{"a100"}, "acme/ml", "", "", provisioner.RefusedPublic},
		{"public, a later class allows it", []string{"a100"}, "acme/open", "public", "a100-public", ""},
		{"a label of no class", []string{"ubuntu-latest"}, "acme/ml", "private", "", ""},
		{"a label the class lacks", []string{"a100", "h100"}, "acme/ml", "private", "", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, r := provisioner.MatchJob(classes, tc.labels, tc.repo, tc.vis)
			gotClass, gotKind := "", provisioner.UnservableKind("")
			if c != nil {
				gotClass = c.Name
			}
			if r != nil {
				gotKind = r.Kind
				if r.Reason == "" {
					t.Error("refusal without a reason")
				}
			}
			if gotClass != tc.wantClass || gotKind != tc.wantRefusal {
				t.Fatalf("class %q refusal %q (%+v); want %q and %q", gotClass, gotKind, r, tc.wantClass, tc.wantRefusal)
			}
		})
	}
	// The refusal of the first class whose labels fit is the one given.
	_, r := provisioner.MatchJob(classes, []string{"a100"}, "acme/ml", "public")
	if r == nil || r.Class != "a100" {
		t.Fatalf("refusal names class %+v, want a100", r)
	}
}

func TestRepoPatterns(t *testing.T) {
	for _, p := range []string{"acme/ml", "acme/*", "my-org/repo.name_2"} {
		if err := provisioner.CheckRepoPattern(p); err != nil {
			t.Errorf("%q: %v", p, err)
		}
	}
	for _, p := range []string{"acme", "*/ml", "acme/ml/x", "acme/m*", "/ml", "acme/", "ac me/ml", "*"} {
		if err := provisioner.CheckRepoPattern(p); err == nil {
			t.Errorf("%q accepted", p)
		}
	}
	if !provisioner.RepoMatches("Acme/*", "acme/anything") || provisioner.RepoMatches("acme/*", "acmex/ml") || provisioner.RepoMatches("acme/ml", "acme/ml2") {
		t.Fatal("repository matching")
	}
}

// stubGroups is a RunnerGroups whose answer the test sets.
type stubGroups struct {
	mu     sync.Mutex
	ok     bool
	reason string
	err    error
	asked  int
}

func (g *stubGroups) GroupServes(ctx context.Context, scope provisioner.Scope, repo, visibility string) (bool, string, error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.asked++
	return g.ok, g.reason, g.err
}

func (g *stubGroups) set(ok bool, reason string, err error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.ok, g.reason, g.err = ok, reason, err
}

func TestRefusedJobGetsNoLeaseAndIsRecordedOnce(t *testing.T) {
	h := newHarness(t, nil)
	pub := func(e *provisioner.JobEvent) { e.Visibility = "public" }
	if out := h.event("queued", 1, "g1", pub); out != provisioner.Ignored {
		t.Fatalf("public job: %v, want ignored", out)
	}
	if out := h.event("queued", 2, "g2", func(e *provisioner.JobEvent) { e.Labels = []string{"self-hosted"} }); out != provisioner.Ignored {
		t.Fatalf("self-hosted alone: %v", out)
	}
	h.event("queued", 1, "g3", pub) // the same job again: not a second refusal
	if n := len(h.leases()); n != 0 {
		t.Fatalf("%d leases for refused jobs", n)
	}
	jobs, err := h.store.UnservableJobs(context.Background(), provisioner.UnservableFilter{})
	if err != nil || len(jobs) != 2 {
		t.Fatalf("refused jobs recorded: %d %v, want 2", len(jobs), err)
	}
	kinds := map[int64]provisioner.UnservableKind{}
	for _, j := range jobs {
		kinds[j.ID] = j.Unservable.Kind
	}
	if kinds[1] != provisioner.RefusedPublic || kinds[2] != provisioner.RefusedDefaultLabels {
		t.Fatalf("kinds: %v", kinds)
	}
	// It ran elsewhere: it leaves the list.
	h.event("in_progress", 1, "g4", pub)
	if jobs, _ := h.store.UnservableJobs(context.Background(), provisioner.UnservableFilter{}); len(jobs) != 1 {
		t.Fatalf("after in_progress: %d unservable jobs, want 1", len(jobs))
	}
}

func TestRunnerGroupThatCannotServeGetsNoLease(t *testing.T) {
	groups := &stubGroups{reason: "runner group Default does not allow public repositories"}
	h := newHarness(t, func(c *provisioner.Config) { c.RunnerGroups = groups })
	if out := h.event("queued", 1, "g1"); out != provisioner.Accepted {
		t.Fatalf("out %v", out)
	}
	time.Sleep(200 * time.Millisecond)
	if n := len(h.leases()); n != 0 {
		t.Fatalf("%d leases for a job the runner group cannot serve", n)
	}
	j, err := h.store.Job(context.Background(), 1, 1)
	if err != nil || j.Unservable.Kind != provisioner.UnservableGroup || j.Unservable.Reason != groups.reason {
		t.Fatalf("job: %+v %v", j, err)
	}
	// A repository-scope job is not asked about: its runner serves it.
	asked := groups.asked
	h.event("queued", 2, "g2", func(e *provisioner.JobEvent) { e.Org = "" })
	if groups.asked != asked {
		t.Fatal("runner group asked for a repository runner")
	}
	h.waitFor("repo-scope lease", func() bool { return len(h.leases()) == 1 })

	// An error: no lease either, reason says so; the group then serves it
	// and the next reconcile leases.
	groups.set(false, "", errors.New("HTTP 502"))
	h.event("queued", 3, "g3")
	j, _ = h.store.Job(context.Background(), 3, 1)
	if j.Unservable.Kind != provisioner.UnservableGroupError || j.Unservable.Reason != "runner group unknown: HTTP 502" {
		t.Fatalf("job 3: %+v", j.Unservable)
	}
	groups.set(true, "", nil)
	if _, err := h.p.Reconcile(context.Background()); err != nil {
		t.Fatal(err)
	}
	h.waitFor("leases once the group serves", func() bool { return len(h.leases()) == 3 })
	j, _ = h.store.Job(context.Background(), 1, 1)
	if j.Unservable.Kind != "" {
		t.Fatalf("mark not cleared: %+v", j.Unservable)
	}
}

func TestRedeliveryClearsTheMark(t *testing.T) {
	groups := &stubGroups{reason: "not selected"}
	h := newHarness(t, func(c *provisioner.Config) { c.RunnerGroups = groups })
	h.event("queued", 1, "g1")
	if n := len(h.leases()); n != 0 {
		t.Fatalf("%d leases", n)
	}
	groups.set(true, "", nil)
	// GitHub redelivers with the same GUID.
	if out := h.event("queued", 1, "g1"); out != provisioner.Duplicate {
		t.Fatalf("redelivery: %v", out)
	}
	h.waitFor("a lease after the redelivery", func() bool { return len(h.leases()) == 1 })
}

// policyObs records what a PolicyObserver is told.
type policyObs struct {
	mu     sync.Mutex
	kinds  []provisioner.UnservableKind
	unused float64
}

func (o *policyObs) Phase(string, string, provisioner.Phase, time.Duration) {}
func (o *policyObs) Spent(string, string, float64)                          {}
func (o *policyObs) LimitWait(string, time.Duration)                        {}
func (o *policyObs) JobUnservable(class string, kind provisioner.UnservableKind) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.kinds = append(o.kinds, kind)
}
func (o *policyObs) UnusedSpent(class, provider string, dollars float64) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.unused += dollars
}

func TestNoLeaseLoop(t *testing.T) {
	obs := &policyObs{}
	h := newHarness(t, func(c *provisioner.Config) {
		c.Classes[0].IdleTimeout = 300 * time.Millisecond
		c.UnusedRetryBackoff = 500 * time.Millisecond
		c.Observer = obs
	})
	h.event("queued", 1, "g1")
	// Nobody sends in_progress: GitHub never gives the runner the job.
	h.waitFor("first lease released", func() bool { return len(h.leases(provisioner.StateReleased)) == 1 })
	j, err := h.store.Job(context.Background(), 1, 1)
	if err != nil || j.UnusedLeases != 1 {
		t.Fatalf("job after one unused runner: %+v %v", j, err)
	}
	if j.Unservable.Kind != provisioner.UnservableBackoff && len(h.leases()) < 2 {
		t.Fatalf("no back-off mark and no second lease: %+v", j.Unservable)
	}
	if first := h.leases(provisioner.StateReleased)[0]; first.ReleaseReason != provisioner.ReasonUnusedRunner {
		t.Fatalf("release reason %q", first.ReleaseReason)
	}
	h.waitFor("second lease released", func() bool { return len(h.leases(provisioner.StateReleased)) == 2 })
	j, _ = h.store.Job(context.Background(), 1, 1)
	if j.Unservable.Kind != provisioner.UnservableUnassigned || j.UnusedLeases != 2 {
		t.Fatalf("job after two unused runners: %+v", j)
	}
	// Back-off and idle deadlines go by: no third lease.
	time.Sleep(1500 * time.Millisecond)
	if _, err := h.p.Reconcile(context.Background()); err != nil {
		t.Fatal(err)
	}
	if n := len(h.leases()); n != 2 {
		t.Fatalf("%d leases for a job no runner gets, want 2:%s", n, h.describe())
	}
	obs.mu.Lock()
	kinds, unused := obs.kinds, obs.unused
	obs.mu.Unlock()
	if len(kinds) != 2 || kinds[0] != provisioner.UnservableBackoff || kinds[1] != provisioner.UnservableUnassigned {
		t.Fatalf("observed %v", kinds)
	}
	if unused <= 0 {
		t.Fatalf("unused spend %v, want > 0", unused)
	}
	// A new delivery (a redelivery after a fix) gives it its chance again.
	h.event("queued", 1, "g1")
	h.waitFor("a third lease after the redelivery", func() bool { return len(h.leases()) == 3 })
}

// GitHub routes by labels: a refused `runs-on: self-hosted` job can take a
// runner made for another job. Its lease is then busy, not free, and a new
// lease is made for the job still waiting.
func TestRefusedJobTakingOurRunner(t *testing.T) {
	h := newHarness(t, nil)
	h.event("queued", 1, "g1")
	h.waitFor("idle lease", func() bool { return len(h.leases(provisioner.StateIdle)) == 1 })
	l := h.leases()[0]
	selfHosted := func(e *provisioner.JobEvent) { e.Labels = []string{"self-hosted"} }
	h.event("queued", 2, "g2", selfHosted)
	h.event("in_progress", 2, "g3", selfHosted, func(e *provisioner.JobEvent) { e.RunnerName = l.RunnerName })
	if got, _ := h.store.Lease(context.Background(), l.ID); got.State != provisioner.StateBusy || got.BoundJobID != 2 {
		t.Fatalf("lease after the refused job took its runner: %s bound %d", got.State, got.BoundJobID)
	}
	h.waitFor("a lease for job 1 again", func() bool { return len(h.leases(provisioner.StateIdle)) == 1 })
	h.event("completed", 2, "g4", selfHosted, func(e *provisioner.JobEvent) { e.RunnerName = l.RunnerName })
	h.waitFor("the refused job's lease released", func() bool {
		got, _ := h.store.Lease(context.Background(), l.ID)
		return got.State == provisioner.StateReleased
	})
	if n := len(h.leases()); n != 2 {
		t.Fatalf("%d leases, want 2", n)
	}
}
