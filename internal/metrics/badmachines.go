package metrics

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/crabbox/crabbox-runner/provisioner"
)

// offersAvoided counts offers on machines marked bad (issue 17): skipped,
// or, for a capacity pool, put behind the other offers. The gauge of the
// marks themselves is read from the store at scrape time (store.go).
type offersAvoided struct {
	avoided *prometheus.CounterVec
}

var _ provisioner.BadMachineObserver = (*Metrics)(nil)

func newOffersAvoided(reg prometheus.Registerer) *offersAvoided {
	o := &offersAvoided{avoided: prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "crabbox_offers_avoided_total",
		Help: "Offers on machines marked bad, counted on each look at the offers: skipped, or tried_last (a Lambda instance type in a region), by provider.",
	}, []string{"provider", "how"})}
	reg.MustRegister(o.avoided)
	return o
}

// OffersAvoided implements provisioner.BadMachineObserver.
func (m *Metrics) OffersAvoided(provider, how string, n int) {
	m.avoided.avoided.WithLabelValues(provider, how).Add(float64(n))
}
