package main

import (
	"fmt"
	"net"
	"net/http"

	"github.com/crabbox/crabbox-runner/status"
	"github.com/crabbox/crabbox-runner/webhook"
)

// Closed by default (issue 15): what serve shows beyond /webhook and the
// probes (the status page and /metrics: repository and job names, costs,
// logged warnings) is read only with the status token, or, without one,
// when serve listens on loopback only. Anywhere else it answers 403 with
// how to open it. The metrics listener is the operator's explicit way to
// scrape without the token.

// loopbackOnly reports whether a listener is reachable from this host only:
// its bound address is a loopback IP (127.0.0.0/8, ::1). The bound address,
// not the configured string, decides: "localhost" counts because it was
// resolved to one loopback address before binding (Go binds one of the
// addresses a name resolves to), and a hosts file mapping it elsewhere
// yields a non-loopback address, which closes the page. ":8080",
// "0.0.0.0:8080" and "[::]:8080" bind the unspecified address: not loopback.
func loopbackOnly(addr net.Addr) bool {
	ta, ok := addr.(*net.TCPAddr)
	return ok && ta.IP.IsLoopback()
}

// newGate is who reads the status page and /metrics on serve's address.
func (a *app) newGate() *status.Gate {
	return status.NewGate(a.cfg.StatusToken, loopbackOnly(a.listener.Addr()))
}

// listenMetrics opens the metrics listener when metrics_listen is set: GET
// /metrics there, without the token, and no other route.
func (a *app) listenMetrics() error {
	if a.cfg.MetricsListen == "" {
		return nil
	}
	l, err := net.Listen("tcp", a.cfg.MetricsListen)
	if err != nil {
		return fmt.Errorf("metrics_listen %s: %w", a.cfg.MetricsListen, err)
	}
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", a.metrics.Handler())
	a.metricsListener, a.metricsServer = l, webhook.Server(mux)
	return nil
}

// logAccess says at start who can read the status page and /metrics, and
// where.
func (a *app) logAccess() {
	addr := a.listener.Addr().String()
	switch a.gate.Access() {
	case status.TokenOnly:
		a.log.Info("the status page at / and /metrics need the status token", "addr", addr)
	case status.Open:
		a.log.Info("the status page at / and /metrics are open without a token: serve listens on loopback only", "addr", addr)
	default:
		a.log.Warn("the status page at / and /metrics are closed (403): serve listens beyond loopback and has no status token; "+
			"set CRABBOX_STATUS_TOKEN or CRABBOX_STATUS_TOKEN_FILE, listen on loopback only, or set metrics_listen for Prometheus", "addr", addr)
	}
	if a.metricsListener != nil {
		a.log.Info("/metrics is also served without a token on the metrics listener", "metrics_addr", a.metricsListener.Addr().String())
	}
}
