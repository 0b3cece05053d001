package github

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/crabbox/crabbox-runner/provisioner"
)

// What the reconcile loop asks besides QueuedJobs: one job's state, where to
// look, and the redelivery of what never arrived (provisioner.JobSource and
// provisioner.Redeliverer).

var (
	_ provisioner.JobSource   = (*Client)(nil)
	_ provisioner.Redeliverer = (*Client)(nil)
)

// JobStatus returns a job's current state as an event whose action is its
// status (GET /repos/{owner}/{repo}/actions/jobs/{id}); ErrNotFound when
// the job is gone.
func (c *Client) JobStatus(ctx context.Context, scope provisioner.Scope, repo string, jobID int64) (*provisioner.JobEvent, error) {
	ctx = provisioner.Background(ctx) // reconcile work gives way to jobs (budget.go)
	owner, name, ok := strings.Cut(repo, "/")
	if !ok || owner == "" || name == "" {
		return nil, fmt.Errorf("github: repository %q is not owner/name", repo)
	}
	ctx = provisioner.Background(ctx) // the reconcile's refresh
	g, err := c.clientFor(ctx, scope)
	if err != nil {
		return nil, err
	}
	j, _, err := g.Actions.GetWorkflowJobByID(ctx, owner, name, jobID)
	if statusOf(err) == http.StatusNotFound {
		return nil, fmt.Errorf("github: job %d of %s: %w", jobID, repo, provisioner.ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("github: job %d of %s: %w", jobID, repo, err)
	}
	ev := &provisioner.JobEvent{
		Action: j.GetStatus(), Status: j.GetStatus(), JobID: j.GetID(), RunID: j.GetRunID(), RunAttempt: provisioner.RunAttempt(j.GetRunAttempt()),
		Name: j.GetName(), Workflow: j.GetWorkflowName(), Labels: slices.Clone(j.Labels), Repo: repo,
		Org: scope.Org, InstallationID: scope.InstallationID, RunnerName: j.GetRunnerName(), Conclusion: j.GetConclusion(),
	}
	return ev, nil
}

// Scopes lists the orgs the App is installed on, to look for queued jobs
// there, from a list read again every few minutes (scopesEvery). With a
// plain token there is nothing to list: github.scopes says where to look.
// When a new listing fails, the last one is returned with the error.
func (c *Client) Scopes(ctx context.Context) ([]provisioner.Scope, error) {
	ctx = provisioner.Background(ctx) // reconcile work gives way to jobs (budget.go)
	if c.tokenClient != nil {
		return nil, nil
	}
	insts, err := c.cachedInstallations(ctx)
	var out []provisioner.Scope
	for _, in := range insts {
		// A user's installation covers that user's repositories, which
		// only a repository scope reaches; github.scopes names them.
		if strings.EqualFold(in.AccountType, "Organization") {
			out = append(out, provisioner.Scope{Org: in.Account, InstallationID: in.ID})
		}
	}
	return out, err
}

// redeliverSpacing keeps a delivery that keeps failing (a receiver bug)
// from being redelivered on every pass.
const redeliverSpacing = 15 * time.Minute

type redeliveries struct {
	mu   sync.Mutex
	last map[string]time.Time // GUID → last asked
}

// RedeliverFailed asks GitHub to redeliver each App webhook delivery since
// then that never got a 2xx (GitHub does not retry them itself), at most
// once per GUID every 15 minutes. It reads only the deliveries made since
// its previous sweep (sweep.go); since bounds the first. With a plain token there is no App hook:
// nothing to do.
func (c *Client) RedeliverFailed(ctx context.Context, since time.Time) (int, error) {
	ctx = provisioner.Background(ctx) // reconcile work gives way to jobs (budget.go)
	if c.tokenClient != nil {
		return 0, nil
	}
	failed, err := c.sweepDeliveries(ctx, since)
	if err != nil {
		return 0, err
	}
	c.redelivered.mu.Lock()
	if c.redelivered.last == nil {
		c.redelivered.last = map[string]time.Time{}
	}
	now := time.Now()
	var todo []Delivery
	for _, d := range failed {
		if t, ok := c.redelivered.last[d.GUID]; ok && now.Sub(t) < redeliverSpacing {
			continue
		}
		c.redelivered.last[d.GUID] = now
		todo = append(todo, d)
	}
	for guid, t := range c.redelivered.last {
		if now.Sub(t) > 4*24*time.Hour {
			delete(c.redelivered.last, guid)
		}
	}
	c.redelivered.mu.Unlock()
	n := 0
	var errs []error
	ctx = provisioner.Background(ctx)
	for _, d := range todo {
		if err := c.Redeliver(ctx, d.ID); err != nil {
			if redeliverGone(err) {
				c.forgetDelivery(d.GUID)
			} else {
				// Not asked after all: the next pass tries again.
				c.redelivered.mu.Lock()
				delete(c.redelivered.last, d.GUID)
				c.redelivered.mu.Unlock()
			}
			errs = append(errs, err)
			continue
		}
		n++
	}
	return n, errors.Join(errs...)
}
