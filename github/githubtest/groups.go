package githubtest

// Runner groups and repository visibility, as GitHub has them, deciding
// which runner may take which job.
//
// Sources:
//   - OpenAPI (@octokit/openapi 23.0.2) schema runner-groups-org and the
//     operations actions/list-self-hosted-runner-groups-for-org (with
//     visible_to_repository), actions/get-self-hosted-runner-group-for-org
//     and actions/list-repo-access-to-self-hosted-runner-group-in-org;
//     actions/create-self-hosted-runner-group-for-org for the defaults
//     (visibility "all", allows_public_repositories false).
//   - GitHub docs "Managing access to self-hosted runners using groups":
//     "By default, only private repositories can access runners in a
//     runner group, but you can override this"; a runner group can be
//     limited to a list of repositories and to a list of workflows.
//   - reference/github-runners.md §3.3 (group fields), §3.4 (routing: a job
//     goes to an idle runner whose labels cover it), §4.4 ("any runner with
//     the matching labels that is available to the repo (runner group
//     access) can take the job").

import (
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"
)

// Runner group visibilities (OpenAPI create-self-hosted-runner-group-for-org
// visibility enum).
const (
	GroupVisibilityAll      = "all"
	GroupVisibilitySelected = "selected"
	GroupVisibilityPrivate  = "private"
)

// Repository visibilities (OpenAPI schema repository.visibility).
const (
	RepoPublic   = "public"
	RepoPrivate  = "private"
	RepoInternal = "internal"
)

// RunnerGroup is an organization's runner group (OpenAPI runner-groups-org).
type RunnerGroup struct {
	ID   int64
	Name string
	// Org is the org the group belongs to; empty means every org (the
	// fake's shorthand, so that one Options serves several orgs) that has
	// no group of its own with the same id.
	Org string
	// Visibility is all, selected or private; "all" when empty (the
	// OpenAPI default for a new group). "private" limits the group to
	// private repositories; GitHub does not say whether an enterprise's
	// internal repositories count, so the fake takes the stricter reading:
	// they do not.
	Visibility string
	// Default marks the org's default group ("Default", id 1 in the
	// OpenAPI examples).
	Default bool
	// AllowsPublicRepositories: false by default, as on GitHub; a public
	// repository's jobs never go to the group's runners unless it is true.
	AllowsPublicRepositories bool
	// SelectedRepositories are "owner/name", for Visibility "selected".
	SelectedRepositories []string
	// RestrictedToWorkflows limits the group to SelectedWorkflows, each
	// "owner/repo/path/to/workflow.yml@ref" (OpenAPI selected_workflows:
	// "a ref, tag, or long SHA is required").
	RestrictedToWorkflows bool
	SelectedWorkflows     []string
	// Inherited: the group comes from the enterprise.
	Inherited bool
	// OmitFields drops fields from the group's JSON (e.g.
	// "allows_public_repositories", "visibility") to test a client against
	// an odd answer; GitHub's schema marks them required.
	OmitFields []string
	// RawVisibility, when set, replaces Visibility with a value GitHub does
	// not document, to test a client against it; the fake's runners in
	// such a group take no job.
	RawVisibility string
}

func (g *RunnerGroup) visibility() string {
	if g.RawVisibility != "" {
		return g.RawVisibility
	}
	if g.Visibility == "" {
		return GroupVisibilityAll
	}
	return g.Visibility
}

// initGroups builds the fake's groups from Options: Groups, plus the
// legacy RunnerGroups map (id → name, visibility all, private repositories
// only, as GitHub's own default group). {1: "Default"} when both are empty.
func initGroups(opts Options) []*RunnerGroup {
	var out []*RunnerGroup
	for _, g := range opts.Groups {
		g := g
		g.SelectedRepositories = slices.Clone(g.SelectedRepositories)
		g.SelectedWorkflows = slices.Clone(g.SelectedWorkflows)
		out = append(out, &g)
	}
	legacy := opts.RunnerGroups
	if len(legacy) == 0 && len(opts.Groups) == 0 {
		legacy = map[int64]string{1: "Default"}
	}
	for _, id := range sortedKeys(legacy) {
		if slices.ContainsFunc(out, func(g *RunnerGroup) bool { return g.ID == id }) {
			continue
		}
		out = append(out, &RunnerGroup{ID: id, Name: legacy[id], Default: id == 1})
	}
	return out
}

