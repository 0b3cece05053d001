package github

// The reconcile scan that costs nearly nothing (provisioner.JobScanner).
// Per repository it lists the runs with status=queued and with
// status=in_progress (a multi-job run is in progress while later jobs still
// wait, reference §2.2), and lists jobs only for the runs whose entry
// changed since the previous look, or that left both listings (they
// finished: one last look tells how their jobs ended). Unchanged listings
// are answered 304 by GitHub through the transport's ETag cache, which does
// not count against the primary rate limit ("Best practices for using the
// REST API", conditional requests). Events are what changed per job:
// queued, in_progress (with the runner's name: poll mode learns from it
// that a runner took its job) and completed (the host can go).

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	gh "github.com/google/go-github/v62/github"

	"github.com/crabbox/crabbox-runner/provisioner"
)

var _ provisioner.JobScanner = (*Client)(nil)

// Periods of the scan, in background windows (a minute in production).
const (
	// repoListEvery: the list of an org's repositories is read again at
	// least this often, and besides at the start of each round of the walk
	// (at most once a window): a new repository is walked within a round.
	repoListEvery = 10
	// forgetEvery: a repository's memory is dropped this often, so that
	// every job there is reported once more: an event the provisioner
	// failed to take is not lost for good. With ETags, the lists read
	// again are mostly 304s.
	forgetEvery = 30
)

// walkReserve is the share of the background window the walk leaves free
// for the hot repositories, the deliveries sweep and the refreshes of other
// scopes.
const walkReserve = 4 // a quarter

// walkWait: the walk waits at most a window/walkWait for room under the
// ceiling before it leaves the rest to the next pass.
const walkWait = 4

