package main

// The smoke with --yes: leftovers destroyed, one host leased through the
// Action's one-shot path (provisioner.LeaseNow) stage by stage, then
// destroyed and checked gone, whatever happened before.

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/crabbox/crabbox-runner/action"
	"github.com/crabbox/crabbox-runner/bootstrap"
	"github.com/crabbox/crabbox-runner/github"
	"github.com/crabbox/crabbox-runner/providers/lambda"
	"github.com/crabbox/crabbox-runner/provisioner"
)

// stageClock follows the one-shot start's stages as LeaseNow reports them.
type stageClock struct {
	s         *smoke
	mu        sync.Mutex
	stage     string
	began     time.Time
	createdAt time.Time // when create began: billing starts no earlier
}

func (c *stageClock) enter(stage string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	now := time.Now()
	if c.stage != "" {
		c.s.stageOK(c.stage, c.began, "")
	}
	if stage == provisioner.StageCreate {
		c.createdAt = now
	}
	c.stage, c.began = stage, now
}

func (c *stageClock) current() (string, time.Time, time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.stage, c.began, c.createdAt
}

// live rents the host. The host is destroyed before it returns, on
// failure, on SIGINT/SIGTERM (ctx cancelled) and at --max-minutes.
func (s *smoke) live(ctx context.Context) smokeResult {
	deadline := s.start.Add(time.Duration(s.opts.MaxMinutes * float64(time.Minute)))
	// The cleanup must fit before --max-minutes too: a fifth of the time,
	// at most two minutes, is kept for it.
	reserve := min(2*time.Minute, time.Until(deadline)/5)
	// Cleanup runs on its own context: a signal or the deadline that ends
	// the start must not cut it short.
	cleanCtx := context.WithoutCancel(ctx)

	var gh provisioner.GitHub
	var ghClient *github.Client
	var scope provisioner.Scope
	boot := bootstrap.Config{RunnerURL: s.cfg.Runner.URL, RunnerVersion: s.cfg.Runner.Version,
		RunnerChecksums: s.cfg.Runner.SHA256, Logger: s.log.With("component", "bootstrap")}
	if s.githubGiven() {
		var err error
		ghClient, err = github.New(github.Config{APIURL: s.cfg.GitHub.APIURL, Token: s.cfg.GitHubToken, AppID: s.cfg.GitHub.AppID,
			AppPrivateKey: s.cfg.GitHubAppKey, RunnerGroupID: s.cfg.GitHub.RunnerGroupID, Logger: s.log.With("component", "github")})
		if err != nil {
			s.printf("smoke: GitHub: %v", err)
			return blocked("github_credentials_invalid")
		}
		gh = redactingGitHub{ghClient, s.red}
		scope = s.scope()
		boot.Resolve = runnerReleaseFromGitHub(ghClient)
	}
	b, err := bootstrap.New(boot)
	if err != nil {
		s.printf("smoke: %v", err)
		return blocked("runner_release_invalid")
	}
	pcfg := provisioner.Config{
		Deployment: s.deployment, Providers: map[string]provisioner.Provider{s.opts.Provider: s.prov},
		Bootstrapper: redactingBootstrapper{b, s.red}, Logger: s.log.With("component", "provisioner"),
		Endpoints: endpointPolicy(s.cfg),
	}
	if gh != nil {
		pcfg.GitHub = gh
	}
	if smokeHook != nil {
		smokeHook(&pcfg, s)
	}
	p, err := provisioner.New(pcfg)
	if err != nil {
		s.printf("smoke: %v", err)
		return blocked("config_invalid")
	}

	names := action.NewNames(s.deployment, s.start.Unix(), 1)
	label := "crabbox-smoke-" + names.LeaseID
	lease := &provisioner.Lease{ID: names.LeaseID, Scope: scope, RunnerName: names.RunnerName, Provider: s.opts.Provider}
	clock := &stageClock{s: s}
	timeout := time.Until(deadline) - reserve
	var res smokeResult
	var l *provisioner.Lease
	if timeout <= 0 {
		res = failed("create", "max_minutes_reached")
	} else {
		s.printf("lease %s, runner %s; the host is destroyed by %s at the latest", names.LeaseID, names.RunnerName,
			deadline.UTC().Format(time.RFC3339))
		l, err = p.LeaseNow(ctx, provisioner.OneShotRequest{
			LeaseID: names.LeaseID, Class: s.class, Scope: scope, RunnerName: names.RunnerName,
			Labels: append([]string{label}, s.class.Labels...), Expires: deadline, Timeout: timeout,
			Attempts: 1, Smoke: true, InstallOnly: gh == nil,
			Stage: clock.enter,
			Progress: func(format string, args ...any) {
				stage, _, _ := clock.current()
				s.printf("      %-10s %s", stage, oneLine(fmt.Sprintf(format, args...)))
			},
		})
		stage, began, _ := clock.current()
		if err != nil {
			if stage == "" {
				stage = "create"
			}
			s.stageFailed(stage, began, err.Error())
			res = s.classifyStart(ctx, stage, err, deadline.Add(-reserve))
			if ctx.Err() != nil {
				s.printf("interrupted: destroying what was created before exiting")
			}
		} else {
			s.stageOK(stage, began, "")
			res = smokeResult{class: "passed"}
		}
	}
	if l != nil {
		lease = l
	}
	_, _, createdAt := clock.current()

	// Cleanup: whatever happened, the lease's runner and host go, and the
	// provider is asked until it no longer lists them.
	cctx, cancel := context.WithTimeout(cleanCtx, s.cleanupBudget)
	defer cancel()
	began := time.Now()
	derr := p.ReleaseNow(cctx, lease)
	destroyedAt := time.Now()
	if derr != nil {
		s.stageFailed("destroy", began, derr.Error())
	} else {
		what := "instance destroyed"
		if ghClient != nil {
			what = "runner removed and instance destroyed"
		}
		s.stageOK("destroy", began, what+" (whatever existed of lease "+lease.ID+")")
	}
	began = time.Now()
	if verr := s.verifyGone(cctx, lease.ID, ghClient, scope, lease.RunnerName); verr != nil {
		s.stageFailed("verify", began, verr.Error())
		s.printf("LEFT BEHIND: see docs/live-smoke.md, \"If something is left running\"; gc --yes (deployment %s) removes it", s.deployment)
		// Whatever failed before, what is left is what the user must know.
		res = failed("verify", leftReason(verr))
	} else {
		what := "the provider no longer lists the instance"
		if s.opts.Provider == lambda.Name {
			what += " and the lease's SSH key is deleted"
		}
		if ghClient != nil {
			what += "; GitHub no longer lists the runner"
		}
		s.stageOK("verify", began, what)
	}
	s.printCost(createdAt, destroyedAt, lease)
	return res
}

