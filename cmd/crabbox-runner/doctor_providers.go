package main

// doctor's provider checks: each provider's key and each class's offers
// there (moved as is from doctor.go).

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"time"

	"github.com/crabbox/crabbox-runner/internal/config"
	"github.com/crabbox/crabbox-runner/providers/lambda"
	"github.com/crabbox/crabbox-runner/providers/vast"
	"github.com/crabbox/crabbox-runner/provisioner"
)

// checkProviders checks each provider the classes name: its key, with one
// read-only call (a list of instances), then each class's offers there.
func (d *doctor) checkProviders(ctx context.Context, cfg *config.Config, log *slog.Logger) {
	classes := cfg.ProvisionerClasses()
	var names []string
	for _, c := range classes {
		for _, name := range c.Providers {
			if !slices.Contains(names, name) {
				names = append(names, name)
			}
		}
	}
	found := map[string]int{} // class → offers over all its providers
	for _, name := range names {
		if !d.checkProviderKey(ctx, name, cfg, log) {
			continue
		}
		p, err := newProvider(name, cfg, log)
		if err != nil {
			d.fail("provider "+name, err.Error(), "correct providers."+name+" in the configuration")
			continue
		}
		for _, c := range classes {
			if !slices.Contains(c.Providers, name) {
				continue
			}
			what := fmt.Sprintf("offers for class %s on %s", c.Name, name)
			octx, cancel := context.WithTimeout(ctx, time.Minute)
			offers, err := p.Offers(octx, c)
			cancel()
			if err != nil {
				problem, fix := providerProblem(name, cfg, err)
				d.fail(what, problem, fix)
				continue
			}
			var fit []provisioner.Offer
			for _, of := range offers {
				if c.MaxPricePerHour <= 0 || of.PricePerHour <= c.MaxPricePerHour {
					fit = append(fit, of)
				}
			}
			found[c.Name] += len(fit)
			if len(fit) == 0 {
				d.ok(what, "none fit right now")
				continue
			}
			d.ok(what, fmt.Sprintf("%d, cheapest %s at $%.2f/h", len(fit), fit[0].GPU, fit[0].PricePerHour))
		}
	}
	for _, c := range classes {
		if n, ok := found[c.Name]; ok && n == 0 {
			d.warn("class "+c.Name, "no provider has a fitting offer right now: its jobs would wait",
				"see `crabbox-runner offers --class "+c.Name+"`; widen the class (gpu, max_price_per_hour, region, providers) if this lasts")
		}
	}
}

// providerEnv names a provider's key and API URL settings.
func providerEnv(name string) (key, apiURL string) {
	switch name {
	case vast.Name:
		return "VAST_API_KEY", "CRABBOX_VAST_API_URL / providers.vast.api_url"
	case lambda.Name:
		return "LAMBDA_API_KEY", "CRABBOX_LAMBDA_API_URL / providers.lambda.api_url"
	}
	return "", ""
}

// checkProviderKey makes one read-only call with the provider's key: the
// first page of its instances. Retries are few, so an API that is down is
// reported in seconds, not minutes.
func (d *doctor) checkProviderKey(ctx context.Context, name string, cfg *config.Config, log *slog.Logger) bool {
	what := "provider " + name
	keyVar, _ := providerEnv(name)
	ctx, cancel := context.WithTimeout(ctx, 45*time.Second)
	defer cancel()
	var err error
	switch name {
	case vast.Name:
		var c *vast.Client
		c, err = vast.NewClient(vast.Config{APIKey: cfg.VastAPIKey, APIURL: cfg.Providers.Vast.APIURL,
			MinRequestInterval: cfg.Providers.Vast.MinRequestInterval, Timeout: 20 * time.Second,
			Retry: vast.Retry{MaxRetries: 1, Initial: 200 * time.Millisecond, Max: time.Second, MaxElapsed: 30 * time.Second}, Logger: log})
		if err != nil {
			d.fail(what, err.Error(), "set "+keyVar+" to an API key from the Vast console (Account → Keys)")
			return false
		}
		_, err = c.ListInstancesPage(ctx, nil, "")
	case lambda.Name:
		var c *lambda.Client
		c, err = lambda.NewClient(lambda.ClientConfig{APIKey: cfg.LambdaAPIKey, APIURL: cfg.Providers.Lambda.APIURL,
			MinRequestInterval: cfg.Providers.Lambda.MinRequestInterval, Timeout: 20 * time.Second,
			Retry: lambda.RetryPolicy{MaxAttempts: 2, InitialInterval: 200 * time.Millisecond, MaxInterval: time.Second, MaxElapsedTime: 30 * time.Second}, Logger: log})
		if err != nil {
			d.fail(what, err.Error(), "set "+keyVar+" to an API key from the Lambda Cloud dashboard (API keys)")
			return false
		}
		_, err = c.Instances(ctx)
	default:
		if _, err := newProvider(name, cfg, log); err != nil {
			d.fail(what, err.Error(), "correct providers."+name+" in the configuration, or remove "+name+" from the classes")
			return false
		}
		d.ok(what, "configured")
		return true
	}
	if err != nil {
		problem, fix := providerProblem(name, cfg, err)
		d.fail(what, problem, fix)
		return false
	}
	d.ok(what, "the API accepts "+keyVar+" (instances listed)")
	return true
}

// providerProblem tells a rejected key from an API that did not answer.
func providerProblem(name string, cfg *config.Config, err error) (string, string) {
	keyVar, urlVar := providerEnv(name)
	status, code := providerAPIStatus(err)
	apiURL := cfg.Providers.Vast.APIURL
	if name == lambda.Name {
		apiURL = cfg.Providers.Lambda.APIURL
	}
	switch {
	case code == lambda.CodeAccountInactive:
		return "the account is inactive: " + err.Error(), "reactivate the Lambda Cloud account (billing), then run doctor again"
	case status == 401 || status == 403:
		return fmt.Sprintf("the API rejected %s (HTTP %d): %v", keyVar, status, err),
			"check " + keyVar + ": it may be mistyped, revoked or lack permissions; create a new key in the " + name + " console and set " + keyVar
	case status == 429:
		return "rate limited: " + err.Error(), "another process uses the same key heavily; run doctor again in a minute"
	case status >= 500:
		return fmt.Sprintf("the API answered HTTP %d: %v", status, err), name + " has trouble; check its status page and run doctor again later"
	case status != 0:
		return err.Error(), "check " + urlVar + " (" + apiURL + ") points at the " + name + " API"
	case errors.Is(err, context.DeadlineExceeded):
		return "no answer in time from " + apiURL + ": " + err.Error(), "check " + urlVar + ", DNS, the firewall and any proxy"
	}
	return "the API is unreachable at " + apiURL + ": " + err.Error(), "check " + urlVar + ", DNS, the firewall and any proxy"
}

// providerAPIStatus is the HTTP status and error code a provider's API
// answered with, when err carries one (0 and "" otherwise).
func providerAPIStatus(err error) (status int, code string) {
	if ae, ok := vast.IsAPIError(err); ok {
		status, code = ae.Status, ae.Code
	}
	var le *lambda.APIError
	if errors.As(err, &le) {
		status, code = le.Status, le.Code
	}
	return status, code
}
