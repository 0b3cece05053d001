package main

import (
	"net"

	"github.com/crabbox/crabbox-runner/internal/config"
)

// checkAccess says who will read serve's status page and /metrics
// (access.go). serve decides from the address it binds; doctor, which binds
// nothing, predicts it from the configured one.
func (d *doctor) checkAccess(cfg *config.Config) {
	const what = "status page and /metrics"
	switch {
	case cfg.StatusToken != "":
		d.ok(what, "need the status token on "+cfg.Listen)
	case loopbackListen(cfg.Listen):
		d.ok(what, "open without a token: "+cfg.Listen+" is loopback only (pass only /webhook through a proxy)")
	default:
		d.ok(what, "closed (403) on "+cfg.Listen+": no status token and not loopback; set CRABBOX_STATUS_TOKEN_FILE to read them")
	}
	if cfg.MetricsListen != "" {
		d.ok("metrics listener", "/metrics without a token on "+cfg.MetricsListen)
	}
}

// loopbackListen reports whether a listen address names loopback only: a
// loopback IP literal or "localhost".
func loopbackListen(listen string) bool {
	host, _, err := net.SplitHostPort(listen)
	if err != nil {
		return false
	}
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}
