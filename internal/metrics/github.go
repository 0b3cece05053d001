package metrics

import (
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// GitHubMetrics counts GitHub requests and keeps each credential's budget
// (issue 13). It implements the GitHub client's Observer (package github
// names the interface; this package does not import it). Endpoints are
// route templates and credentials "installation:ID", "token" or "app":
// bounded by the code and the App's installations.
type GitHubMetrics struct {
	requests  *prometheus.CounterVec
	refused   *prometheus.CounterVec
	remaining *prometheus.GaugeVec
	limit     *prometheus.GaugeVec
	reset     *prometheus.GaugeVec

	mu sync.Mutex
}

// GitHub registers the GitHub request metrics and returns their observer.
func (m *Metrics) GitHub() *GitHubMetrics {
	g := &GitHubMetrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "crabbox_github_requests_total",
			Help: "Requests sent to GitHub's REST API by endpoint (route template) and outcome (ok, not_modified, rate_limited, secondary_limited, client_error, server_error, network_error).",
		}, []string{"endpoint", "outcome"}),
		refused: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "crabbox_github_requests_refused_total",
			Help: "GitHub calls not sent because of the request budget, by credential and reason (reserve: background work deferred; exhausted; secondary limit).",
		}, []string{"credential", "reason"}),
		remaining: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "crabbox_github_rate_remaining",
			Help: "Requests left in the credential's primary rate-limit window, from its last answer's x-ratelimit-remaining.",
		}, []string{"credential"}),
		limit: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "crabbox_github_rate_limit",
			Help: "The credential's primary rate limit per window, from x-ratelimit-limit.",
		}, []string{"credential"}),
		reset: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "crabbox_github_rate_reset_timestamp_seconds",
			Help: "When the credential's rate-limit window resets (Unix time), from x-ratelimit-reset.",
		}, []string{"credential"}),
	}
	m.reg.MustRegister(g.requests, g.refused, g.remaining, g.limit, g.reset)
	return g
}

// Request counts one request sent to GitHub.
func (g *GitHubMetrics) Request(endpoint, outcome string) {
	g.requests.WithLabelValues(endpoint, outcome).Inc()
}

// Rate records a credential's budget.
func (g *GitHubMetrics) Rate(credential string, limit, remaining int, reset time.Time) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.limit.WithLabelValues(credential).Set(float64(limit))
	g.remaining.WithLabelValues(credential).Set(float64(remaining))
	g.reset.WithLabelValues(credential).Set(float64(reset.Unix()))
}

// Refused counts a call not sent because of the budget.
func (g *GitHubMetrics) Refused(credential, endpoint, reason string) {
	g.refused.WithLabelValues(credential, reason).Inc()
}
