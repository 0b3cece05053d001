package metrics

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/crabbox/crabbox-runner/provisioner"
)

// policyMetrics count the jobs that are not served and what runners that
// never got their job cost (issue 13: policy, runner groups, no lease loop).
type policyMetrics struct {
	refused     *prometheus.CounterVec
	unusedSpent *prometheus.CounterVec
}

var _ provisioner.PolicyObserver = (*Metrics)(nil)

func newPolicyMetrics(reg prometheus.Registerer) *policyMetrics {
	pm := &policyMetrics{
		refused: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "crabbox_jobs_refused_total",
			Help: "Jobs given no lease, once per job and reason: default_labels_only, repository_not_allowed, public_repository (class policy), runner_group, runner_group_unknown (the runner group cannot or could not say it serves the repository), retry_backoff and never_assigned (runners came online and GitHub never gave them the job). class is empty when the job named none.",
		}, []string{"reason", "class"}),
		unusedSpent: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "crabbox_unused_runner_spent_dollars_total",
			Help: "Cost of hosts whose runner came online and was released idle while the job it was made for stayed queued (GitHub never assigned it), by class and provider.",
		}, []string{"class", "provider"}),
	}
	reg.MustRegister(pm.refused, pm.unusedSpent)
	// Every reason starts at zero, so that alerts and rates see the series.
	for _, k := range provisioner.UnservableKinds {
		pm.refused.WithLabelValues(string(k), "")
	}
	return pm
}

// JobUnservable implements provisioner.PolicyObserver.
func (m *Metrics) JobUnservable(class string, kind provisioner.UnservableKind) {
	m.policy.refused.WithLabelValues(string(kind), class).Inc()
}

// UnusedSpent implements provisioner.PolicyObserver.
func (m *Metrics) UnusedSpent(class, provider string, dollars float64) {
	if dollars > 0 {
		m.policy.unusedSpent.WithLabelValues(class, provider).Add(dollars)
	}
}
