package vast_test

import (
	"testing"

	"github.com/crabbox/crabbox-runner/providers/providertest"
	"github.com/crabbox/crabbox-runner/providers/vast/vasttest"
	"github.com/crabbox/crabbox-runner/provisioner"
)

func TestContract(t *testing.T) {
	providertest.Run(t, func(t *testing.T) provisioner.Provider {
		return newProvider(t, newFake(t, vasttest.Options{}))
	}, a100)
}
