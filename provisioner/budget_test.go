package provisioner_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/crabbox/crabbox-runner/provisioner"
)

// budgetGitHub is memGitHub whose registrations wait for a budget.
type budgetGitHub struct {
	*memGitHub
	mu    sync.Mutex
	until time.Time // no registration before then
	asked int
}

func (g *budgetGitHub) RegistrationWait(context.Context, provisioner.Scope) time.Duration {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.asked++
	return max(time.Until(g.until), 0)
}

func (g *budgetGitHub) GenerateJITConfig(ctx context.Context, s provisioner.Scope, name string, labels []string) (*provisioner.JITConfig, error) {
	g.mu.Lock()
	until := g.until
	g.mu.Unlock()
	if time.Now().Before(until) {
		return nil, &provisioner.BudgetError{Credential: "token", Endpoint: "POST jit", Until: until, Reason: "exhausted"}
	}
	return g.memGitHub.GenerateJITConfig(ctx, s, name, labels)
}

// TestNoHostWhileGitHubCannotRegister: with the scope's budget used up, a
// lease rents no host; after the reset it goes on and the job is served.
func TestNoHostWhileGitHubCannotRegister(t *testing.T) {
	var gh *budgetGitHub
	h := newHarness(t, func(c *provisioner.Config) {
		gh = &budgetGitHub{memGitHub: c.GitHub.(*memGitHub), until: time.Now().Add(1500 * time.Millisecond)}
		c.GitHub = gh
	})
	h.event("queued", 1, "g1")
	time.Sleep(time.Second)
	if _, created, _ := h.prov.counts(); created != 0 {
		t.Fatalf("%d hosts rented while GitHub could take no registration", created)
	}
	if ls := h.leases(); len(ls) != 1 || ls[0].State != provisioner.StatePending {
		t.Fatalf("leases %+v, want one pending", ls)
	}
	gh.mu.Lock()
	asked := gh.asked
	gh.mu.Unlock()
	if asked == 0 || asked > 3 {
		t.Errorf("asked the budget %d times in a second, want a snooze until the reset", asked)
	}
	h.waitFor("runner online after the reset", func() bool { return len(h.leases(provisioner.StateIdle)) == 1 })
	if _, created, _ := h.prov.counts(); created != 1 {
		t.Fatalf("%d hosts, want 1", created)
	}
}
