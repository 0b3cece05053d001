package lambda_test

import (
	"testing"

	"github.com/crabbox/crabbox-runner/providers/lambda/lambdatest"
	"github.com/crabbox/crabbox-runner/providers/providertest"
	"github.com/crabbox/crabbox-runner/provisioner"
)

// The contract every provider keeps, on the fake Lambda with real sshd
// hosts.
func TestContract(t *testing.T) {
	providertest.Run(t, func(t *testing.T) provisioner.Provider {
		fake := lambdatest.New(t, lambdatest.Options{})
		t.Cleanup(func() {
			if v := fake.Violations(); len(v) > 0 {
				t.Errorf("the fake saw %d breaches of the OpenAPI document", len(v))
			}
		})
		return newProvider(t, fake, nil)
	}, a100)
}
