package provisioner

import "context"

// GitHub is the part of GitHub's API the provisioner needs. The
// implementation (package github) authenticates per scope: an App
// installation token for the scope's installation, or a plain token.
type GitHub interface {
	// GenerateJITConfig registers a just-in-time runner named name with the
	// given labels in the scope. The runner exists (offline) once this returns.
	// A name left over from an earlier attempt is removed and registered again.
	GenerateJITConfig(ctx context.Context, scope Scope, name string, labels []string) (*JITConfig, error)

	// Runner returns one runner, or ErrNotFound.
	Runner(ctx context.Context, scope Scope, id int64) (*Runner, error)

	// RunnerByName finds a runner by its name, or ErrNotFound.
	RunnerByName(ctx context.Context, scope Scope, name string) (*Runner, error)

	// ListRunners returns every self-hosted runner in the scope.
	ListRunners(ctx context.Context, scope Scope) ([]Runner, error)

	// RemoveRunner deletes a runner. A runner that is already gone counts as
	// removed (nil error).
	RemoveRunner(ctx context.Context, scope Scope, id int64) error

	// RerunJob asks GitHub to re-run the job (a new run attempt). Errors:
	// ErrRerunNotYet while the job's workflow run still runs (ask again
	// later), ErrRerunRefused when GitHub will not (a missing permission,
	// named in the error), ErrNotFound when the job is gone, and
	// *BudgetError when the request budget holds the call back.
	// (rerun_lost_jobs; rerun.go)
	RerunJob(ctx context.Context, scope Scope, repo string, jobID int64) error
}

// JITConfig is a just-in-time runner registration.
type JITConfig struct {
	RunnerID   int64
	RunnerName string
	// Encoded is the encoded_jit_config: the runner's credentials. Secret:
	// it goes to the host over SSH stdin and nowhere else.
	Encoded string
}

// String keeps the secret out of any log line that prints the value.
func (j *JITConfig) String() string {
	if j == nil {
		return "<nil>"
	}
	return "JITConfig{runner:" + j.RunnerName + "}"
}

// GoString keeps the secret out of %#v too.
func (j *JITConfig) GoString() string { return j.String() }

// Runner is a self-hosted runner as GitHub sees it.
type Runner struct {
	ID     int64
	Name   string
	Status string // "online" or "offline"
	Busy   bool
	Labels []string
}

// Online reports whether the runner is connected to GitHub.
func (r *Runner) Online() bool { return r != nil && r.Status == "online" }
