package metrics

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/crabbox/crabbox-runner/provisioner"
)

// hedges counts hedged provisioning (issue 18, provisioner/hedge.go): the
// second hosts started for slow leases, those not started and why, who won
// each race, and what the losing hosts cost.
type hedges struct {
	started *prometheus.CounterVec
	skipped *prometheus.CounterVec
	won     *prometheus.CounterVec
	extra   *prometheus.CounterVec
}

var _ provisioner.HedgeObserver = (*Metrics)(nil)

func newHedges(reg prometheus.Registerer) *hedges {
	h := &hedges{
		started: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "crabbox_hedges_started_total",
			Help: "Hedges started: a second host for a lease whose runner was not online hedge_after after its create call, by class.",
		}, []string{"class"}),
		skipped: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "crabbox_hedges_skipped_total",
			Help: "Leases due a hedge that got none, by class and reason: no_room (max_leases), budget (max_spend_per_hour), job_gone.",
		}, []string{"class", "reason"}),
		won: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "crabbox_hedges_won_total",
			Help: "Hedged leases whose race was decided, by class and winner: first (the hedged lease) or second (the hedge).",
		}, []string{"class", "winner"}),
		extra: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "crabbox_hedge_extra_cost_dollars_total",
			Help: "What the hosts that lost a hedge race cost: price × seconds from create answer to destroy, by class.",
		}, []string{"class"}),
	}
	reg.MustRegister(h.started, h.skipped, h.won, h.extra)
	return h
}

// HedgeStarted implements provisioner.HedgeObserver.
func (m *Metrics) HedgeStarted(class string) { m.hedges.started.WithLabelValues(class).Inc() }

// HedgeSkipped implements provisioner.HedgeObserver.
func (m *Metrics) HedgeSkipped(class, reason string) {
	m.hedges.skipped.WithLabelValues(class, reason).Inc()
}

// HedgeWon implements provisioner.HedgeObserver.
func (m *Metrics) HedgeWon(class, winner string) { m.hedges.won.WithLabelValues(class, winner).Inc() }

// HedgeExtraCost implements provisioner.HedgeObserver.
func (m *Metrics) HedgeExtraCost(class string, dollars float64) {
	if dollars > 0 {
		m.hedges.extra.WithLabelValues(class).Add(dollars)
	}
}
