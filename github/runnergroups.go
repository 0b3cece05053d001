package github

// Whether the configured runner group may take a repository's jobs
// (provisioner.RunnerGroups). On GitHub a runner group serves only private
// repositories unless it allows public ones, a "selected" group only its
// selected repositories, a "private" group only private repositories
// (OpenAPI runner-groups-org; docs "Managing access to self-hosted runners
// using groups"). A runner registered in a group that cannot serve the job
// never gets it, and its host bills until the idle deadline.
//
// Cost: per org, the group's own record (GET /orgs/{org}/actions/
// runner-groups/{id}) and, for a "selected" group only, its repositories
// (…/{id}/repositories, 100 a page), both cached for RunnerGroupTTL. The
// other way, GET …/runner-groups?visible_to_repository={repo}, costs one
// request per repository per TTL: for an org of 1,000 repositories with
// jobs in 100 of them that is 100 requests a TTL against 1 (or 1 + the
// selected list's pages, 10 for a group open to all 1,000). The group
// record also says why a repository is refused, which the listing does not.
// The repository's visibility comes with the job (webhook repository
// object), so no repository lookup is needed.

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"time"

	gh "github.com/google/go-github/v62/github"

	"github.com/crabbox/crabbox-runner/provisioner"
)

// DefaultRunnerGroupTTL is how long a runner group's settings are trusted:
// a change an admin makes is seen within it.
const DefaultRunnerGroupTTL = 2 * time.Minute

// runnerGroupErrorTTL spaces out retries after GitHub could not answer.
const runnerGroupErrorTTL = 30 * time.Second

// maxSelectedPages bounds the selected-repositories listing (100 a page).
// A longer list is read as incomplete: repositories past it are refused.
const maxSelectedPages = 50

var _ provisioner.RunnerGroups = (*Client)(nil)

// groupInfo is what GitHub said about the group in one org.
type groupInfo struct {
	name string
	// notFound: GitHub answered 404 for the group.
	notFound bool
	// visibility: all, selected or private; anything else (or "") is odd.
	visibility string
	// allowsPublic is nil when the answer did not say.
	allowsPublic *bool
	restricted   bool
	// selected holds lower-cased full names, for a "selected" group.
	selected map[string]bool
	// truncated: the selected list was longer than we read.
	truncated bool
}

// groupEntry caches one org's answer; mu makes concurrent callers share
// one fetch.
type groupEntry struct {
	mu      sync.Mutex
	info    *groupInfo
	err     error
	expires time.Time
	// logged is the last odd-answer message logged, so that it is logged
	// once, not on every refresh; loggedRestricted likewise for a workflow
	// restriction.
	logged           string
	loggedRestricted bool
}

// runnerGroups is the Client's runner-group cache.
type runnerGroups struct {
	ttl time.Duration
	log *slog.Logger
	now func() time.Time

	mu    sync.Mutex
	byOrg map[string]*groupEntry // by lower-cased org login (and installation)
}

// GroupServes reports whether the configured runner group (Config.
// RunnerGroupID) may take jobs of repo in the scope. Repository runners
// serve their own repository: runner groups are an org feature. A
// visibility of "" (unknown) is taken as public, the stricter reading.
// Odd answers (no or unknown visibility, allows_public_repositories
// missing for a public repository, a group that does not exist) give
// ok=false with the reason, never ok=true.
func (c *Client) GroupServes(ctx context.Context, scope provisioner.Scope, repo, visibility string) (bool, string, error) {
	if scope.Repo != "" {
		return true, "", nil
	}
	t, err := parseScope(scope)
	if err != nil {
		return false, "", err
	}
	owner, _, ok := strings.Cut(repo, "/")
	if !ok || !strings.EqualFold(owner, t.org) {
		return false, fmt.Sprintf("repository %s is not in org %s, whose runner group was asked", repo, t.org), nil
	}
	info, err := c.groupInfo(ctx, scope, t.org)
	if err != nil {
		return false, "", err
	}
	return c.verdict(info, t.org, repo, visibility)
}