// SetRunnerGroup adds a runner group, or replaces the one with the same id
// and org: an admin changing the group's settings. Runners already in the
// group are judged by the new settings from their next poll on.
func (s *Server) SetRunnerGroup(g RunnerGroup) {
	g.SelectedRepositories = slices.Clone(g.SelectedRepositories)
	g.SelectedWorkflows = slices.Clone(g.SelectedWorkflows)
	s.mu.Lock()
	defer s.mu.Unlock()
	for i, have := range s.groups {
		if have.ID == g.ID && strings.EqualFold(have.Org, g.Org) {
			s.groups[i] = &g
			s.notifyLocked()
			return
		}
	}
	s.groups = append(s.groups, &g)
	s.notifyLocked()
}

// RemoveRunnerGroup deletes a group; its runners take no more jobs.
func (s *Server) RemoveRunnerGroup(org string, id int64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.groups = slices.DeleteFunc(s.groups, func(g *RunnerGroup) bool {
		return g.ID == id && strings.EqualFold(g.Org, org)
	})
	s.notifyLocked()
}

// groupLocked is the group with that id in an org, or nil.
func (s *Server) groupLocked(org string, id int64) *RunnerGroup {
	for _, g := range s.orgGroupsLocked(org) {
		if g.ID == id {
			return g
		}
	}
	return nil
}

// orgGroupsLocked are an org's groups by id: its own, and the every-org
// ones (Org "") whose id it does not have a group of its own for.
func (s *Server) orgGroupsLocked(org string) []*RunnerGroup {
	var out []*RunnerGroup
	for _, g := range s.groups {
		if g.Org != "" && strings.EqualFold(g.Org, org) {
			out = append(out, g)
		}
	}
	for _, g := range s.groups {
		if g.Org == "" && !slices.ContainsFunc(out, func(o *RunnerGroup) bool { return o.ID == g.ID }) {
			out = append(out, g)
		}
	}
	slices.SortFunc(out, func(a, b *RunnerGroup) int { return int(a.ID - b.ID) })
	return out
}

// SetRepoVisibility sets a repository's visibility (public, private or
// internal) and makes it known, as AddRepos does. Repositories are private
// unless set otherwise: the fake's tests stand for an org's private
// repositories, the case self-hosted runners are meant for (GitHub docs
// recommend them "only with private repositories"); tests of public
// repositories say so.
func (s *Server) SetRepoVisibility(repo, visibility string) {
	switch visibility {
	case RepoPublic, RepoPrivate, RepoInternal:
	default:
		panic(fmt.Sprintf("githubtest: SetRepoVisibility: %q is not public, private or internal", visibility))
	}
	s.AddRepos(repo)
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.repoVis == nil {
		s.repoVis = map[string]string{}
	}
	s.repoVis[strings.ToLower(repo)] = visibility
	s.notifyLocked()
}

// repoVisibilityLocked is a repository's visibility, private by default.
func (s *Server) repoVisibilityLocked(repo string) string {
	if v, ok := s.repoVis[strings.ToLower(repo)]; ok {
		return v
	}
	return RepoPrivate
}

// groupServesLocked reports whether the group's runners may take jobs of
// repo, and if not, why. workflowRef is the job's workflow
// ("owner/repo/.github/workflows/f.yml@refs/heads/main"), or empty when
// the question is about the repository alone (visible_to_repository).
func (s *Server) groupServesLocked(g *RunnerGroup, repo, workflowRef string) (bool, string) {
	vis := s.repoVisibilityLocked(repo)
	if vis == RepoPublic && !g.AllowsPublicRepositories {
		return false, "public repository, group does not allow public repositories"
	}
	switch g.visibility() {
	case GroupVisibilityAll:
	case GroupVisibilitySelected:
		if !slices.ContainsFunc(g.SelectedRepositories, func(r string) bool { return strings.EqualFold(r, repo) }) {
			return false, "repository not selected"
		}
	case GroupVisibilityPrivate:
		if vis != RepoPrivate {
			return false, "group serves private repositories only"
		}
	default:
		return false, "unknown group visibility"
	}
	if g.RestrictedToWorkflows && workflowRef != "" && !workflowAllowed(g.SelectedWorkflows, workflowRef) {
		return false, "workflow not selected"
	}
	return true, ""
}

// workflowAllowed matches a job's workflow against selected_workflows,
// ignoring case; a selected entry with a bare branch (…@main) matches the
// job's refs/heads/main too.
func workflowAllowed(selected []string, ref string) bool {
	path, at, _ := strings.Cut(ref, "@")
	for _, sel := range selected {
		sp, sat, _ := strings.Cut(sel, "@")
		if !strings.EqualFold(sp, path) {
			continue
		}
		if strings.EqualFold(sat, at) || strings.EqualFold("refs/heads/"+sat, at) {
			return true
		}
	}
	return false
}

