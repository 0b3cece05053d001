package githubtest

// Reconciliation endpoints (reference §2.2): the repositories an
// installation or an org has, their workflow runs and the jobs of a run, so
// that a client can find queued jobs without having seen their webhooks.
// Also GET /app/installations. A workflow run is not stored: it is the set
// of jobs that share a RunID, and its status follows from theirs.

import (
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"
)

// reconState is the fake's state for this file and deliveries.go.
type reconState struct {
	repos          map[string]string // added with AddRepos, by lower-cased full name
	drop           func(Delivery) bool
	nextDeliveryID int64
}

// AddRepos makes repositories ("owner/name") known without queueing a job
// in them, so that they are listed by GET /orgs/{org}/repos and
// GET /installation/repositories. Repositories of queued jobs and of
// repository installations (Options.Installations) are known anyway.
// AddRepos panics on a name that is not owner/name.
func (s *Server) AddRepos(names ...string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.recon.repos == nil {
		s.recon.repos = map[string]string{}
	}
	for _, n := range names {
		owner, name, ok := strings.Cut(n, "/")
		if !ok || owner == "" || name == "" || strings.Contains(name, "/") {
			panic(fmt.Sprintf("githubtest: AddRepos: %q is not owner/name", n))
		}
		if _, ok := s.recon.repos[strings.ToLower(n)]; !ok {
			s.recon.repos[strings.ToLower(n)] = n
		}
	}
}

// QueueRun queues several jobs in one new workflow run, in order, and
// returns their ids. All specs must name the same repository; their RunID
// is ignored. Runners may take the first jobs before the last are queued,
// as on GitHub.
func (s *Server) QueueRun(specs ...JobSpec) []int64 {
	if len(specs) == 0 {
		panic("githubtest: QueueRun: a run needs at least one job")
	}
	for _, sp := range specs[1:] {
		if !strings.EqualFold(sp.Repo, specs[0].Repo) {
			panic(fmt.Sprintf("githubtest: QueueRun: jobs of one run in %q and %q", specs[0].Repo, sp.Repo))
		}
	}
	s.mu.Lock()
	run := s.nextRunID
	s.nextRunID++
	s.mu.Unlock()
	ids := make([]int64, 0, len(specs))
	for _, sp := range specs {
		sp.RunID = run
		ids = append(ids, s.QueueJob(sp))
	}
	return ids
}

// runIDLocked is the run a new job joins: spec.RunID, which must not be a
// run of another repository, or a new one.
func (s *Server) runIDLocked(spec JobSpec) int64 {
	if spec.RunID == 0 {
		id := s.nextRunID
		s.nextRunID++
		return id
	}
	for _, j := range s.jobs {
		if j.RunID == spec.RunID && !strings.EqualFold(j.Repo, spec.Repo) {
			panic(fmt.Sprintf("githubtest: QueueJob: run %d belongs to %s, not %s", spec.RunID, j.Repo, spec.Repo))
		}
	}
	// Never hand the id out again for a run of its own.
	s.nextRunID = max(s.nextRunID, spec.RunID+1)
	return spec.RunID
}

