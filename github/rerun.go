package github

import (
	"context"
	"fmt"
	"net/http"
	"strings"

	"github.com/crabbox/crabbox-runner/provisioner"
)

// RerunJob re-runs one job of a workflow run (POST /repos/{owner}/{repo}/
// actions/jobs/{job_id}/rerun, operation actions/re-run-job-for-workflow-run:
// 201 on success, 403 basic-error otherwise). It goes through the budget
// like every request (budget.go). GitHub answers 403 both while the run is
// still running ("The workflow run containing this job is already running")
// and for good (a missing Actions write permission, with
// X-Accepted-GitHub-Permissions; a run over a month old; an attempt that is
// not the latest): the first is ErrRerunNotYet, the others ErrRerunRefused.
func (c *Client) RerunJob(ctx context.Context, scope provisioner.Scope, repo string, jobID int64) error {
	owner, name, ok := strings.Cut(repo, "/")
	if !ok || owner == "" || name == "" {
		return fmt.Errorf("github: repository %q is not owner/name", repo)
	}
	g, err := c.clientFor(ctx, scope)
	if err != nil {
		return err
	}
	_, err = g.Actions.RerunJobByID(ctx, owner, name, jobID)
	if err == nil {
		return nil
	}
	msg := ErrorMessage(err)
	switch statusOf(err) {
	case http.StatusNotFound:
		return fmt.Errorf("github: re-run of job %d of %s: %w", jobID, repo, provisioner.ErrNotFound)
	case http.StatusForbidden:
		if strings.Contains(strings.ToLower(msg), "already running") {
			return fmt.Errorf("github: re-run of job %d of %s: %s: %w", jobID, repo, msg, provisioner.ErrRerunNotYet)
		}
		if need := AcceptedPermissions(err); need != "" || strings.Contains(msg, "not accessible by") {
			if need == "" {
				need = "actions=write"
			}
			return fmt.Errorf("github: re-run of job %d of %s: %s: the credential lacks the Actions write permission "+
				"(GitHub App: Repository permissions → Actions: Read and write, accepted by the installation; "+
				"classic token: the repo scope; GitHub asks for %s): %w", jobID, repo, msg, need, provisioner.ErrRerunRefused)
		}
		return fmt.Errorf("github: re-run of job %d of %s: %s: %w", jobID, repo, msg, provisioner.ErrRerunRefused)
	}
	return fmt.Errorf("github: re-run of job %d of %s: %w", jobID, repo, err)
}