// groupJSONLocked is the runner-groups-org object.
func (s *Server) groupJSONLocked(org string, g *RunnerGroup) map[string]any {
	base := fmt.Sprintf("%s/orgs/%s/actions/runner-groups/%d", s.url, org, g.ID)
	out := map[string]any{
		"id":                              g.ID,
		"name":                            g.Name,
		"visibility":                      g.visibility(),
		"default":                         g.Default,
		"runners_url":                     base + "/runners",
		"inherited":                       g.Inherited,
		"allows_public_repositories":      g.AllowsPublicRepositories,
		"restricted_to_workflows":         g.RestrictedToWorkflows,
		"selected_workflows":              append([]string{}, g.SelectedWorkflows...),
		"workflow_restrictions_read_only": false,
	}
	// "Not present unless visibility was set to `selected`" (schema).
	if g.visibility() == GroupVisibilitySelected {
		out["selected_repositories_url"] = base + "/repositories"
	}
	for _, f := range g.OmitFields {
		delete(out, f)
	}
	return out
}

// handleListGroups: GET /orgs/{org}/actions/runner-groups
// ?visible_to_repository=&per_page=&page= (actions/list-self-hosted-runner-
// groups-for-org). visible_to_repository is the bare repository name, the
// org being in the path (go-github's ListOrgRunnerGroupOptions test sends
// visible_to_repository=github); "Only return runner groups that are
// allowed to be used by this repository" — visibility, selected
// repositories and the public flag; workflows are not part of the question.
func (s *Server) handleListGroups(w http.ResponseWriter, r *http.Request, sc scope) {
	s.mu.Lock()
	visibleTo := r.URL.Query().Get("visible_to_repository")
	var all []map[string]any
	for _, g := range s.orgGroupsLocked(sc.org) {
		if visibleTo != "" {
			if ok, _ := s.groupServesLocked(g, sc.org+"/"+visibleTo, ""); !ok {
				continue
			}
		}
		all = append(all, s.groupJSONLocked(sc.org, g))
	}
	s.mu.Unlock()
	page := pageOf(s, w, r, all)
	writeJSON(w, http.StatusOK, map[string]any{"total_count": len(all), "runner_groups": page})
}

// handleGetGroup: GET /orgs/{org}/actions/runner-groups/{runner_group_id}
// (actions/get-self-hosted-runner-group-for-org); 404 for a group the org
// does not have.
func (s *Server) handleGetGroup(w http.ResponseWriter, r *http.Request, sc scope) {
	id, err := strconv.ParseInt(r.PathValue("runner_group_id"), 10, 64)
	s.mu.Lock()
	var g *RunnerGroup
	if err == nil {
		g = s.groupLocked(sc.org, id)
	}
	if g == nil {
		s.mu.Unlock()
		writeError(w, http.StatusNotFound, "Not Found")
		return
	}
	body := s.groupJSONLocked(sc.org, g)
	s.mu.Unlock()
	writeJSON(w, http.StatusOK, body)
}

// handleGroupRepos: GET /orgs/{org}/actions/runner-groups/{id}/repositories
// (actions/list-repo-access-to-self-hosted-runner-group-in-org):
// {total_count, repositories: [minimal-repository]}, paged. GitHub keeps the
// list only for a "selected" group; for another group the fake answers an
// empty list (the stricter plausible answer: a client must not read "no
// repositories" as "every repository").
func (s *Server) handleGroupRepos(w http.ResponseWriter, r *http.Request, sc scope) {
	id, err := strconv.ParseInt(r.PathValue("runner_group_id"), 10, 64)
	s.mu.Lock()
	var g *RunnerGroup
	if err == nil {
		g = s.groupLocked(sc.org, id)
	}
	if g == nil {
		s.mu.Unlock()
		writeError(w, http.StatusNotFound, "Not Found")
		return
	}
	var all []map[string]any
	if g.visibility() == GroupVisibilitySelected {
		names := slices.Clone(g.SelectedRepositories)
		slices.SortFunc(names, func(a, b string) int { return strings.Compare(strings.ToLower(a), strings.ToLower(b)) })
		for _, n := range names {
			all = append(all, s.repoJSONLocked(n))
		}
	}
	s.mu.Unlock()
	page := pageOf(s, w, r, all)
	writeJSON(w, http.StatusOK, map[string]any{"total_count": len(all), "repositories": page})
}
