package main

// The smoke's read-only stages, run in plan mode and before anything is
// rented: the class, where the runner tarball comes from, the key (and the
// hosts an earlier smoke left), the offer.

import (
	"cmp"
	"context"
	"fmt"
	"slices"
	"time"

	"github.com/crabbox/crabbox-runner/internal/config"
	"github.com/crabbox/crabbox-runner/providers/lambda"
	"github.com/crabbox/crabbox-runner/provisioner"
)

// pickClass is the class of --class, or an ad-hoc one of --gpu (any GPU
// without it), limited to the provider and to --max-price.
func (s *smoke) pickClass() (smokeResult, bool) {
	o := s.opts
	if o.Class != "" {
		i := slices.IndexFunc(s.cfg.ProvisionerClasses(), func(c provisioner.Class) bool { return c.Name == o.Class })
		if i < 0 {
			s.printf("smoke: no class %q in the config file %s", o.Class, orDash(s.cfg.Source))
			return blocked("class_not_found"), false
		}
		s.class = s.cfg.ProvisionerClasses()[i]
	} else {
		s.class = provisioner.Class{
			Name:   "smoke",
			Labels: []string{"self-hosted", "linux", "crabbox", "smoke"},
			GPU:    provisioner.GPURequirement{Name: o.GPU, Count: 1},
			// As a class of the config file defaults them.
			VerifiedOnly: true, DirectSSH: true, CheckGPU: true,
		}
	}
	s.class.Providers = []string{o.Provider}
	if s.class.MaxPricePerHour <= 0 || o.MaxPrice < s.class.MaxPricePerHour {
		s.class.MaxPricePerHour = o.MaxPrice
	}
	return smokeResult{}, true
}

// checkRunnerSource: the runner tarball must come with its checksum,
// from the config file or from GitHub's runners/downloads.
func (s *smoke) checkRunnerSource() (smokeResult, bool) {
	cfg := s.cfg
	why := ""
	res := smokeResult{}
	switch {
	case s.githubGiven():
		if err := cfg.Validate(config.Needs{GitHub: true}); err != nil {
			why, res = err.Error(), blocked("github_credentials_invalid")
		} else if s.opts.Scope == "" && len(cfg.GitHub.Scopes) == 0 {
			why, res = "GitHub credentials are given but no scope: give --scope acme or --scope acme/ml (or github.scopes)", blocked("github_scope_missing")
		}
	case cfg.Runner.Version == "" || len(cfg.Runner.SHA256) == 0:
		why = "without GitHub credentials the runner release comes from the config file: set runner.version and runner.sha256 " +
			"(or give CRABBOX_GITHUB_TOKEN and --scope, and GitHub names it)"
		res = blocked("runner_release_missing")
	}
	if why != "" {
		s.runnerBlockedWhy = why
		return res, false
	}
	return res, true
}

func (s *smoke) githubGiven() bool {
	return s.cfg.GitHubToken != "" || s.cfg.GitHub.AppID != 0 || len(s.cfg.GitHubAppKey) > 0
}

// checkKey makes one read-only call with the key, the list of the
// deployment's instances, and keeps the smoke hosts among them: a smoke
// that was killed left them.
func (s *smoke) checkKey(ctx context.Context) (smokeResult, bool) {
	began := time.Now()
	keyVar, _ := providerEnv(s.opts.Provider)
	cctx, cancel := context.WithTimeout(ctx, time.Minute)
	owned, err := s.prov.ListOwned(cctx, s.deployment)
	cancel()
	if err != nil {
		s.stageFailed("key", began, err.Error())
		return s.apiBlocked(ctx, "key", err), false
	}
	for _, inst := range owned {
		if inst.Marker.Smoke {
			s.leftovers = append(s.leftovers, inst)
		}
	}
	s.stageOK("key", began, fmt.Sprintf("the API accepts %s; %d instance(s) of deployment %s, %d left by an earlier smoke",
		keyVar, len(owned), s.deployment, len(s.leftovers)))
	return smokeResult{}, true
}

// apiBlocked classifies a failed read-only call.
func (s *smoke) apiBlocked(ctx context.Context, stage string, err error) smokeResult {
	status, code := providerAPIStatus(err)
	switch {
	case ctx.Err() != nil:
		return failed(stage, "interrupted")
	case code == lambda.CodeAccountInactive:
		return blocked("account_inactive")
	case status == 401 || status == 403:
		return blocked("key_rejected")
	case status == 429:
		return blocked("rate_limited")
	case status >= 500:
		return blocked("provider_error")
	case status != 0:
		return blocked("provider_refused")
	}
	return blocked("provider_unreachable")
}

// pickOffer finds the cheapest offer of the class under the price cap.
func (s *smoke) pickOffer(ctx context.Context) (smokeResult, bool) {
	began := time.Now()
	cctx, cancel := context.WithTimeout(ctx, time.Minute)
	offers, err := s.prov.Offers(cctx, s.class)
	cancel()
	if err != nil {
		s.stageFailed("offer", began, err.Error())
		return s.apiBlocked(ctx, "offer", err), false
	}
	slices.SortStableFunc(offers, func(a, b provisioner.Offer) int { return cmp.Compare(a.PricePerHour, b.PricePerHour) })
	var fit []provisioner.Offer
	for _, of := range offers {
		if of.PricePerHour <= s.class.MaxPricePerHour {
			fit = append(fit, of)
		}
	}
	if len(fit) == 0 {
		s.stageFailed("offer", began, s.noOfferDetail(ctx, offers))
		return blocked("no_offer_under_max_price"), false
	}
	s.offer = fit[0]
	s.stageOK("offer", began, fmt.Sprintf("%d offer(s) under $%.2f/h; the cheapest: %s %dx %s at $%.3f/h",
		len(fit), s.class.MaxPricePerHour, s.offer.ID, s.offer.GPUCount, s.offer.GPU, s.offer.PricePerHour))
	return smokeResult{}, true
}

// noOfferDetail says what the cap left out: the cheapest offer of the
// class at any price (one more read-only search, as a provider may filter
// by price itself).
func (s *smoke) noOfferDetail(ctx context.Context, under []provisioner.Offer) string {
	all := under
	if len(all) == 0 {
		anyPrice := s.class
		anyPrice.MaxPricePerHour = 0
		cctx, cancel := context.WithTimeout(ctx, time.Minute)
		all, _ = s.prov.Offers(cctx, anyPrice)
		cancel()
	}
	if len(all) == 0 {
		return fmt.Sprintf("no offer of %s fits the class at any price right now", s.opts.Provider)
	}
	cheapest := slices.MinFunc(all, func(a, b provisioner.Offer) int { return cmp.Compare(a.PricePerHour, b.PricePerHour) })
	return fmt.Sprintf("no offer under $%.2f/h (--max-price); the cheapest that fits the class: %s %dx %s at $%.3f/h",
		s.class.MaxPricePerHour, cheapest.ID, cheapest.GPUCount, cheapest.GPU, cheapest.PricePerHour)
}
