package github

import (
	"context"
	"strconv"
	"strings"
	"time"

	"github.com/crabbox/crabbox-runner/provisioner"
)

// Credentials as the budget names them: bounded, never a token.
const (
	tokenCredential = "token"
	appCredential   = "app"
)

func installationCredential(id int64) string { return "installation:" + strconv.FormatInt(id, 10) }

var _ provisioner.RegistrationBudget = (*Client)(nil)

// registrationNeed is the requests a lease needs from its scope's budget
// once its host is rented: the registration and a look at its runner.
const registrationNeed = 2

// RegistrationWait says how long until a runner can be registered in the
// scope: 0 now, else until the credential's rate limit resets or its
// back-off ends. The budget must also have room for the registrations it
// already let through (their hosts are being rented). When what is known
// of the budget is old, it is asked first with GET /rate_limit, which costs
// nothing against it. A scope whose installation is not known yet answers
// 0: finding it is itself a request, which the budget then judges.
func (c *Client) RegistrationWait(ctx context.Context, scope provisioner.Scope) time.Duration {
	cred, ok := c.credentialFor(scope)
	if !ok {
		return 0
	}
	if c.budget.stale(cred, rateStaleAfter) {
		c.refreshRate(ctx, scope, cred)
	}
	return c.budget.wait(cred, registrationNeed)
}

// rateStaleAfter is how old the last known budget may be for
// RegistrationWait to trust it.
const rateStaleAfter = 30 * time.Second

// refreshRate asks GET /rate_limit for the credential's budget, one caller
// at a time; the answer's headers update the budget (budget.go). A failure
// leaves the budget as it was: the registration's own answer will tell.
func (c *Client) refreshRate(ctx context.Context, scope provisioner.Scope, cred string) {
	mu := c.budget.refreshLock(cred)
	mu.Lock()
	defer mu.Unlock()
	if !c.budget.stale(cred, rateStaleAfter) {
		return // refreshed while we waited
	}
	g, err := c.clientFor(ctx, scope)
	if err != nil {
		return
	}
	rl, _, err := g.RateLimit.Get(ctx)
	if err != nil || rl == nil || rl.Core == nil {
		return
	}
	c.budget.setRate(cred, rl.Core.Limit, rl.Core.Remaining, rl.Core.Reset.Time)
}

// credentialFor is the budget that pays for calls in the scope.
func (c *Client) credentialFor(scope provisioner.Scope) (string, bool) {
	if c.tokenClient != nil {
		return tokenCredential, true
	}
	id := scope.InstallationID
	if id == 0 {
		c.mu.Lock()
		id = c.installIDs[strings.ToLower(scope.Key())]
		c.mu.Unlock()
	}
	if id == 0 {
		return "", false
	}
	return installationCredential(id), true
}
