package github

import "strings"

// routes are the REST paths this client calls, as the docs name their
// parameters. Requests are counted by route, never by URL: a URL holds
// owners, repositories and ids without bound, a metric label must not.
var routes = []string{
	"/app",
	"/app/installations",
	"/app/installations/{installation_id}/access_tokens",
	"/app/hook/deliveries",
	"/app/hook/deliveries/{delivery_id}/attempts",
	"/installation/repositories",
	"/rate_limit",
	"/orgs/{org}/installation",
	"/orgs/{org}/repos",
	"/orgs/{org}/actions/runners",
	"/orgs/{org}/actions/runners/downloads",
	"/orgs/{org}/actions/runners/generate-jitconfig",
	"/orgs/{org}/actions/runners/{runner_id}",
	"/orgs/{org}/actions/runner-groups",
	"/orgs/{org}/actions/runner-groups/{runner_group_id}",
	"/orgs/{org}/actions/runner-groups/{runner_group_id}/repositories",
	"/repos/{owner}/{repo}",
	"/repos/{owner}/{repo}/installation",
	"/repos/{owner}/{repo}/actions/runners",
	"/repos/{owner}/{repo}/actions/runners/downloads",
	"/repos/{owner}/{repo}/actions/runners/generate-jitconfig",
	"/repos/{owner}/{repo}/actions/runners/{runner_id}",
	"/repos/{owner}/{repo}/actions/runs",
	"/repos/{owner}/{repo}/actions/runs/{run_id}/jobs",
	"/repos/{owner}/{repo}/actions/jobs/{job_id}",
	"/repos/{owner}/{repo}/actions/jobs/{job_id}/rerun",
}

var routeSegments = func() [][]string {
	out := make([][]string, len(routes))
	for i, r := range routes {
		out[i] = strings.Split(strings.TrimPrefix(r, "/"), "/")
	}
	return out
}()

// route names a request for counting: "GET /orgs/{org}/actions/runners",
// or "GET other" for a path this client does not know. path is relative to
// the API base (GHES's /api/v3 already cut off).
func route(method, path string) string {
	segs := strings.Split(strings.Trim(path, "/"), "/")
	best := ""
	bestLiterals := -1
	for i, pat := range routeSegments {
		if len(pat) != len(segs) {
			continue
		}
		literals, ok := 0, true
		for j, p := range pat {
			if strings.HasPrefix(p, "{") {
				if segs[j] == "" {
					ok = false
					break
				}
				continue
			}
			if p != segs[j] {
				ok = false
				break
			}
			literals++
		}
		// "/runners/downloads" is a literal, not a {runner_id}.
		if ok && literals > bestLiterals {
			best, bestLiterals = routes[i], literals
		}
	}
	if best == "" {
		best = "other"
	}
	return method + " " + best
}
