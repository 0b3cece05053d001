// Package metrics exposes crabbox-runner's Prometheus metrics on /metrics:
// webhook deliveries, leases by state, the time each phase of a lease
// takes, provider calls, spend, and the waits that limits cause. Label
// values are bounded (classes, providers and states come from the config
// and the code, never from a request), so no series can explode.
package metrics

import (
	"context"
	"errors"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/crabbox/crabbox-runner/provisioner"
)

// Metrics holds every collector of one process.
type Metrics struct {
	reg *prometheus.Registry

	deliveries    *prometheus.CounterVec
	deliveryTime  prometheus.Histogram
	phases        *prometheus.HistogramVec
	providerCalls *prometheus.CounterVec
	providerTime  *prometheus.HistogramVec
	spent         *prometheus.CounterVec
	limitWaits    *prometheus.HistogramVec
	policy        *policyMetrics
	rerun         *prometheus.CounterVec
	provider      *providerRequests
	extra         *extraHosts
	hedges        *hedges
	prefetch      *prefetch
	warm          *warmMetrics
	gate          *gpuGate
	foreign       *foreignEvents
	lost          *hostsLost

	avoided *offersAvoided

	shed prometheus.Counter

	endpoints *endpointsRefused
}

var _ provisioner.Observer = (*Metrics)(nil)

// New registers the collectors, the Go runtime's and the process's included.
func New() *Metrics {
	m := &Metrics{
		reg: prometheus.NewRegistry(),
		deliveries: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "crabbox_webhook_deliveries_total",
			Help: "Webhook deliveries by event, action and result (accepted, duplicate, ignored, unauthorized, malformed, too_large, busy, error).",
		}, []string{"event", "action", "result"}),
		deliveryTime: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "crabbox_webhook_ack_seconds",
			Help:    "Time from reading a delivery to answering it.",
			Buckets: []float64{.0005, .001, .002, .005, .01, .025, .05, .1, .25, .5, 1},
		}),
		phases: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "crabbox_lease_phase_seconds",
			Help:    "Duration of each phase of a lease: queued_to_create, create_to_ssh, ssh_to_online, job_run, completed_to_destroyed.",
			Buckets: []float64{.05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600, 4 * 3600},
		}, []string{"class", "provider", "phase"}),
		providerCalls: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "crabbox_provider_calls_total",
			Help: "Provider API calls by provider, operation and status (ok, not_found, unavailable, error).",
		}, []string{"provider", "operation", "status"}),
		providerTime: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "crabbox_provider_call_seconds",
			Help:    "Duration of provider calls, retries and rate-limit waits included.",
			Buckets: prometheus.ExponentialBuckets(0.01, 2.5, 10),
		}, []string{"provider", "operation"}),
		spent: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "crabbox_spent_dollars_total",
			Help: "Cost of released leases (price per hour × host lifetime), by class and provider, since this process started.",
		}, []string{"class", "provider"}),
		limitWaits: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "crabbox_limit_wait_seconds",
			Help:    "How long work waited for a limit (max_leases, max_spend_per_hour, provider launch rate, github JIT rate) before it went on.",
			Buckets: []float64{.01, .1, .5, 1, 5, 15, 30, 60, 120, 300, 900},
		}, []string{"limit"}),
	}
	m.reg.MustRegister(m.deliveries, m.deliveryTime, m.phases, m.providerCalls, m.providerTime, m.spent, m.limitWaits,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	m.policy = newPolicyMetrics(m.reg)
	m.rerun = newRerunMetrics(m.reg)
	m.provider = newProviderRequests(m.reg)
	m.extra = newExtraHosts(m.reg)
	m.hedges = newHedges(m.reg)
	m.prefetch = newPrefetch(m.reg)
	m.warm = newWarmMetrics(m.reg)
	m.gate = newGPUGate(m.reg)
	m.foreign = newForeignEvents(m.reg)
	m.lost = newHostsLost(m.reg)

	m.avoided = newOffersAvoided(m.reg)

	m.shed = newConnsShed(m.reg)

	m.endpoints = newEndpointsRefused(m.reg)
	return m
}

// Registry is the registry, for collectors added later and for tests.
func (m *Metrics) Registry() *prometheus.Registry { return m.reg }

// Handler serves the metrics in Prometheus' text format.
func (m *Metrics) Handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{})
}

// Delivery counts one webhook delivery.
func (m *Metrics) Delivery(event, action, result string, d time.Duration) {
	m.deliveries.WithLabelValues(event, action, result).Inc()
	m.deliveryTime.Observe(d.Seconds())
}

// Phase implements provisioner.Observer.
func (m *Metrics) Phase(class, provider string, phase provisioner.Phase, d time.Duration) {
	m.phases.WithLabelValues(class, provider, string(phase)).Observe(d.Seconds())
}

// Spent implements provisioner.Observer.
func (m *Metrics) Spent(class, provider string, dollars float64) {
	if dollars > 0 {
		m.spent.WithLabelValues(class, provider).Add(dollars)
	}
}

// LimitWait implements provisioner.Observer.
func (m *Metrics) LimitWait(limit string, d time.Duration) {
	m.limitWaits.WithLabelValues(limit).Observe(d.Seconds())
}

// ProviderCall counts one call to a provider.
func (m *Metrics) ProviderCall(provider, op string, err error, d time.Duration) {
	status := "ok"
	switch {
	case err == nil:
	case errors.Is(err, provisioner.ErrNotFound):
		status = "not_found"
	case errors.Is(err, provisioner.ErrOfferUnavailable):
		status = "unavailable"
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		status = "timeout"
	default:
		status = "error"
	}
	m.providerCalls.WithLabelValues(provider, op, status).Inc()
	m.providerTime.WithLabelValues(provider, op).Observe(d.Seconds())
}
