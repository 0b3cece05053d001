package provisioner_test

import (
	"testing"

	"github.com/crabbox/crabbox-runner/provisioner"
)

// Issue #15: a signed in_progress + completed from another org naming our
// runner destroyed our host. Runner names are public; a delivery acts on a
// lease only when it comes from where the lease was made for.
func TestForeignEventsLeaveTheLeaseAlone(t *testing.T) {
	from := func(org, repo string, inst int64) func(*provisioner.JobEvent) {
		return func(e *provisioner.JobEvent) { e.Org, e.Repo, e.InstallationID = org, repo, inst }
	}
	cases := []struct {
		name    string
		queued  func(*provisioner.JobEvent) // the job the lease is made for
		foreign func(*provisioner.JobEvent) // the stranger's events
	}{
		{"another org", from("acme", "acme/ml", 0), from("mallory-org", "mallory-org/ml", 0)},
		{"another org, its repository named like ours", from("acme", "acme/ml", 0), from("mallory-org", "acme/ml", 0)},
		{"another installation", from("acme", "acme/ml", 7), from("acme", "acme/ml", 8)},
		{"no installation on a lease made through one", from("acme", "acme/ml", 7), from("acme", "acme/ml", 0)},
		{"another user's repository", from("", "alice/ml", 0), from("", "mallory/ml", 0)},
		{"another repository of the same user", from("", "alice/ml", 0), from("", "alice/other", 0)},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			h := newHarness(t, nil)
			h.event("queued", 1, "q1", c.queued)
			h.waitFor("idle lease", func() bool { return len(h.leases(provisioner.StateIdle)) == 1 })
			l := h.leases()[0]
			named := func(e *provisioner.JobEvent) { e.RunnerName = l.RunnerName; e.Conclusion = "success" }
			if out := h.event("in_progress", 666, "m1", c.foreign, named); out != provisioner.Ignored {
				t.Errorf("foreign in_progress: %v, want ignored", out)
			}
			if out := h.event("completed", 666, "m2", c.foreign, named); out != provisioner.Ignored {
				t.Errorf("foreign completed: %v, want ignored", out)
			}
			got := h.leases()
			if len(got) != 1 || got[0].State != provisioner.StateIdle || got[0].BoundJobID != 0 || got[0].ReleaseReason != "" {
				t.Fatalf("lease after foreign events: %+v, want it idle and unbound", got[0])
			}
			if live, _, destroyed := h.prov.counts(); live != 1 || destroyed != 0 {
				t.Fatalf("instances live %d destroyed %d: the host must stay", live, destroyed)
			}
			// The lease's own job still moves it.
			h.event("in_progress", 1, "g2", c.queued, named)
			h.event("completed", 1, "g3", c.queued, named)
			h.waitFor("released", func() bool { return len(h.leases(provisioner.StateReleased)) == 1 })
		})
	}
}

// A just-in-time runner runs one job: a completed of another job, even
// from the same org, does not release the lease bound to the first.
func TestCompletedOfAnotherJobLeavesBoundLease(t *testing.T) {
	h := newHarness(t, nil)
	h.event("queued", 1, "q1")
	h.waitFor("idle lease", func() bool { return len(h.leases(provisioner.StateIdle)) == 1 })
	l := h.leases()[0]
	named := func(e *provisioner.JobEvent) { e.RunnerName = l.RunnerName }
	h.event("in_progress", 1, "p1", named)
	if out := h.event("completed", 2, "c2", named); out != provisioner.Ignored {
		t.Errorf("completed of job 2 on job 1's runner: %v, want ignored", out)
	}
	if got := h.leases(provisioner.StateBusy); len(got) != 1 || got[0].BoundJobID != 1 {
		t.Fatalf("lease after another job's completed: %+v, want busy with job 1", h.leases())
	}
	h.event("completed", 1, "c1", named)
	h.waitFor("released", func() bool { return len(h.leases(provisioner.StateReleased)) == 1 })
}

// Logins are case-insensitive on GitHub; a scope spelled otherwise is the
// same scope.
func TestEventIdentityIgnoresLoginCase(t *testing.T) {
	h := newHarness(t, nil)
	h.event("queued", 1, "q1")
	h.waitFor("idle lease", func() bool { return len(h.leases(provisioner.StateIdle)) == 1 })
	l := h.leases()[0]
	if out := h.event("in_progress", 1, "p1", func(e *provisioner.JobEvent) {
		e.RunnerName, e.Org, e.Repo = l.RunnerName, "ACME", "Acme/ML"
	}); out != provisioner.Accepted {
		t.Fatalf("in_progress spelled ACME: %v", out)
	}
	if got := h.leases(provisioner.StateBusy); len(got) != 1 {
		t.Fatalf("lease not busy: %+v", h.leases())
	}
}
