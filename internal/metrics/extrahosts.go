package metrics

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/crabbox/crabbox-runner/provisioner"
)

// extraHosts counts the hosts destroyed because a lease had two: a create
// whose outcome was unknown rented one after all, while the lease went on
// to another offer (issue 14).
type extraHosts struct {
	destroyed *prometheus.CounterVec
}

var _ provisioner.ExtraHostObserver = (*Metrics)(nil)

func newExtraHosts(reg prometheus.Registerer) *extraHosts {
	e := &extraHosts{destroyed: prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "crabbox_extra_hosts_destroyed_total",
		Help: "Hosts destroyed by the sweep that follows a create whose outcome was unknown: a second host of one lease, by provider.",
	}, []string{"provider"})}
	reg.MustRegister(e.destroyed)
	return e
}

// ExtraHostDestroyed implements provisioner.ExtraHostObserver.
func (m *Metrics) ExtraHostDestroyed(provider string) {
	m.extra.destroyed.WithLabelValues(provider).Inc()
}
