package main

import (
	"log/slog"
	"net/http"

	"github.com/crabbox/crabbox-runner/internal/config"
	"github.com/crabbox/crabbox-runner/providers/vast"
	"github.com/crabbox/crabbox-runner/provisioner"
)

// The Vast provider: VAST_API_KEY and providers.vast (api_url, ssh_user,
// min_request_interval: zero paces each endpoint at Vast's documented
// threshold). One provider, and so one pacer per endpoint, one shared
// listing and one shared search, serves every lease of the process. serve
// counts its HTTP attempts in crabbox_provider_requests_total{provider=
// "vast"} through Provider.CountRequests (countProviderRequests, app.go).
func init() {
	providerFactories[vast.Name] = func(cfg *config.Config, log *slog.Logger, hc *http.Client) (provisioner.Provider, error) {
		return vast.New(vast.Config{
			APIKey:             cfg.VastAPIKey,
			APIURL:             cfg.Providers.Vast.APIURL,
			SSHUser:            cfg.Providers.Vast.SSHUser,
			MinRequestInterval: cfg.Providers.Vast.MinRequestInterval,
			HTTPClient:         hc,
			Logger:             log.With("component", "vast"),
		})
	}
}
