package provisioner_test

import (
	"fmt"
	"strings"
	"testing"

	"github.com/crabbox/crabbox-runner/provisioner"
)

// runJob plays GitHub for one job: its runner takes it, then it completes.
func (h *harness) runJob(job int64, runner string) {
	h.t.Helper()
	h.event("in_progress", job, fmt.Sprintf("ip-%d", job), func(e *provisioner.JobEvent) { e.RunnerName = runner })
	h.event("completed", job, fmt.Sprintf("c-%d", job), func(e *provisioner.JobEvent) { e.RunnerName = runner; e.Conclusion = "success" })
}

func TestMaxLeasesJobsWaitInOrder(t *testing.T) {
	h := newHarness(t, func(c *provisioner.Config) { c.Limits.MaxLeases = 2 })
	for j := int64(1); j <= 5; j++ {
		h.event("queued", j, fmt.Sprintf("q-%d", j))
	}
	h.waitFor("two idle", func() bool { return len(h.leases(provisioner.StateIdle)) == 2 })
	if n := len(h.leases()); n != 2 {
		t.Fatalf("%d leases under max_leases 2", n)
	}
	// Each finished job makes room for the next; nothing fails, nothing floods.
	served := 0
	for served < 5 {
		h.waitFor("an idle lease", func() bool { return len(h.leases(provisioner.StateIdle)) > 0 })
		l := h.leases(provisioner.StateIdle)[0]
		served++
		h.runJob(int64(served), l.RunnerName)
		held := 0
		for _, l := range h.leases() {
			if l.State != provisioner.StateReleased {
				held++
			}
		}
		if held > 2 {
			t.Fatalf("%d leases held under max_leases 2", held)
		}
	}
	h.waitFor("all released", func() bool { return len(h.leases(provisioner.StateReleased)) == 5 })
	if live, created, _ := h.prov.counts(); live != 0 || created != 5 {
		t.Fatalf("live %d created %d", live, created)
	}
}

func TestMaxSpendPerHourWaits(t *testing.T) {
	// Hosts cost $1.10/h; a cap of $2.50 fits two.
	h := newHarness(t, func(c *provisioner.Config) { c.Limits.MaxSpendPerHour = 2.5 })
	for j := int64(1); j <= 3; j++ {
		h.event("queued", j, fmt.Sprintf("q-%d", j))
	}
	h.waitFor("two idle and one waiting", func() bool {
		waiting := 0
		for _, l := range h.leases(provisioner.StateProvisioning) {
			if strings.HasPrefix(l.Error, "waiting for max_spend_per_hour") {
				waiting++
			}
		}
		return len(h.leases(provisioner.StateIdle)) == 2 && waiting == 1
	})
	if _, created, _ := h.prov.counts(); created != 2 {
		t.Fatalf("%d hosts rented under a $2.50 cap", created)
	}
	first := h.leases(provisioner.StateIdle)[0]
	h.runJob(1, first.RunnerName)
	h.waitFor("the third host once the first is gone", func() bool { return len(h.leases(provisioner.StateIdle)) == 2 })
	if _, created, _ := h.prov.counts(); created != 3 {
		t.Fatalf("%d hosts created", created)
	}
}
