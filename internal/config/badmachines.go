package config

import (
	"time"

	"github.com/crabbox/crabbox-runner/provisioner"
)

// DefaultBadMachineAvoidFor is how long a machine whose host failed a
// lease is avoided.
const DefaultBadMachineAvoidFor = provisioner.DefaultBadMachineTTL

// DefaultBadPoolAvoidFor is how long a capacity pool whose host failed a
// lease is tried last.
const DefaultBadPoolAvoidFor = provisioner.DefaultBadPoolTTL

// BadMachinesConfig says how long a machine whose host failed a lease (boot
// timeout, a refused SSH endpoint, a failed GPU check or host key) is
// avoided. The marks are kept in the database: every replica and a
// restarted serve avoid the same machines.
type BadMachinesConfig struct {
	// AvoidFor is how long offers on a bad machine (a Vast machine_id) are
	// skipped; default 24h; negative: never skipped.
	AvoidFor time.Duration `yaml:"avoid_for"`
	// AvoidPoolFor is how long a capacity pool (a Lambda instance type in a
	// region) whose host failed is tried after every other offer; default
	// 1h; negative: never.
	AvoidPoolFor time.Duration `yaml:"avoid_pool_for"`
}

func (b BadMachinesConfig) validate() error {
	if err := checkDuration("bad_machines.avoid_for", b.AvoidFor, true); err != nil {
		return err
	}
	return checkDuration("bad_machines.avoid_pool_for", b.AvoidPoolFor, true)
}
