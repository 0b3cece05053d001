package github

// Reconciliation: webhooks get lost (GitHub does not retry a failed
// delivery, reference §1.5), so the jobs that are queued right now are
// also read from the REST API. There is no endpoint for "queued jobs of an
// org": it is repositories → workflow runs → jobs (§2.2).

import (
	"cmp"
	"context"
	"fmt"
	"net/http"
	"slices"
	"strings"

	gh "github.com/google/go-github/v62/github"

	"github.com/crabbox/crabbox-runner/provisioner"
)

// repoRef is a repository to look into.
type repoRef struct {
	owner, name string
	full        string // owner/name, as GitHub spells it
	// visibility as the listing said (provisioner.RepoVisibility), ""
	// when unknown: class policy needs it (issue 13).
	visibility string
}

// QueuedJobs is the full walk: every repository, every pass. The
// reconcile uses ScanJobs (scan.go), which looks only where something can
// have changed; QueuedJobs stays for one-off questions and sources that
// cannot scan.
//
// QueuedJobs returns the jobs queued in the scope now, as queued events
// without a delivery id: for a repository scope its jobs, for an org scope
// those of every repository the App installation sees (App mode) or the
// org's repositories (token mode). Org is set for an org scope only, so
// that the provisioner registers runners where the scope says.
//
// Runs are read with status=queued and with status=in_progress: a
// multi-job run is in progress as soon as one job started, while its other
// jobs may still be queued (§2.2). A rate-limit error ends the walk and is
// returned wrapped (errors.As finds *github.RateLimitError or
// *github.AbuseRateLimitError), so the caller can wait it out (§4.3).
func (c *Client) QueuedJobs(ctx context.Context, scope provisioner.Scope) ([]provisioner.JobEvent, error) {
	ctx = provisioner.Background(ctx) // reconcile work gives way to jobs (budget.go)
	t, err := parseScope(scope)
	if err != nil {
		return nil, err
	}
	if c.tokenClient == nil && scope.InstallationID == 0 {
		// Resolved here, not in clientFor, because the events carry it.
		if scope.InstallationID, err = c.installationID(ctx, scope); err != nil {
			return nil, err
		}
	}
	g, err := c.clientFor(ctx, scope)
	if err != nil {
		return nil, err
	}

	repos := []repoRef{{owner: t.owner, name: t.repo, full: t.owner + "/" + t.repo}}
	if t.org != "" {
		if repos, err = c.orgRepos(ctx, g, t.org); err != nil {
			return nil, fmt.Errorf("github: list the repositories of %s: %w", scope, err)
		}
	}

	var out []provisioner.JobEvent
	seen := map[int64]bool{}
	for _, r := range repos {
		jobs, visibility, err := queuedInRepo(ctx, g, r)
		if t.org != "" && statusOf(err) == http.StatusNotFound {
			continue // deleted or renamed since it was listed
		}
		if err != nil {
			return nil, fmt.Errorf("github: queued jobs in %s: %w", r.full, err)
		}
		for _, j := range jobs {
			if seen[j.GetID()] {
				continue
			}
			seen[j.GetID()] = true
			ev := provisioner.JobEvent{
				Action:         "queued",
				Status:         j.GetStatus(),
				JobID:          j.GetID(),
				RunID:          j.GetRunID(),
				RunAttempt:     provisioner.RunAttempt(j.GetRunAttempt()),
				Name:           j.GetName(),
				Workflow:       j.GetWorkflowName(),
				Labels:         slices.Clone(j.Labels),
				Repo:           r.full,
				Visibility:     cmp.Or(r.visibility, visibility),
				InstallationID: scope.InstallationID,
			}
			if t.org != "" {
				ev.Org = t.org
			}
			out = append(out, ev)
		}
	}
	// Oldest first, as the jobs were queued: job ids grow over time.
	slices.SortFunc(out, func(a, b provisioner.JobEvent) int { return cmp.Compare(a.JobID, b.JobID) })
	return out, nil
}

