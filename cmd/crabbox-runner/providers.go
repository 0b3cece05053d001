package main

import (
	"fmt"
	"log/slog"
	"net/http"
	"sort"
	"strings"

	"github.com/crabbox/crabbox-runner/internal/config"
	"github.com/crabbox/crabbox-runner/internal/metrics"
	"github.com/crabbox/crabbox-runner/providers/local"
	"github.com/crabbox/crabbox-runner/provisioner"
)

// providerFactory builds a provider from the configuration. Each provider
// registers its factory from its own file (provider_<name>.go). hc, when
// not nil, carries the provider's API requests (the smoke's --record).
type providerFactory func(cfg *config.Config, log *slog.Logger, hc *http.Client) (provisioner.Provider, error)

var providerFactories = map[string]providerFactory{
	"local": func(cfg *config.Config, log *slog.Logger, _ *http.Client) (provisioner.Provider, error) {
		return local.New(local.Options{Dir: cfg.Providers.Local.Dir, Logger: log.With("component", "local")})
	},
}

func newProvider(name string, cfg *config.Config, log *slog.Logger) (provisioner.Provider, error) {
	return newProviderHTTP(name, cfg, log, nil)
}

// newProviderHTTP is newProvider with the provider's API requests sent
// through hc (nil: the provider's own client).
func newProviderHTTP(name string, cfg *config.Config, log *slog.Logger, hc *http.Client) (provisioner.Provider, error) {
	f, ok := providerFactories[name]
	if !ok {
		names := make([]string, 0, len(providerFactories))
		for n := range providerFactories {
			names = append(names, n)
		}
		sort.Strings(names)
		return nil, fmt.Errorf("provider %s is not available (available: %s)", name, strings.Join(names, ", "))
	}
	p, err := f(cfg, log, hc)
	if err != nil {
		return nil, fmt.Errorf("provider %s: %w", name, err)
	}
	return p, nil
}

// requestCounter is a provider whose API client reports each HTTP attempt
// (the Vast provider's CountRequests; see provider_vast.go).
type requestCounter interface {
	CountRequests(func(endpoint string, status int))
}

// countProviderRequests points every provider that reports its HTTP
// attempts at crabbox_provider_requests_total, under its configured name.
func countProviderRequests(providers map[string]provisioner.Provider, m *metrics.Metrics) {
	for name, p := range providers {
		if rc, ok := p.(requestCounter); ok {
			rc.CountRequests(func(endpoint string, status int) { m.ProviderRequest(name, endpoint, status) })
		}
	}
}

// endpointPolicy is where serve may SSH to: public addresses, and private
// ones for the providers whose config allows them. The local provider's
// hosts are sshd on 127.0.0.1 by nature (tests, demo), so it always may.
func endpointPolicy(cfg *config.Config) provisioner.EndpointPolicy {
	return provisioner.EndpointPolicy{
		AllowPrivate: map[string]bool{
			"local":  true,
			"vast":   cfg.Providers.Vast.AllowPrivateEndpoints,
			"lambda": cfg.Providers.Lambda.AllowPrivateEndpoints,
		},
		Hint: func(provider string) string { return "providers." + provider + ".allow_private_endpoints" },
	}
}

// warnPrivateEndpoints says at start when a cloud's hosts may name private
// addresses: right for a private network or a test, a hole otherwise.
func warnPrivateEndpoints(cfg *config.Config, log *slog.Logger) {
	for name, on := range map[string]bool{"vast": cfg.Providers.Vast.AllowPrivateEndpoints, "lambda": cfg.Providers.Lambda.AllowPrivateEndpoints} {
		if on {
			log.Warn("config: providers." + name + ".allow_private_endpoints is on: a " + name +
				" host may name a loopback or private address and crabbox-runner will connect there")
		}
	}
}
