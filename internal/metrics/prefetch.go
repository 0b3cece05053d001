package metrics

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/crabbox/crabbox-runner/provisioner"
)

// prefetch counts how bootstrapped hosts got their runner: from the
// boot-time prefetch (ready, or waited for), downloaded over SSH, or
// taken from the host's image (issue 18).
type prefetch struct {
	got *prometheus.CounterVec
}

var _ provisioner.PrefetchObserver = (*Metrics)(nil)

func newPrefetch(reg prometheus.Registerer) *prefetch {
	p := &prefetch{got: prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "crabbox_runner_prefetch_total",
		Help: "Bootstrapped hosts by how the runner was got: prefetched (ready when the install began), waited (a prefetch under way), downloaded (by the install), image (the host's image had it).",
	}, []string{"provider", "result"})}
	reg.MustRegister(p.got)
	return p
}

// RunnerGot implements provisioner.PrefetchObserver.
func (m *Metrics) RunnerGot(provider, result string) {
	switch result {
	case provisioner.RunnerPrefetched, provisioner.RunnerWaited, provisioner.RunnerDownloaded, provisioner.RunnerImage:
		m.prefetch.got.WithLabelValues(provider, result).Inc()
	}
}
