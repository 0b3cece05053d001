package metrics

import (
	"strconv"

	"github.com/prometheus/client_golang/prometheus"
)

// providerRequests counts the HTTP requests provider clients send, one per
// attempt (retries included), by the endpoint's route template: what the
// provider's per-endpoint rate limits and its bill of calls see, below the
// provisioner's view in crabbox_provider_calls_total.
type providerRequests struct {
	requests *prometheus.CounterVec
}

func newProviderRequests(reg *prometheus.Registry) *providerRequests {
	r := &providerRequests{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "crabbox_provider_requests_total",
			Help: "HTTP requests sent to a provider's API, one per attempt, by provider, endpoint (method and route template) and status (HTTP code, or \"error\" when no answer came).",
		}, []string{"provider", "endpoint", "status"}),
	}
	reg.MustRegister(r.requests)
	return r
}

// ProviderRequest counts one HTTP attempt to a provider's API. endpoint is
// the method and route template ("PUT /api/v0/asks/{id}/"), never a path
// with ids in it; status is the HTTP status, or 0 when no answer came.
func (m *Metrics) ProviderRequest(provider, endpoint string, status int) {
	s := "error"
	if status > 0 {
		s = strconv.Itoa(status)
	}
	m.provider.requests.WithLabelValues(provider, endpoint, s).Inc()
}
