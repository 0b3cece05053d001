package main

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"slices"
	"time"

	"github.com/spf13/cobra"

	"github.com/crabbox/crabbox-runner/internal/config"
	"github.com/crabbox/crabbox-runner/providers/lambda"
	"github.com/crabbox/crabbox-runner/providers/vast"
	"github.com/crabbox/crabbox-runner/provisioner"
)

// smokeOptions are the smoke's flags, and what the lead wires for
// --record: an HTTP client every provider API request goes through.
type smokeOptions struct {
	Provider   string
	Class      string
	GPU        string
	MaxPrice   float64
	MaxMinutes float64
	Scope      string
	Yes        bool
	// HTTPClient, when set, carries every request to the provider's API
	// (the recording transport of --record DIR).
	HTTPClient *http.Client
	// OnSecret, when set, is told each secret of the run as the smoke
	// learns it (keys and tokens at the start, then each SSH private key
	// and JIT config), so a recording can redact them too.
	OnSecret func(secret string)
}

// smokeHook lets tests adjust the provisioner the smoke builds (faster
// polls, spies on secrets) and the smoke's own polling; nil in production.
var smokeHook func(*provisioner.Config, *smoke)

// The smoke's exit codes; docs/live-smoke.md lists them.
const (
	smokeExitFailed  = 1
	smokeExitBlocked = 3
)

// smokeResult is the classification, the transcript's last line.
type smokeResult struct {
	class  string // passed, planned, failed, environment_blocked
	stage  string // failed only
	reason string // failed and environment_blocked: a snake_case token
}

func (r smokeResult) String() string {
	switch r.class {
	case "failed":
		return fmt.Sprintf("classification=failed stage=%s reason=%s", r.stage, r.reason)
	case "environment_blocked":
		return "classification=environment_blocked reason=" + r.reason
	}
	return "classification=" + r.class
}

func (r smokeResult) code() int {
	switch r.class {
	case "passed", "planned":
		return 0
	case "environment_blocked":
		return smokeExitBlocked
	}
	return smokeExitFailed
}

func blocked(reason string) smokeResult {
	return smokeResult{class: "environment_blocked", reason: reason}
}
func failed(stage, reason string) smokeResult {
	return smokeResult{class: "failed", stage: stage, reason: reason}
}

