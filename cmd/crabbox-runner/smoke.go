package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"time"

	"github.com/spf13/cobra"

	"github.com/crabbox/crabbox-runner/internal/config"
	"github.com/crabbox/crabbox-runner/internal/exchange"
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
	var record string
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
			if record != "" {
				rec, err := startRecording(record, o.Provider, &o)
				if err != nil {
					return err
				}
				defer func() {
					if err := rec.Close(); err != nil {
						fmt.Fprintf(cmd.ErrOrStderr(), "smoke: recording %s: %v\n", rec.Path(), err)
					}
				}()
				fmt.Fprintf(cmd.ErrOrStderr(), "smoke: recording every %s API exchange, redacted, to %s\n", o.Provider, rec.Path())
			}
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
	f.StringVar(&record, "record", "", "write every provider API request and answer, redacted, to a JSON Lines file in this directory (docs/live-smoke.md#recordings)")
	return cmd
}

// startRecording makes the smoke's provider requests go through a
// recorder, which learns every secret the smoke learns (the keys at the
// start, then each SSH private key and JIT config) before any request
// that could carry it.
func startRecording(dir, provider string, o *smokeOptions) (*exchange.Recorder, error) {
	if provider == "" {
		return nil, errors.New("smoke: --record needs --provider")
	}
	rec, err := exchange.New(exchange.Options{Dir: dir, Provider: provider, Tool: "crabbox-runner " + version})
	if err != nil {
		return nil, err
	}
	o.HTTPClient = rec.Client(o.HTTPClient)
	learn := o.OnSecret
	o.OnSecret = func(secret string) {
		rec.Learn(secret)
		if learn != nil {
			learn(secret)
		}
	}
	return rec, nil
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

func minutes(m float64) string {
	return (time.Duration(m * float64(time.Minute))).Round(time.Second).String()
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