func (c *Client) verdict(info *groupInfo, org, repo, visibility string) (bool, string, error) {
	gname := fmt.Sprintf("runner group %d", c.groupID)
	if info.name != "" {
		gname = fmt.Sprintf("runner group %q (id %d)", info.name, c.groupID)
	}
	if info.notFound {
		return false, fmt.Sprintf("%s does not exist in org %s: set github.runner_group_id to a group of the org (GitHub answered 404)", gname, org), nil
	}
	vis := strings.ToLower(strings.TrimSpace(visibility))
	public := vis != provisioner.VisibilityPrivate && vis != provisioner.VisibilityInternal
	what := vis
	if vis == "" {
		what = "of unknown visibility, taken as public,"
	}
	if public {
		switch {
		case info.allowsPublic == nil:
			return false, fmt.Sprintf("%s in org %s: GitHub's answer does not say whether it allows public repositories; %s is %s so it gets no runner", gname, org, repo, what), nil
		case !*info.allowsPublic:
			return false, fmt.Sprintf("%s in org %s does not allow public repositories and %s is %s: allow public repositories in the group's settings (GitHub's default is not to)", gname, org, repo, what), nil
		}
	}
	switch info.visibility {
	case "all":
	case "selected":
		if !info.selected[strings.ToLower(repo)] {
			more := ""
			if info.truncated {
				more = fmt.Sprintf(" (only the first %d were read)", maxSelectedPages*100)
			}
			return false, fmt.Sprintf("%s in org %s is limited to selected repositories and %s is not one of them%s: add it to the group", gname, org, repo, more), nil
		}
	case "private":
		// GitHub: "limit access to private repositories"; whether an
		// enterprise's internal repositories count is not documented, so
		// they do not (the stricter reading, as in the fake).
		if vis != provisioner.VisibilityPrivate {
			return false, fmt.Sprintf("%s in org %s serves private repositories only and %s is %s", gname, org, repo, what), nil
		}
	case "":
		return false, fmt.Sprintf("%s in org %s: GitHub's answer has no visibility; no runner until it does", gname, org), nil
	default:
		return false, fmt.Sprintf("%s in org %s has visibility %q, which crabbox-runner does not know; no runner until it is all, selected or private", gname, org, info.visibility), nil
	}
	return true, "", nil
}

// groupInfo returns the org's cached answer, fetching it when stale.
func (c *Client) groupInfo(ctx context.Context, scope provisioner.Scope, org string) (*groupInfo, error) {
	key := strings.ToLower(org)
	if scope.InstallationID != 0 {
		key = fmt.Sprintf("%s#%d", key, scope.InstallationID)
	}
	rg := &c.groups
	rg.mu.Lock()
	if rg.byOrg == nil {
		rg.byOrg = map[string]*groupEntry{}
	}
	e := rg.byOrg[key]
	if e == nil {
		e = &groupEntry{}
		rg.byOrg[key] = e
	}
	rg.mu.Unlock()

	e.mu.Lock()
	defer e.mu.Unlock()
	now := rg.clock()
	if now.Before(e.expires) {
		return e.info, e.err
	}
	info, err := c.fetchGroup(ctx, scope, org)
	if err != nil {
		e.info, e.err, e.expires = nil, err, now.Add(runnerGroupErrorTTL)
		return nil, err
	}
	e.info, e.err, e.expires = info, nil, now.Add(rg.ttlOr())
	if msg := oddness(info, c.groupID, org); msg != e.logged {
		if msg != "" {
			rg.logger().Warn("runner group answer is odd; jobs it concerns get no runner", "org", org, "runner_group_id", c.groupID, "problem", msg)
		}
		e.logged = msg
	}
	if info.restricted && !e.loggedRestricted {
		// The job's workflow file is not in the workflow_job event, so
		// this cannot be checked here; doctor warns about it too.
		rg.logger().Warn("runner group is limited to selected workflows, which crabbox-runner cannot check: a job of another workflow gets a host but no runner",
			"org", org, "runner_group_id", c.groupID)
	}
	e.loggedRestricted = info.restricted
	return info, nil
}