func newSmokeCmd(g *globalFlags, getenv config.Getenv) *cobra.Command {
	o := smokeOptions{}
	cmd := &cobra.Command{
		Use:   "smoke",
		Short: "One real lease on one provider, bounded in money and time, as proof that it works",
		Long: `smoke runs one real lifecycle on one provider: it checks the key, picks the
cheapest fitting offer under --max-price, creates a host carrying the smoke
mark, waits for SSH (host key verified), runs the host checks serve runs (GPU,
architecture), installs the runner tarball and verifies its SHA-256, and, when
GitHub credentials and a scope are given, registers a JIT runner, waits for it
to be online and removes it. Then it destroys the host and checks that the
provider no longer lists it (and, on Lambda, that the lease's SSH key is gone).

Without --yes it only reads (key check, offers, leftovers) and prints the plan:
the offer, its price and the most the run can cost (price x --max-minutes).

Keys and API URLs come from the environment, as for serve: VAST_API_KEY(_FILE),
LAMBDA_API_KEY(_FILE), CRABBOX_VAST_API_URL, CRABBOX_LAMBDA_API_URL; GitHub from
CRABBOX_GITHUB_TOKEN or the App variables, with --scope or github.scopes[0].
Without GitHub the runner release comes from the config file (runner.version,
runner.sha256).

The last line is the classification:
  classification=passed                                   exit 0
  classification=planned                                  exit 0 (no --yes)
  classification=failed stage=<stage> reason=<reason>     exit 1
  classification=environment_blocked reason=<reason>      exit 3
See docs/live-smoke.md.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			res := runSmoke(cmd.Context(), g, getenv, o, cmd.OutOrStdout(), cmd.ErrOrStderr())
			if res.code() != 0 {
				// Already printed as the last line of the transcript.
				return exitError{code: res.code(), err: errors.New(res.String()), quiet: true}
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.Provider, "provider", "", "vast or lambda (required)")
	f.StringVar(&o.Class, "class", "", "a class of the config file to lease (its GPU, image, disk; its price cap if lower)")
	f.StringVar(&o.GPU, "gpu", "", "a GPU name for an ad-hoc class of one GPU (default: the cheapest GPU)")
	f.Float64Var(&o.MaxPrice, "max-price", 1.00, "the most to pay per hour, in USD")
	f.Float64Var(&o.MaxMinutes, "max-minutes", 15, "the host is destroyed by this many minutes after the start")
	f.StringVar(&o.Scope, "scope", "", "where the JIT runner registers: an org (acme) or a repository (acme/ml); default github.scopes[0]")
	f.BoolVar(&o.Yes, "yes", false, "rent the host; without it only read-only calls are made and the plan printed")
	return cmd
}

// smoke is one run.
type smoke struct {
	opts  smokeOptions
	out   io.Writer // the transcript: stdout, redacted
	red   *redactor
	log   *slog.Logger
	start time.Time

	cfg        *config.Config
	deployment string
	prov       provisioner.Provider
	class      provisioner.Class
	offer      provisioner.Offer
	leftovers  []*provisioner.Instance
	// runnerBlocked is why no runner could be installed, if so
	// (checkRunnerSource), and runnerBlockedWhy the sentence saying it.
	runnerBlocked    smokeResult
	runnerBlockedWhy string

	// poll spaces the checks that cleanup finished; cleanupBudget bounds
	// them and the destroy (tests shorten both through smokeHook).
	poll          time.Duration
	cleanupBudget time.Duration
}

// runSmoke runs the smoke and prints its transcript, ending with the
// classification; it returns that classification.
func runSmoke(ctx context.Context, g *globalFlags, getenv config.Getenv, o smokeOptions, stdout, stderr io.Writer) smokeResult {
	s := &smoke{opts: o, red: &redactor{onAdd: o.OnSecret}, start: time.Now(), poll: 2 * time.Second, cleanupBudget: 5 * time.Minute}
	s.out = s.red.writer(stdout)
	res := s.run(ctx, g, getenv, stderr)
	fmt.Fprintln(s.out, res.String())
	return res
}

func (s *smoke) printf(format string, args ...any) {
	fmt.Fprintf(s.out, "%7.1fs  %s\n", time.Since(s.start).Seconds(), fmt.Sprintf(format, args...))
}

// stageOK and stageFailed print a stage's outcome and duration.
func (s *smoke) stageOK(stage string, began time.Time, detail string) {
	s.printf("stage %-10s ok      %6.1fs  %s", stage, time.Since(began).Seconds(), detail)
}

func (s *smoke) stageFailed(stage string, began time.Time, detail string) {
	s.printf("stage %-10s FAILED  %6.1fs  %s", stage, time.Since(began).Seconds(), oneLine(detail))
}

func (s *smoke) run(ctx context.Context, g *globalFlags, getenv config.Getenv, stderr io.Writer) smokeResult {
	if res, ok := s.setup(g, getenv, stderr); !ok {
		return res
	}
	s.printf("smoke on %s: deployment %s, class %s, at most $%.2f/h for %s", s.opts.Provider, s.deployment,
		s.class.Name, s.class.MaxPricePerHour, minutes(s.opts.MaxMinutes))
	if res, ok := s.checkKey(ctx); !ok {
		return res
	}
	if s.runnerBlocked.reason != "" && s.opts.Yes {
		s.printf("smoke: %s", s.runnerBlockedWhy)
		return s.runnerBlocked // nothing rented, nothing destroyed
	}
	if s.opts.Yes {
		// Before the offers: a leftover may hold the very machine.
		if res, ok := s.destroyLeftovers(context.WithoutCancel(ctx)); !ok {
			return res
		}
	}
	if res, ok := s.pickOffer(ctx); !ok {
		return res
	}
	most := s.offer.PricePerHour * s.opts.MaxMinutes / 60
	s.printf("plan: %s offer %s, %dx %s in %s at $%.3f/h; for at most %s it costs at most $%.2f (price x --max-minutes)",
		s.offer.Provider, s.offer.ID, s.offer.GPUCount, s.offer.GPU, orDash(s.offer.Region), s.offer.PricePerHour,
		minutes(s.opts.MaxMinutes), most)
	if !s.opts.Yes {
		for _, inst := range s.leftovers {
			s.printf("plan: would first destroy instance %s, left by an earlier smoke (lease %s)", inst.ID, inst.Marker.LeaseID)
		}
		if s.runnerBlocked.reason != "" {
			s.printf("plan only, and --yes would stop here: %s", s.runnerBlockedWhy)
			return s.runnerBlocked
		}
		s.printf("plan only: nothing was created or changed; run again with --yes to rent it")
		return smokeResult{class: "planned"}
	}
	return s.live(ctx)
}

// setup reads the configuration and the flags; nothing is called yet.
func (s *smoke) setup(g *globalFlags, getenv config.Getenv, stderr io.Writer) (smokeResult, bool) {
	o := s.opts
	usage := func(format string, args ...any) (smokeResult, bool) {
		s.printf("smoke: "+format, args...)
		return blocked("invalid_flags"), false
	}
	switch {
	case o.Provider != vast.Name && o.Provider != lambda.Name:
		return usage("--provider must be vast or lambda, not %q", o.Provider)
	case o.Class != "" && o.GPU != "":
		return usage("give --class or --gpu, not both")
	case o.MaxPrice <= 0:
		return usage("--max-price must be more than 0")
	case o.MaxMinutes <= 0:
		return usage("--max-minutes must be more than 0")
	}
	cfg, err := config.Load(g.Overrides, getenv)
	if err != nil {
		s.printf("smoke: %v", err)
		return blocked("config_invalid"), false
	}
	s.cfg = cfg
	s.red.add(cfg.VastAPIKey, cfg.LambdaAPIKey, cfg.GitHubToken, string(cfg.GitHubAppKey), string(cfg.WebhookSecret),
		cfg.StatusToken, string(cfg.StateKey), string(cfg.StateKeyPrevious))
	keyVar, _ := providerEnv(o.Provider)
	if (o.Provider == vast.Name && cfg.VastAPIKey == "") || (o.Provider == lambda.Name && cfg.LambdaAPIKey == "") {
		s.printf("smoke: no %s key: set %s (or %s_FILE)", o.Provider, keyVar, keyVar)
		return blocked(keyVar + "_missing"), false
	}
	// The smoke uses one provider and at most one class: the other classes
	// and the other provider's key are none of its business.
	check := *cfg
	check.Classes = nil
	for _, cc := range cfg.Classes {
		if cc.Name == o.Class {
			cc.Providers = []string{o.Provider}
			check.Classes = append(check.Classes, cc)
		}
	}
	if err := check.Validate(config.Needs{}); err != nil {
		s.printf("smoke: %v", err)
		return blocked("config_invalid"), false
	}
	level, format := g.LogLevel, g.LogFormat
	if level == "" {
		level = "warn" // the transcript says what happens; the log only what goes wrong
	}
	if format == "" {
		format = "text"
	}
	s.log = newLogger(s.red.writer(stderr), level, format)

	s.deployment = cfg.Deployment
	if s.deployment == "" {
		s.deployment = "smoke"
	}
	probe := provisioner.Marker{Deployment: s.deployment, LeaseID: "l0123456789", Expires: time.Now(), Smoke: true}
	if len(probe.String()) > 64 {
		s.printf("smoke: deployment %q is too long for a smoke's marker on Lambda (64 characters); use at most 18 characters", s.deployment)
		return blocked("deployment_too_long"), false
	}
	if res, ok := s.pickClass(); !ok {
		return res, false
	}
	// Checked now, told after the read-only stages: the plan is worth
	// seeing (is the key good, is there an offer) before the fix.
	s.runnerBlocked, _ = s.checkRunnerSource()
	prov, err := newProviderHTTP(o.Provider, cfg, s.log, o.HTTPClient)
	if err != nil {
		s.printf("smoke: %v", err)
		return blocked("provider_config_invalid"), false
	}
	s.prov = prov
	return smokeResult{}, true
}

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

func minutes(m float64) string {
	return (time.Duration(m * float64(time.Minute))).Round(time.Second).String()
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
