package provisioner

import "time"

// Phase names a stretch of a lease's life that is timed.
type Phase string

// The timed phases, in order.
const (
	PhaseQueuedToCreate Phase = "queued_to_create"       // lease created → create call made
	PhaseCreateToSSH    Phase = "create_to_ssh"          // create call → SSH answers with the right host key
	PhaseSSHToOnline    Phase = "ssh_to_online"          // SSH → runner online on GitHub
	PhaseJobRun         Phase = "job_run"                // runner took a job → job completed
	PhaseReleaseDestroy Phase = "completed_to_destroyed" // release asked → host destroyed
)

// Observer is told what the provisioner measures; the metrics package
// implements it. Every method must be cheap and safe for concurrent use.
type Observer interface {
	Phase(class, provider string, phase Phase, d time.Duration)
	// Spent adds the cost of a released lease: price × time the host lived.
	Spent(class, provider string, dollars float64)
	// LimitWait records that a lease waited for a limit before going on.
	LimitWait(limit string, d time.Duration)
}

type nopObserver struct{}

func (nopObserver) Phase(string, string, Phase, time.Duration) {}
func (nopObserver) Spent(string, string, float64)              {}
func (nopObserver) LimitWait(string, time.Duration)            {}