// oddness describes what is missing or unknown in the answer, or "".
func oddness(info *groupInfo, id int64, org string) string {
	var probs []string
	switch {
	case info.notFound:
		probs = append(probs, fmt.Sprintf("runner group %d not found in org %s", id, org))
	case info.visibility == "":
		probs = append(probs, "no visibility field")
	case info.visibility != "all" && info.visibility != "selected" && info.visibility != "private":
		probs = append(probs, fmt.Sprintf("unknown visibility %q", info.visibility))
	}
	if !info.notFound && info.allowsPublic == nil {
		probs = append(probs, "no allows_public_repositories field (public repositories refused)")
	}
	if info.truncated {
		probs = append(probs, fmt.Sprintf("more than %d selected repositories; the rest are refused", maxSelectedPages*100))
	}
	return strings.Join(probs, "; ")
}

// fetchGroup reads the group and, for a "selected" group, its repositories.
func (c *Client) fetchGroup(ctx context.Context, scope provisioner.Scope, org string) (*groupInfo, error) {
	g, err := c.clientFor(ctx, scope)
	if err != nil {
		return nil, err
	}
	grp, _, err := g.Actions.GetOrganizationRunnerGroup(ctx, org, c.groupID)
	if err != nil {
		if statusOf(err) == http.StatusNotFound {
			return &groupInfo{notFound: true}, nil
		}
		return nil, fmt.Errorf("github: read runner group %d of org %s: %w", c.groupID, org, err)
	}
	info := &groupInfo{
		name:         grp.GetName(),
		visibility:   strings.ToLower(strings.TrimSpace(grp.GetVisibility())),
		allowsPublic: grp.AllowsPublicRepositories,
		restricted:   grp.GetRestrictedToWorkflows(),
	}
	if info.visibility != "selected" {
		return info, nil
	}
	info.selected = map[string]bool{}
	opts := &gh.ListOptions{PerPage: 100}
	for page := 0; ; page++ {
		if page == maxSelectedPages {
			info.truncated = true
			return info, nil
		}
		list, resp, err := g.Actions.ListRepositoryAccessRunnerGroup(ctx, org, c.groupID, opts)
		if err != nil {
			return nil, fmt.Errorf("github: list the repositories of runner group %d of org %s: %w", c.groupID, org, err)
		}
		for _, r := range list.Repositories {
			if name := r.GetFullName(); name != "" {
				info.selected[strings.ToLower(name)] = true
			}
		}
		if resp.NextPage == 0 {
			return info, nil
		}
		opts.Page = resp.NextPage
	}
}

func (rg *runnerGroups) clock() time.Time {
	if rg.now != nil {
		return rg.now()
	}
	return time.Now()
}

func (rg *runnerGroups) ttlOr() time.Duration {
	if rg.ttl > 0 {
		return rg.ttl
	}
	return DefaultRunnerGroupTTL
}

func (rg *runnerGroups) logger() *slog.Logger {
	if rg.log != nil {
		return rg.log
	}
	return slog.New(slog.DiscardHandler)
}

// RunnerGroupDetail is the configured runner group of an org as GitHub
// describes it, for doctor.
type RunnerGroupDetail struct {
	ID    int64
	Found bool // false: GitHub answered 404
	Name  string
	// Visibility as GitHub sent it, lower-cased; "" when missing.
	Visibility string
	// AllowsPublic is nil when the answer did not say.
	AllowsPublic          *bool
	RestrictedToWorkflows bool
	// SelectedRepositories counts a "selected" group's repositories;
	// SelectedTruncated says there were more than were read.
	SelectedRepositories int
	SelectedTruncated    bool
}

// RunnerGroup reads the configured runner group of an org scope, uncached.
func (c *Client) RunnerGroup(ctx context.Context, scope provisioner.Scope) (RunnerGroupDetail, error) {
	t, err := parseScope(scope)
	if err != nil {
		return RunnerGroupDetail{}, err
	}
	if t.org == "" {
		return RunnerGroupDetail{}, fmt.Errorf("github: runner groups belong to organizations, not to repository %s", scope.Repo)
	}
	info, err := c.fetchGroup(ctx, scope, t.org)
	if err != nil {
		return RunnerGroupDetail{}, err
	}
	return RunnerGroupDetail{
		ID: c.groupID, Found: !info.notFound, Name: info.name, Visibility: info.visibility,
		AllowsPublic: info.allowsPublic, RestrictedToWorkflows: info.restricted,
		SelectedRepositories: len(info.selected), SelectedTruncated: info.truncated,
	}, nil
}
