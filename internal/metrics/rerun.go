package metrics

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/crabbox/crabbox-runner/provisioner"
)

var _ provisioner.RerunObserver = (*Metrics)(nil)

func newRerunMetrics(reg prometheus.Registerer) *prometheus.CounterVec {
	c := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "crabbox_jobs_rerun_total",
		Help: "Jobs lost with their host and re-run through GitHub's API (rerun_lost_jobs), by class and result: requested (GitHub made a new attempt), refused (GitHub will not: a missing Actions write permission, a run too old), gone (the job no longer exists), gave_up (the run kept running past the re-run window), not_again (the job was itself a re-run).",
	}, []string{"class", "result"})
	reg.MustRegister(c)
	return c
}

// JobRerun implements provisioner.RerunObserver.
func (m *Metrics) JobRerun(class, result string) {
	m.rerun.WithLabelValues(class, result).Inc()
}
