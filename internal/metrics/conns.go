package metrics

import "github.com/prometheus/client_golang/prometheus"

func newConnsShed(reg prometheus.Registerer) prometheus.Counter {
	c := prometheus.NewCounter(prometheus.CounterOpts{
		Name: "crabbox_http_connections_shed_total",
		Help: "Connections to serve's address closed at its maximum of open connections (webhook.DefaultMaxConns): the oldest without a request, or a new one when all held requests.",
	})
	reg.MustRegister(c)
	return c
}

// ConnectionShed counts a connection closed at the connection limit
// (webhook.LimitConns): a flood of connections, or a limit too low.
func (m *Metrics) ConnectionShed() { m.shed.Inc() }
