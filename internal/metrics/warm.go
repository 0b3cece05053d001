package metrics

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/crabbox/crabbox-runner/provisioner"
)

// warmMetrics counts what the warm hosts of classes with min_idle did
// (issue 18); the gauge of warm hosts now is the store collector's.
type warmMetrics struct {
	created, jobs, expired *prometheus.CounterVec
	idleCost               *prometheus.CounterVec
}

var _ provisioner.WarmObserver = (*Metrics)(nil)

func newWarmMetrics(reg prometheus.Registerer) *warmMetrics {
	w := &warmMetrics{
		created: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "crabbox_warm_created_total",
			Help: "Warm leases made to keep a class's min_idle: the first ones, and the replacements of those a job took or that expired, by class.",
		}, []string{"class"}),
		jobs: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "crabbox_warm_jobs_total",
			Help: "Jobs that took the idle runner of a warm host, by class.",
		}, []string{"class"}),
		expired: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "crabbox_warm_expired_total",
			Help: "Warm hosts destroyed after their idle_timeout without a job, by class.",
		}, []string{"class"}),
		idleCost: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "crabbox_warm_idle_cost_dollars_total",
			Help: "Cost of warm hosts released without running a job (price per hour × their boot and idle time), by class: what min_idle costs beyond jobs.",
		}, []string{"class"}),
	}
	reg.MustRegister(w.created, w.jobs, w.expired, w.idleCost)
	return w
}

// WarmCreated implements provisioner.WarmObserver.
func (m *Metrics) WarmCreated(class string) { m.warm.created.WithLabelValues(class).Inc() }

// WarmJob implements provisioner.WarmObserver.
func (m *Metrics) WarmJob(class string) { m.warm.jobs.WithLabelValues(class).Inc() }

// WarmExpired implements provisioner.WarmObserver.
func (m *Metrics) WarmExpired(class string) { m.warm.expired.WithLabelValues(class).Inc() }

// WarmIdleSpent implements provisioner.WarmObserver.
func (m *Metrics) WarmIdleSpent(class, _ string, dollars float64) {
	if dollars > 0 {
		m.warm.idleCost.WithLabelValues(class).Add(dollars)
	}
}

// warmHostsDesc is the gauge of warm hosts now, read from the store.
var warmHostsDesc = prometheus.NewDesc("crabbox_warm_hosts",
	"Warm leases of classes with min_idle not yet taken by a job: starting (being rented, booting, installing the runner) or ready (runner online and idle), by class.",
	[]string{"class", "state"}, nil)

// collectWarm sends the warm hosts gauge for the live leases.
func collectWarm(ch chan<- prometheus.Metric, leases []*provisioner.Lease) {
	type key struct{ class, state string }
	counts := map[key]int{}
	for _, l := range leases {
		if !l.Warm || l.ReleaseReason != "" {
			continue
		}
		switch {
		case l.State.Starting():
			counts[key{l.Class, "starting"}]++
		case l.State == provisioner.StateIdle:
			counts[key{l.Class, "ready"}]++
		}
	}
	for k, n := range counts {
		ch <- prometheus.MustNewConstMetric(warmHostsDesc, prometheus.GaugeValue, float64(n), k.class, k.state)
	}
}
