package metrics

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/crabbox/crabbox-runner/provisioner"
)

// hostsLost counts the hosts lost while their runner was idle or busy
// (outbid, preempted, stopped by the provider, failed, unreachable, gone;
// provisioner/hostwatch.go) and the seconds they had been billed by then.
// reason comes from provisioner's fixed set, never from a provider's text.
type hostsLost struct {
	lost   *prometheus.CounterVec
	served *prometheus.CounterVec
}

var _ provisioner.HostLossObserver = (*Metrics)(nil)

func newHostsLost(reg prometheus.Registerer) *hostsLost {
	h := &hostsLost{
		lost: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "crabbox_hosts_lost_total",
			Help: "Hosts lost while their runner was idle or busy, by provider and reason (outbid, preempted, stopped by provider, host failed, host unreachable, host gone).",
		}, []string{"provider", "reason"}),
		served: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "crabbox_hosts_lost_served_seconds_total",
			Help: "Seconds the lost hosts had been billed (create answer to loss), by provider and reason.",
		}, []string{"provider", "reason"}),
	}
	reg.MustRegister(h.lost, h.served)
	return h
}

// HostLost implements provisioner.HostLossObserver.
func (m *Metrics) HostLost(provider, reason string, served time.Duration) {
	m.lost.lost.WithLabelValues(provider, reason).Inc()
	m.lost.served.WithLabelValues(provider, reason).Add(served.Seconds())
}