func sleepCtx(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// scanState is what the scan remembers of one scope.
type scanState struct {
	mu       sync.Mutex // one scan of a scope at a time
	repos    map[string]*repoState
	list     []repoRef // the org's repositories, for the walk
	listedAt time.Time
	walkAt   int // where the walk resumes in list
}

// repoState is what the scan saw last in one repository.
type repoState struct {
	runs    map[int64]runKey
	jobs    map[int64]jobKey
	resetAt time.Time
}

// runKey is what tells that a run changed.
type runKey struct {
	status, updated string
	attempt         int
}

// jobKey is what tells that a job changed.
type jobKey struct {
	status  string
	attempt int64
	runID   int64
}

func (c *Client) scanStateFor(s provisioner.Scope) *scanState {
	c.scanMu.Lock()
	defer c.scanMu.Unlock()
	key := strings.ToLower(s.Key())
	st := c.scans[key]
	if st == nil {
		st = &scanState{repos: map[string]*repoState{}}
		c.scans[key] = st
	}
	return st
}

// ScanJobs reports what changed in the scope's hot repositories and, with
// walk, in as many of its other repositories as the background ceiling
// leaves room for, resuming where the last walk stopped. A repository
// scope is its one repository. An error wrapping provisioner.ErrDeferred
// means the budget stopped it; what was found so far is returned with it.
func (c *Client) ScanJobs(ctx context.Context, scope provisioner.Scope, hot []string, walk bool) ([]provisioner.JobEvent, error) {
	ctx = provisioner.Background(ctx)
	t, err := parseScope(scope)
	if err != nil {
		return nil, err
	}
	if c.tokenClient == nil && scope.InstallationID == 0 {
		if scope.InstallationID, err = c.installationID(ctx, scope); err != nil {
			return nil, err
		}
	}
	g, err := c.clientFor(ctx, scope)
	if err != nil {
		return nil, err
	}
	st := c.scanStateFor(scope)
	st.mu.Lock()
	defer st.mu.Unlock()

	var out []provisioner.JobEvent
	done := map[string]bool{}
	look := func(r repoRef) error {
		done[strings.ToLower(r.full)] = true
		evs, err := c.scanRepo(ctx, g, st, r, scope, t.org)
		out = append(out, evs...)
		if t.org != "" && statusOf(err) == http.StatusNotFound {
			delete(st.repos, strings.ToLower(r.full)) // deleted or renamed
			return nil
		}
		if err != nil {
			return fmt.Errorf("github: scan %s: %w", r.full, err)
		}
		return nil
	}
	var refs []repoRef
	if t.repo != "" {
		refs = append(refs, repoRef{owner: t.owner, name: t.repo, full: t.owner + "/" + t.repo})
	}
	for _, full := range hot {
		owner, name, ok := strings.Cut(full, "/")
		if !ok || owner == "" || name == "" {
			continue
		}
		// Only this scope's repositories: an installation token covers
		// one account, and a repository scope its one repository.
		if (t.org != "" && !strings.EqualFold(owner, t.org)) || (t.repo != "" && !strings.EqualFold(full, t.owner+"/"+t.repo)) {
			continue
		}
		refs = append(refs, repoRef{owner: owner, name: name, full: full})
	}
	var errs []error
	for _, r := range refs {
		if done[strings.ToLower(r.full)] {
			continue
		}
		if err := look(r); err != nil {
			errs = append(errs, err)
			if errors.Is(err, provisioner.ErrDeferred) {
				return sortEvents(out), errors.Join(errs...)
			}
		}
	}
	if walk && t.org != "" {
		if err := c.walk(ctx, g, st, t.org, done, look); err != nil {
			errs = append(errs, err)
		}
	}
	return sortEvents(out), errors.Join(errs...)
}

// walk looks at the org's repositories in turn from where the last walk
// stopped, while the background ceiling leaves a reserve free.
func (c *Client) walk(ctx context.Context, g *gh.Client, st *scanState, org string, done map[string]bool, look func(repoRef) error) error {
	// A fresh (conditional) listing starts each round of the walk, at most
	// once a window, and at least every repoListEvery windows: a new
	// repository joins within a round.
	age := time.Since(st.listedAt)
	if st.list == nil || age >= repoListEvery*c.minute || (st.walkAt >= len(st.list) && age >= c.minute) {
		list, err := c.orgRepos(ctx, g, org)
		if err != nil {
			return fmt.Errorf("github: list the repositories of %s: %w", org, err)
		}
		st.list, st.listedAt = list, time.Now()
		st.walkAt = 0
	}
	if len(st.list) == 0 {
		return nil
	}
	reserve := 2 // the two run listings of one repository
	if c.bgWindow != nil {
		reserve += c.bgWindow.n / walkReserve
	}
	for range len(st.list) {
		if c.bgWindow != nil && c.backgroundFree() < reserve {
			// Wait a little for older requests to age out of the window
			// (the previous pass's, mostly); beyond that, resume here on
			// the next pass.
			wait := c.bgWindow.until(reserve)
			if wait > c.minute/walkWait {
				return nil
			}
			if err := sleepCtx(ctx, wait); err != nil {
				return err
			}
		}
		if st.walkAt >= len(st.list) {
			st.walkAt = 0 // a new round; listed afresh on the next pass
		}
		r := st.list[st.walkAt]
		if done[strings.ToLower(r.full)] {
			st.walkAt++
			continue
		}
		if err := look(r); err != nil {
			return err // this repository again next time
		}
		st.walkAt++
	}
	return nil
}

// scanRepo lists a repository's queued and in-progress runs and the jobs
// of those that changed, and returns the job events that are news.
func (c *Client) scanRepo(ctx context.Context, g *gh.Client, st *scanState, r repoRef, scope provisioner.Scope, org string) ([]provisioner.JobEvent, error) {
	key := strings.ToLower(r.full)
	rs := st.repos[key]
	switch {
	case rs == nil:
		rs = &repoState{runs: map[int64]runKey{}, jobs: map[int64]jobKey{}, resetAt: time.Now()}
		st.repos[key] = rs
	case time.Since(rs.resetAt) >= forgetEvery*c.minute:
		// Every run known is looked at again and every job reported
		// again; a run that ended meanwhile still gets its last look.
		for id := range rs.runs {
			rs.runs[id] = runKey{status: "forgotten"}
		}
		clear(rs.jobs)
		rs.resetAt = time.Now()
	}
	current := map[int64]runKey{}
	visibility := r.visibility
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
				// The run's repository says its visibility (workflow-run
				// schema: repository is a minimal-repository, which has
				// private and visibility).
				if v := repoVisibility(run.GetRepository()); v != "" {
					visibility = v
				}
				current[run.GetID()] = runKey{status: run.GetStatus(), updated: run.GetUpdatedAt().String(), attempt: run.GetRunAttempt()}
			}
			return len(list.WorkflowRuns), resp, err
		})
		if err != nil {
			return nil, fmt.Errorf("list %s workflow runs: %w", status, err)
		}
	}

	// Runs that changed, and runs that left both listings: finished,
	// cancelled or deleted.
	var changed []int64
	for id, k := range current {
		if old, ok := rs.runs[id]; !ok || old != k {
			changed = append(changed, id)
		}
	}
	for id := range rs.runs {
		if _, ok := current[id]; !ok {
			changed = append(changed, id)
		}
	}
	slices.Sort(changed)

	var out []provisioner.JobEvent
	for _, run := range changed {
		jobs, err := runJobs(ctx, g, r, run)
		if statusOf(err) == http.StatusNotFound {
			// Deleted: its jobs will never run. The refresh of queued
			// jobs learns that from GetWorkflowJobByID's 404.
			jobs, err = nil, nil
		}
		if err != nil {
			return sortEvents(out), fmt.Errorf("list the jobs of run %d: %w", run, err)
		}
		for _, j := range jobs {
			attempt := max(j.GetRunAttempt(), 1) // missing run_attempt: the first (#13)
			k := jobKey{status: j.GetStatus(), attempt: attempt, runID: run}
			if old, ok := rs.jobs[j.GetID()]; ok && old == k {
				continue
			}
			rs.jobs[j.GetID()] = k
			switch j.GetStatus() {
			case "queued", "waiting", "in_progress", "completed":
			default:
				continue // requested, pending: no runner can take it yet
			}
			ev := provisioner.JobEvent{
				Action: j.GetStatus(), Status: j.GetStatus(), JobID: j.GetID(), RunID: j.GetRunID(), RunAttempt: attempt,
				Name: j.GetName(), Workflow: j.GetWorkflowName(), Labels: slices.Clone(j.Labels), Repo: r.full,
				Visibility: visibility, InstallationID: scope.InstallationID, RunnerName: j.GetRunnerName(),
				Conclusion: j.GetConclusion(),
			}
			if org != "" {
				ev.Org = org
			}
			out = append(out, ev)
		}
		if k, ok := current[run]; ok {
			rs.runs[run] = k
		} else {
			delete(rs.runs, run)
			for id, jk := range rs.jobs {
				if jk.runID == run {
					delete(rs.jobs, id)
				}
			}
		}
	}
	return sortEvents(out), nil
}

// runJobs lists the jobs of a run's latest attempt.
func runJobs(ctx context.Context, g *gh.Client, r repoRef, run int64) ([]*gh.WorkflowJob, error) {
	var out []*gh.WorkflowJob
	err := eachPage(func(page int) (int, *gh.Response, error) {
		list, resp, err := g.Actions.ListWorkflowJobs(ctx, r.owner, r.name, run, &gh.ListWorkflowJobsOptions{
			Filter:      "latest",
			ListOptions: gh.ListOptions{PerPage: perPage, Page: page},
		})
		if list == nil {
			return 0, resp, err
		}
		out = append(out, list.Jobs...)
		return len(list.Jobs), resp, err
	})
	return out, err
}

// repoVisibility reads a REST repository object's visibility.
func repoVisibility(r *gh.Repository) string {
	if r == nil {
		return ""
	}
	return provisioner.RepoVisibility(r.GetVisibility(), r.Private)
}

// sortEvents orders events as the jobs were queued (job ids grow over
// time), a job's events in the order they happen.
func sortEvents(evs []provisioner.JobEvent) []provisioner.JobEvent {
	slices.SortStableFunc(evs, func(a, b provisioner.JobEvent) int { return cmp.Compare(a.JobID, b.JobID) })
	return evs
}
