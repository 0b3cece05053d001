package main

import (
	"log/slog"

	"github.com/crabbox/crabbox-runner/internal/config"
	"github.com/crabbox/crabbox-runner/providers/vast"
	"github.com/crabbox/crabbox-runner/provisioner"
)

// The Vast provider: VAST_API_KEY and providers.vast (api_url, ssh_user,
// min_request_interval). One provider, and so one rate limiter, serves
// every lease of the process.
func init() {
	providerFactories[vast.Name] = func(cfg *config.Config, log *slog.Logger) (provisioner.Provider, error) {
		return vast.New(vast.Config{
			APIKey:             cfg.VastAPIKey,
			APIURL:             cfg.Providers.Vast.APIURL,
			SSHUser:            cfg.Providers.Vast.SSHUser,
			MinRequestInterval: cfg.Providers.Vast.MinRequestInterval,
			Logger:             log.With("component", "vast"),
		})
	}
}