func (s *smoke) scope() provisioner.Scope {
	sc := s.opts.Scope
	if sc == "" && len(s.cfg.GitHub.Scopes) > 0 {
		sc = s.cfg.GitHub.Scopes[0]
	}
	if strings.Contains(sc, "/") {
		return provisioner.Scope{Repo: sc}
	}
	return provisioner.Scope{Org: sc}
}

// classifyStart names why the start failed: a short snake_case reason.
func (s *smoke) classifyStart(ctx context.Context, stage string, err error, workDeadline time.Time) smokeResult {
	var ae *lambda.APIError
	status, _ := providerAPIStatus(err)
	switch {
	case ctx.Err() != nil:
		return failed(stage, "interrupted")
	case errors.Is(err, provisioner.ErrGPUCheck):
		return failed(stage, "gpu_check_failed")
	case errors.Is(err, bootstrap.ErrRunnerChecksum):
		return failed(stage, "runner_checksum_mismatch")
	case errors.Is(err, bootstrap.ErrRunnerRelease):
		return failed(stage, "runner_release_unverified")
	case errors.Is(err, bootstrap.ErrRunnerStart):
		return failed(stage, "runner_start_failed")
	case errors.Is(err, provisioner.ErrHostKeyMismatch):
		return failed(stage, "host_key_mismatch")
	case errors.Is(err, provisioner.ErrNoOffer), errors.Is(err, provisioner.ErrOfferUnavailable):
		return failed(stage, "offer_gone")
	case status == 401 || status == 403:
		return blocked("key_rejected")
	case errors.Is(err, provisioner.ErrBootTimeout) && stage == provisioner.StageOnline:
		return failed(stage, "runner_not_online")
	case errors.Is(err, provisioner.ErrBootTimeout):
		// The class's boot_timeout, shorter than the smoke's time.
		return failed(stage, "boot_timeout")
	case !time.Now().Before(workDeadline) && stage == provisioner.StageBoot:
		return failed(stage, "boot_timeout")
	case !time.Now().Before(workDeadline) && stage == provisioner.StageOnline:
		return failed(stage, "runner_not_online")
	case !time.Now().Before(workDeadline):
		return failed(stage, "max_minutes_reached")
	case errors.As(err, &ae) || status != 0:
		return failed(stage, "provider_error")
	}
	switch stage {
	case provisioner.StageBoot:
		return failed(stage, "host_failed")
	case provisioner.StageRegister:
		return failed(stage, "runner_register_failed")
	case provisioner.StageOnline:
		return failed(stage, "runner_not_online")
	case provisioner.StageBootstrap:
		return failed(stage, "bootstrap_failed")
	}
	return failed(stage, "create_failed")
}

