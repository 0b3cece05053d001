package main

// What a time-to-runner run costs in requests: serve's own counters
// (docs/metrics.md), read from /metrics at the end of the run.

import (
	"fmt"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
)

// ttrRequests counts requests by endpoint (the metrics' route templates).
type ttrRequests struct {
	Provider, GitHub map[string]int
	// GitHubFree are conditional requests answered 304: not counted
	// against GitHub's rate limit.
	GitHubFree int
}

var ttrMetricLine = regexp.MustCompile(`^(crabbox_provider_requests_total|crabbox_github_requests_total)\{(.*)\} (\S+)$`)
var ttrEndpointLabel = regexp.MustCompile(`endpoint="([^"]*)"`)

// parseTTRRequests reads the request counters of serve's /metrics.
func parseTTRRequests(metrics string) ttrRequests {
	out := ttrRequests{Provider: map[string]int{}, GitHub: map[string]int{}}
	for _, line := range strings.Split(metrics, "\n") {
		m := ttrMetricLine.FindStringSubmatch(line)
		if m == nil {
			continue
		}
		n, err := strconv.ParseFloat(m[3], 64)
		ep := ttrEndpointLabel.FindStringSubmatch(m[2])
		if err != nil || ep == nil {
			continue
		}
		switch {
		case m[1] == "crabbox_provider_requests_total":
			out.Provider[ep[1]] += int(n)
		case strings.Contains(m[2], `outcome="not_modified"`):
			out.GitHubFree += int(n)
		default:
			out.GitHub[ep[1]] += int(n)
		}
	}
	return out
}

func sumCounts(m map[string]int) int {
	n := 0
	for _, v := range m {
		n += v
	}
	return n
}

// fmtCounts lists counts by endpoint, largest first.
func fmtCounts(m map[string]int) string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.SortFunc(keys, func(a, b string) int {
		if m[a] != m[b] {
			return m[b] - m[a]
		}
		return strings.Compare(a, b)
	})
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = fmt.Sprintf("%s %d", k, m[k])
	}
	return strings.Join(parts, ", ")
}

func TestTTRRequestsFromMetrics(t *testing.T) {
	metrics := `# HELP crabbox_provider_requests_total HTTP requests sent to a provider's API.
crabbox_provider_requests_total{endpoint="PUT /api/v0/asks/{id}/",provider="vast",status="200"} 3
crabbox_provider_requests_total{endpoint="PUT /api/v0/asks/{id}/",provider="vast",status="410"} 1
crabbox_provider_requests_total{endpoint="GET /api/v0/instances/{id}/",provider="vast",status="200"} 40
crabbox_github_requests_total{endpoint="POST /orgs/{org}/actions/runners/generate-jitconfig",outcome="ok"} 2
crabbox_github_requests_total{endpoint="GET /orgs/{org}/actions/runners",outcome="not_modified"} 7
crabbox_github_requests_total{endpoint="GET /orgs/{org}/actions/runners",outcome="ok"} 1
crabbox_github_requests_refused_total{credential="app",reason="reserve"} 5
`
	r := parseTTRRequests(metrics)
	if r.Provider["PUT /api/v0/asks/{id}/"] != 4 || r.Provider["GET /api/v0/instances/{id}/"] != 40 || sumCounts(r.Provider) != 44 {
		t.Errorf("provider %v", r.Provider)
	}
	if sumCounts(r.GitHub) != 3 || r.GitHubFree != 7 {
		t.Errorf("github %v, free %d", r.GitHub, r.GitHubFree)
	}
	if got := fmtCounts(r.Provider); got != "GET /api/v0/instances/{id}/ 40, PUT /api/v0/asks/{id}/ 4" {
		t.Errorf("fmtCounts: %s", got)
	}
}
