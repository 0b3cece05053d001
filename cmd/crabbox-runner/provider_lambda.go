package main

import (
	"log/slog"
	"net/http"

	"github.com/crabbox/crabbox-runner/internal/config"
	"github.com/crabbox/crabbox-runner/providers/lambda"
	"github.com/crabbox/crabbox-runner/provisioner"
)

var _ requestCounter = (*lambda.Provider)(nil)

// lambdaHook lets in-process tests adjust the Lambda provider the factory
// builds: the fake's hosts listen on loopback ports rather than port 22 of
// their IP, and tests cannot wait 12 s between launches. It is nil in
// production.
var lambdaHook func(*lambda.Options)

// The Lambda provider: LAMBDA_API_KEY and providers.lambda (api_url,
// ssh_user, min_request_interval). One provider, and so one pair of rate
// limits (about 1 request/s, 1 launch per 12 s), serves every lease of the
// process. Its HTTP attempts are counted in crabbox_provider_requests_total
// through lambda.Provider.CountRequests, which serve calls once its metrics
// exist (countProviderRequests in providers.go).
func init() {
	providerFactories[lambda.Name] = func(cfg *config.Config, log *slog.Logger, hc *http.Client) (provisioner.Provider, error) {
		opts := lambda.Options{
			APIKey:             cfg.LambdaAPIKey,
			APIURL:             cfg.Providers.Lambda.APIURL,
			SSHUser:            cfg.Providers.Lambda.SSHUser,
			MinRequestInterval: cfg.Providers.Lambda.MinRequestInterval,
			LaunchInterval:     cfg.Providers.Lambda.LaunchInterval,
			HTTPClient:         hc,
			Logger:             log.With("component", "lambda"),
		}
		if lambdaHook != nil {
			lambdaHook(&opts)
		}
		return lambda.New(opts)
	}
}