// destroyLeftovers destroys the smoke hosts an earlier smoke left (it was
// killed before it could), and checks them gone, before anything is rented.
func (s *smoke) destroyLeftovers(ctx context.Context) (smokeResult, bool) {
	if len(s.leftovers) == 0 {
		return smokeResult{}, true
	}
	began := time.Now()
	cctx, cancel := context.WithTimeout(ctx, s.cleanupBudget)
	defer cancel()
	for _, inst := range s.leftovers {
		s.printf("found instance %s of lease %s, left by an earlier smoke that did not finish: destroying it first", inst.ID, inst.Marker.LeaseID)
		if err := s.prov.Destroy(cctx, inst); err != nil {
			s.stageFailed("leftovers", began, err.Error())
			return failed("leftovers", "leftover_not_destroyed"), false
		}
	}
	for _, inst := range s.leftovers {
		if err := s.verifyGone(cctx, inst.Marker.LeaseID, nil, provisioner.Scope{}, ""); err != nil {
			s.stageFailed("leftovers", began, err.Error())
			return failed("leftovers", leftReason(err)), false
		}
	}
	s.stageOK("leftovers", began, fmt.Sprintf("%d host(s) of earlier smokes destroyed and gone", len(s.leftovers)))
	return smokeResult{}, true
}

// errLeft says what is still there after the cleanup.
type errLeft struct {
	what string // instance, ssh_key, runner
	err  error
}

func (e *errLeft) Error() string { return e.err.Error() }

func leftReason(err error) string {
	var el *errLeft
	if errors.As(err, &el) {
		return el.what + "_left"
	}
	return "cleanup_unverified"
}

// verifyGone asks until the provider lists no instance of the lease and,
// on Lambda, no SSH key of it, and GitHub (when given) no runner of that
// name. It returns the last thing still there when ctx ends.
func (s *smoke) verifyGone(ctx context.Context, leaseID string, gh *github.Client, scope provisioner.Scope, runnerName string) error {
	for {
		left := s.stillThere(ctx, leaseID, gh, scope, runnerName)
		if left == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return left
		case <-time.After(s.poll):
		}
	}
}

func (s *smoke) stillThere(ctx context.Context, leaseID string, gh *github.Client, scope provisioner.Scope, runnerName string) error {
	owned, err := s.prov.ListOwned(ctx, s.deployment)
	if err != nil {
		return &errLeft{"instance", fmt.Errorf("listing instances to check the host is gone: %w", err)}
	}
	for _, inst := range owned {
		if inst.Marker.LeaseID == leaseID {
			return &errLeft{"instance", fmt.Errorf("instance %s of lease %s is still listed (status %s)", inst.ID, leaseID, inst.Status)}
		}
	}
	if lp, ok := s.prov.(*lambda.Provider); ok {
		keys, err := lp.Client().SSHKeys(ctx)
		if err != nil {
			return &errLeft{"ssh_key", fmt.Errorf("listing SSH keys to check the lease's is gone: %w", err)}
		}
		for _, k := range keys {
			if strings.HasSuffix(k.Name, "-"+leaseID) {
				return &errLeft{"ssh_key", fmt.Errorf("SSH key %s of lease %s is still registered at Lambda", k.Name, leaseID)}
			}
		}
	}
	if gh != nil {
		r, err := gh.RunnerByName(ctx, scope, runnerName)
		switch {
		case errors.Is(err, provisioner.ErrNotFound):
		case err != nil:
			return &errLeft{"runner", fmt.Errorf("looking up runner %s to check it is removed: %w", runnerName, err)}
		default:
			return &errLeft{"runner", fmt.Errorf("runner %s (id %d) is still registered at GitHub", runnerName, r.ID)}
		}
	}
	return nil
}

// printCost prints what the host cost, from create to destroy at the
// offer's price: an estimate, the provider's bill is what counts.
func (s *smoke) printCost(createdAt, destroyedAt time.Time, l *provisioner.Lease) {
	price := s.offer.PricePerHour
	if l != nil && l.PricePerHour > 0 {
		price = l.PricePerHour
	}
	if createdAt.IsZero() {
		s.printf("cost so far: $0.00 (no host was created); total %s", time.Since(s.start).Round(100*time.Millisecond))
		return
	}
	rented := destroyedAt.Sub(createdAt)
	s.printf("cost so far: about $%.4f ($%.3f/h for %s from create to destroy; the provider's bill is what counts); total %s",
		price*rented.Hours(), price, rented.Round(100*time.Millisecond), time.Since(s.start).Round(100*time.Millisecond))
}
