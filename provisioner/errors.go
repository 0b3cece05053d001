package provisioner

import (
	"errors"
	"fmt"
)

// Sentinel errors shared by the domain and its implementations. Check them
// with errors.Is.
var (
	// ErrNotFound: the lease, instance, runner or job does not exist (any more).
	ErrNotFound = errors.New("not found")
	// ErrOfferUnavailable: the offer was taken or has no capacity; try another.
	ErrOfferUnavailable = errors.New("offer unavailable")
	// ErrCreateUncertain: a create call's answer was lost or too slow and
	// the provider could not tell whether it rented a host. The host, if it
	// exists, carries the lease's marker; the provisioner looks for it again
	// soon (not only at the next gc) and destroys whatever is extra.
	ErrCreateUncertain = errors.New("create outcome unknown")
	// ErrNoOffer: no provider of the class has a fitting offer right now.
	ErrNoOffer = errors.New("no fitting offer")
	// ErrGPUCheck: the host's GPU check failed; the machine is bad.
	ErrGPUCheck = errors.New("GPU check failed")
	// ErrBootTimeout: a one-shot lease's host had no runner online within
	// its class's BootTimeout; it is destroyed and the next offer tried.
	ErrBootTimeout = errors.New("boot timeout")
	// ErrHostKeyMismatch: the host presented a key other than the pinned one.
	ErrHostKeyMismatch = errors.New("SSH host key mismatch")
	// ErrRunnerBusy: GitHub refused to remove a runner that runs a job.
	ErrRunnerBusy = errors.New("the runner may be busy running a job")
	// ErrRerunNotYet: GitHub refused to re-run a job because its workflow
	// run still has jobs queued or running; asking again later may work.
	ErrRerunNotYet = errors.New("the job's workflow run is still running")
	// ErrRerunRefused: GitHub refused to re-run a job for good (no
	// permission, a run too old, an attempt that is not the latest).
	ErrRerunRefused = errors.New("GitHub refused to re-run the job")
	// ErrQueueNotStarted: work was enqueued before the store's queue started.
	ErrQueueNotStarted = errors.New("work queue not started")
)

// TransitionError is returned by the store for a change of state the
// lifecycle does not allow.
type TransitionError struct {
	LeaseID  string
	From, To State
}

func (e *TransitionError) Error() string {
	return fmt.Sprintf("lease %s: cannot go from %s to %s", e.LeaseID, e.From, e.To)
}

// IsTransitionError reports whether err is a refused transition.
func IsTransitionError(err error) bool {
	var te *TransitionError
	return errors.As(err, &te)
}