// knownReposLocked returns the full names of every repository the fake
// knows, sorted ignoring case.
func (s *Server) knownReposLocked() []string {
	seen := map[string]string{}
	add := func(full string) {
		if _, ok := seen[strings.ToLower(full)]; !ok {
			seen[strings.ToLower(full)] = full
		}
	}
	for _, id := range sortedKeys(s.jobs) {
		add(s.jobs[id].Repo)
	}
	for k, v := range s.recon.repos {
		seen[k] = v
	}
	for k := range s.opts.Installations {
		if strings.Contains(k, "/") {
			add(k)
		}
	}
	keys := make([]string, 0, len(seen))
	for k := range seen {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	out := make([]string, len(keys))
	for i, k := range keys {
		out[i] = seen[k]
	}
	return out
}

// isOrgLocked reports whether a login is an organization: one the App is
// installed on as a whole, or the Org of a queued job.
func (s *Server) isOrgLocked(login string) bool {
	if _, ok := s.opts.Installations[strings.ToLower(login)]; ok {
		return true
	}
	for _, j := range s.jobs {
		if strings.EqualFold(j.Org, login) {
			return true
		}
	}
	return false
}

func (s *Server) ownerTypeLocked(login string) string {
	if s.isOrgLocked(login) {
		return "Organization"
	}
	return "User"
}

// repoJSONLocked is the (minimal) repository object of REST listings.
func (s *Server) repoJSONLocked(full string) map[string]any {
	owner, name, _ := strings.Cut(full, "/")
	id := s.idLocked(full)
	return map[string]any{
		"id":        id,
		"node_id":   nodeID("R", id),
		"name":      name,
		"full_name": full,
		// OpenAPI repository / minimal-repository: private and
		// visibility.
		"private":    s.repoVisibilityLocked(full) != RepoPublic,
		"visibility": s.repoVisibilityLocked(full),
		"archived":   false,
		"disabled":   false,
		"html_url":   s.url + "/" + full,
		"url":        s.url + "/repos/" + full,
		"owner":      map[string]any{"login": owner, "id": s.idLocked(owner), "type": s.ownerTypeLocked(owner)},
	}
}

// paging reads per_page (30 by default, at most 100) and page (from 1).
func paging(r *http.Request) (perPage, page int) {
	q := r.URL.Query()
	perPage, page = 30, 1
	if v, err := strconv.Atoi(q.Get("per_page")); err == nil && v > 0 {
		perPage = min(v, 100)
	}
	if v, err := strconv.Atoi(q.Get("page")); err == nil && v > 0 {
		page = v
	}
	return perPage, page
}

// pageOf returns one page of items and sets the Link header.
func pageOf[T any](s *Server, w http.ResponseWriter, r *http.Request, all []T) []T {
	perPage, page := paging(r)
	out := []T{}
	if start := (page - 1) * perPage; start < len(all) {
		out = all[start:min(start+perPage, len(all))]
	}
	lastPage := max((len(all)+perPage-1)/perPage, 1)
	if link := linkHeader(s.url, r.URL, page, lastPage, perPage); link != "" {
		w.Header().Set("Link", link)
	}
	return out
}

// handleInstallations: GET /app/installations (App JWT), one entry per
// installation id in Options.Installations.
func (s *Server) handleInstallations(w http.ResponseWriter, r *http.Request) {
	if !s.checkJWT(w, r) {
		return
	}
	byID := map[int64][]string{}
	for key, id := range s.opts.Installations {
		byID[id] = append(byID[id], key)
	}
	s.mu.Lock()
	all := make([]map[string]any, 0, len(byID))
	for _, id := range sortedKeys(byID) {
		keys := byID[id]
		slices.Sort(keys)
		// A repository installation is on the repository's owner, with
		// only the selected repositories.
		account, selection := keys[0], "all"
		if owner, _, ok := strings.Cut(account, "/"); ok {
			account, selection = owner, "selected"
		}
		typ := s.ownerTypeLocked(account)
		m := s.installationJSON(id, account, selection)
		m["account"] = map[string]any{"login": account, "id": s.idLocked(account), "type": typ}
		m["target_type"] = typ
		if typ == "User" {
			m["html_url"] = s.url + "/settings/installations/" + strconv.FormatInt(id, 10)
		}
		all = append(all, m)
	}
	s.mu.Unlock()
	writeJSON(w, http.StatusOK, pageOf(s, w, r, all))
}

// handleInstallationRepos: GET /installation/repositories, for an
// installation token only.
func (s *Server) handleInstallationRepos(w http.ResponseWriter, r *http.Request) {
	tok := credentials(r)
	if tok == "" {
		writeError(w, http.StatusUnauthorized, "Requires authentication")
		return
	}
	s.mu.Lock()
	it, ok := s.instTokens[tok]
	s.mu.Unlock()
	isPAT := slices.ContainsFunc(s.opts.Tokens, func(t string) bool { return sameToken(t, tok) })
	switch {
	case ok && time.Now().After(it.expires):
		writeError(w, http.StatusUnauthorized, "Bad credentials")
		return
	case !ok && isPAT:
		// A valid token, but this endpoint is for installations only.
		writeError(w, http.StatusForbidden, "You must authenticate with an installation access token in order to list repositories for an installation.")
		return
	case !ok:
		writeError(w, http.StatusUnauthorized, "Bad credentials")
		return
	}
	s.mu.Lock()
	var all []map[string]any
	for _, full := range s.knownReposLocked() {
		if s.installationCovers(it.installationID, scope{repo: full}) {
			all = append(all, s.repoJSONLocked(full))
		}
	}
	s.mu.Unlock()
	writeJSON(w, http.StatusOK, map[string]any{
		"total_count":          len(all),
		"repository_selection": "all",
		"repositories":         pageOf(s, w, r, all),
	})
}

// handleOrgRepos: GET /orgs/{org}/repos. A login that owns no known
// repository and is not known as an org is not found.
func (s *Server) handleOrgRepos(w http.ResponseWriter, r *http.Request, sc scope) {
	s.mu.Lock()
	var all []map[string]any
	for _, full := range s.knownReposLocked() {
		if owner, _, _ := strings.Cut(full, "/"); strings.EqualFold(owner, sc.org) {
			all = append(all, s.repoJSONLocked(full))
		}
	}
	known := len(all) > 0 || s.isOrgLocked(sc.org)
	s.mu.Unlock()
	if !known {
		writeError(w, http.StatusNotFound, "Not Found")
		return
	}
	writeJSON(w, http.StatusOK, pageOf(s, w, r, all))
}

// repoKnownLocked reports whether a repository exists in the fake.
func (s *Server) repoKnownLocked(full string) bool {
	return slices.ContainsFunc(s.knownReposLocked(), func(k string) bool { return strings.EqualFold(k, full) })
}

// run is a workflow run: the jobs that share a RunID, by job id.
type run struct {
	id   int64
	jobs []*Job
}

// status derives the run's status from its jobs: queued while all are
// queued, completed once all are, in_progress in between (reference §2.2:
// a multi-job run is in_progress while later jobs still wait).
func (rn run) status() string {
	queued, completed := 0, 0
	for _, j := range rn.jobs {
		switch j.Status {
		case StatusQueued:
			queued++
		case StatusCompleted:
			completed++
		}
	}
	switch len(rn.jobs) {
	case queued:
		return StatusQueued
	case completed:
		return StatusCompleted
	}
	return StatusInProgress
}

// conclusion of a completed run: failure beats cancelled beats success.
func (rn run) conclusion() string {
	c := "success"
	for _, j := range rn.jobs {
		switch j.Conclusion {
		case "failure":
			return "failure"
		case "cancelled":
			c = "cancelled"
		}
	}
	return c
}

// runsLocked returns the repository's runs, newest first, as GitHub
// lists them, each as its latest attempt (jobs a re-run replaced are left
// out; rerun.go).
func (s *Server) runsLocked(repo string) []run {
	byID := map[int64]*run{}
	replaced := map[int64]bool{}
	for _, j := range s.jobs {
		if j.RerunOf != 0 {
			replaced[j.RerunOf] = true
		}
	}
	for _, id := range sortedKeys(s.jobs) {
		j := s.jobs[id]
		if !strings.EqualFold(j.Repo, repo) || replaced[j.ID] {
			continue
		}
		if byID[j.RunID] == nil {
			byID[j.RunID] = &run{id: j.RunID}
		}
		byID[j.RunID].jobs = append(byID[j.RunID].jobs, j)
	}
	ids := sortedKeys(byID)
	slices.Reverse(ids)
	out := make([]run, len(ids))
	for i, id := range ids {
		out[i] = *byID[id]
	}
	return out
}

// runStatuses are the values GitHub's status filter accepts (§2.2).
var runStatuses = []string{"completed", "action_required", "cancelled", "failure", "neutral", "skipped", "stale",
	"success", "timed_out", "in_progress", "queued", "requested", "waiting", "pending"}

// handleListRuns: GET /repos/{owner}/{repo}/actions/runs?status=….
func (s *Server) handleListRuns(w http.ResponseWriter, r *http.Request, sc scope) {
	status := r.URL.Query().Get("status")
	if status != "" && !slices.Contains(runStatuses, status) {
		writeError(w, http.StatusUnprocessableEntity, "Validation Failed")
		return
	}
	s.mu.Lock()
	if !s.repoKnownLocked(sc.repo) {
		s.mu.Unlock()
		writeError(w, http.StatusNotFound, "Not Found")
		return
	}
	var all []map[string]any
	for _, rn := range s.runsLocked(sc.repo) {
		st := rn.status()
		// The filter matches a status, or a completed run's conclusion.
		if status != "" && status != st && (st != StatusCompleted || status != rn.conclusion()) {
			continue
		}
		all = append(all, s.runJSONLocked(rn))
	}
	s.mu.Unlock()
	writeJSON(w, http.StatusOK, map[string]any{"total_count": len(all), "workflow_runs": pageOf(s, w, r, all)})
}

func (s *Server) runJSONLocked(rn run) map[string]any {
	first := rn.jobs[0]
	var conclusion *string
	updated := first.CreatedAt
	attempt := first.RunAttempt
	for _, j := range rn.jobs {
		updated = maxTime(updated, j.StartedAt, j.CompletedAt)
		attempt = max(attempt, j.RunAttempt)
	}
	st := rn.status()
	if st == StatusCompleted {
		c := rn.conclusion()
		conclusion = &c
	}
	api := s.url + "/repos/" + first.Repo + "/actions/runs/" + strconv.FormatInt(rn.id, 10)
	return map[string]any{
		"id":             rn.id,
		"name":           first.WorkflowName,
		"display_title":  first.WorkflowName,
		"node_id":        nodeID("WFR", rn.id),
		"head_branch":    first.HeadBranch,
		"head_sha":       first.HeadSHA,
		"run_number":     rn.id,
		"run_attempt":    attempt,
		"event":          "push",
		"status":         st,
		"conclusion":     conclusion,
		"workflow_id":    s.idLocked("workflow:" + first.Repo + ":" + first.WorkflowName),
		"url":            api,
		"html_url":       s.url + "/" + first.Repo + "/actions/runs/" + strconv.FormatInt(rn.id, 10),
		"jobs_url":       api + "/jobs",
		"created_at":     first.CreatedAt.Format(time.RFC3339),
		"updated_at":     updated.Format(time.RFC3339),
		"run_started_at": first.CreatedAt.Format(time.RFC3339),
		"repository":     s.repoJSONLocked(first.Repo),
	}
}

func maxTime(ts ...time.Time) time.Time {
	var m time.Time
	for _, t := range ts {
		if t.After(m) {
			m = t
		}
	}
	return m
}

// handleRunJobs: GET /repos/{owner}/{repo}/actions/runs/{run_id}/jobs.
// Every job here is of run attempt 1, so filter=latest and filter=all
// list the same jobs.
func (s *Server) handleRunJobs(w http.ResponseWriter, r *http.Request, sc scope) {
	switch r.URL.Query().Get("filter") {
	case "", "latest", "all":
	default:
		writeError(w, http.StatusUnprocessableEntity, "Validation Failed")
		return
	}
	id, err := strconv.ParseInt(r.PathValue("run_id"), 10, 64)
	s.mu.Lock()
	var all []workflowJobJSON
	for _, jid := range sortedKeys(s.jobs) {
		if j := s.jobs[jid]; err == nil && j.RunID == id && strings.EqualFold(j.Repo, sc.repo) {
			all = append(all, s.restJobLocked(j))
		}
	}
	s.mu.Unlock()
	if len(all) == 0 {
		writeError(w, http.StatusNotFound, "Not Found")
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"total_count": len(all), "jobs": pageOf(s, w, r, all)})
}
