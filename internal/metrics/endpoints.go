package metrics

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/crabbox/crabbox-runner/provisioner"
)

// endpointsRefused counts hosts whose SSH endpoint was not a public address
// (issue 15): each one was destroyed undialled.
type endpointsRefused struct {
	refused *prometheus.CounterVec
}

var _ provisioner.EndpointObserver = (*Metrics)(nil)

func newEndpointsRefused(reg prometheus.Registerer) *endpointsRefused {
	e := &endpointsRefused{refused: prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "crabbox_ssh_endpoints_refused_total",
		Help: "Hosts whose SSH endpoint was loopback, private or otherwise not public, refused before any connection, by provider.",
	}, []string{"provider"})}
	reg.MustRegister(e.refused)
	return e
}

// EndpointRefused implements provisioner.EndpointObserver.
func (m *Metrics) EndpointRefused(provider string) {
	m.endpoints.refused.WithLabelValues(provider).Inc()
}