// orgRepos lists the repositories of an org that may have jobs: through
// the installation in App mode (GET /installation/repositories, which an
// App may use even where it cannot list the org's repositories), else
// GET /orgs/{org}/repos. Archived repositories run no workflows.
func (c *Client) orgRepos(ctx context.Context, g *gh.Client, org string) ([]repoRef, error) {
	var out []repoRef
	add := func(r *gh.Repository) {
		owner := r.GetOwner().GetLogin()
		// An installation sees one account's repositories; checking
		// still keeps a mistaken installation id from leaking another
		// org's jobs into this scope.
		if r.GetArchived() || r.GetName() == "" || !strings.EqualFold(owner, org) {
			return
		}
		full := r.GetFullName()
		if full == "" {
			full = owner + "/" + r.GetName()
		}
		out = append(out, repoRef{owner: owner, name: r.GetName(), full: full, visibility: provisioner.RepoVisibility(r.GetVisibility(), r.Private)})
	}
	err := eachPage(func(page int) (int, *gh.Response, error) {
		lo := gh.ListOptions{PerPage: perPage, Page: page}
		if c.tokenClient != nil {
			list, resp, err := g.Repositories.ListByOrg(ctx, org, &gh.RepositoryListByOrgOptions{Type: "all", ListOptions: lo})
			for _, r := range list {
				add(r)
			}
			return len(list), resp, err
		}
		list, resp, err := g.Apps.ListRepos(ctx, &lo)
		if list == nil {
			return 0, resp, err
		}
		for _, r := range list.Repositories {
			add(r)
		}
		return len(list.Repositories), resp, err
	})
	return out, err
}

// queuedInRepo returns the queued jobs of the repository's queued and
// in-progress runs, latest attempt only, and the repository's visibility
// as the runs' repository object gives it ("" when none did).
func queuedInRepo(ctx context.Context, g *gh.Client, r repoRef) (jobs []*gh.WorkflowJob, visibility string, err error) {
	var runs []int64
	listed := map[int64]bool{}
	for _, status := range []string{"queued", "in_progress"} {
		err := eachPage(func(page int) (int, *gh.Response, error) {
			list, resp, err := g.Actions.ListRepositoryWorkflowRuns(ctx, r.owner, r.name, &gh.ListWorkflowRunsOptions{
				Status:      status,
				ListOptions: gh.ListOptions{PerPage: perPage, Page: page},
			})
			if list == nil {
				return 0, resp, err
			}
			for _, run := range list.WorkflowRuns {
				if visibility == "" && run.Repository != nil {
					visibility = provisioner.RepoVisibility(run.Repository.GetVisibility(), run.Repository.Private)
				}
				// A run that started between the two listings is in both.
				if !listed[run.GetID()] {
					listed[run.GetID()] = true
					runs = append(runs, run.GetID())
				}
			}
			return len(list.WorkflowRuns), resp, err
		})
		if err != nil {
			return nil, "", fmt.Errorf("list %s workflow runs: %w", status, err)
		}
	}

	var out []*gh.WorkflowJob
	for _, run := range runs {
		err := eachPage(func(page int) (int, *gh.Response, error) {
			list, resp, err := g.Actions.ListWorkflowJobs(ctx, r.owner, r.name, run, &gh.ListWorkflowJobsOptions{
				Filter:      "latest",
				ListOptions: gh.ListOptions{PerPage: perPage, Page: page},
			})
			if list == nil {
				return 0, resp, err
			}
			for _, j := range list.Jobs {
				// No status filter on this endpoint (§2.2); waiting jobs
				// need an approval before a runner can take them.
				if j.GetStatus() == "queued" {
					out = append(out, j)
				}
			}
			return len(list.Jobs), resp, err
		})
		if statusOf(err) == http.StatusNotFound {
			continue // the run was deleted after it was listed
		}
		if err != nil {
			return nil, "", fmt.Errorf("list the jobs of run %d: %w", run, err)
		}
	}
	return out, visibility, nil
}
