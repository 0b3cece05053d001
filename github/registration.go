package github

import (
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
// back-off ends. A scope whose installation is not known yet answers 0:
// finding it is itself a request, which the budget then judges.
func (c *Client) RegistrationWait(scope provisioner.Scope) time.Duration {
	cred, ok := c.credentialFor(scope)
	if !ok {
		return 0
	}
	return c.budget.wait(cred, registrationNeed)
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
