package main

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/crabbox/crabbox-runner/bootstrap"
	"github.com/crabbox/crabbox-runner/github"
	"github.com/crabbox/crabbox-runner/internal/config"
	"github.com/crabbox/crabbox-runner/internal/metrics"
	"github.com/crabbox/crabbox-runner/provisioner"
	"github.com/crabbox/crabbox-runner/status"
	"github.com/crabbox/crabbox-runner/store"
	"github.com/crabbox/crabbox-runner/webhook"
)

// app is a running `serve`: store, provisioner and HTTP server. The demo
// and the end-to-end tests run exactly this.
type app struct {
	cfg       *config.Config
	log       *slog.Logger
	store     provisioner.Store
	prov      *provisioner.Provisioner
	providers map[string]provisioner.Provider
	metrics   *metrics.Metrics
	listener  net.Listener
	server    *http.Server
	// gate guards the status page and /metrics on listener (access.go).
	gate *status.Gate
	// metricsListener and metricsServer serve GET /metrics alone when
	// metrics_listen is set; nil otherwise.
	metricsListener net.Listener
	metricsServer   *http.Server
}

// appOptions lets the demo and tests tune what production leaves default.
type appOptions struct {
	// Providers replaces providers built from the config (by name).
	Providers map[string]provisioner.Provider
	// Tune adjusts the provisioner's config before it is built.
	Tune func(*provisioner.Config)
	// TuneGitHub adjusts the GitHub client's config (tests scale the
	// background window with it).
	TuneGitHub func(*github.Config)
	// Provisioner, when set, is given the provisioner once built (tests
	// play a lost host through it until detection is in place).
	Provisioner func(*provisioner.Provisioner)
}

// newApp opens the store, builds every part, and listens; it does not start
// work yet. On error everything opened so far is closed.
func newApp(ctx context.Context, cfg *config.Config, log *slog.Logger, opts appOptions) (_ *app, err error) {
	a := &app{cfg: cfg, log: log}
	defer func() {
		if err != nil {
			a.close()
		}
	}()

	if a.providers, err = buildProviders(cfg, log, opts.Providers); err != nil {
		return nil, err
	}
	a.metrics = metrics.New()
	countProviderRequests(a.providers, a.metrics)
	for name, p := range a.providers {
		a.providers[name] = a.metrics.Provider(p)
	}
	for _, d := range cfg.Deprecations() {
		log.Warn("config: " + d)
	}
	warnPrivateEndpoints(cfg, log)
	ghcfg := github.Config{
		APIURL: cfg.GitHub.APIURL, Token: cfg.GitHubToken, AppID: cfg.GitHub.AppID,
		AppPrivateKey: cfg.GitHubAppKey, RunnerGroupID: cfg.GitHub.RunnerGroupID,
		JITPerMinute: cfg.Limits.GitHubJITPerMinute, OnLimitWait: a.metrics.LimitWait,
		BackgroundPerMinute: cfg.GitHub.BackgroundRequestsPerMinute,
		// The request budget (issue 13): counted in metrics, its rare
		// log lines in the log.
		Observer: a.metrics.GitHub(), ReservePercent: cfg.Limits.GitHubBudgetReservePercent,
		Logf:   func(format string, args ...any) { log.Warn(fmt.Sprintf(format, args...), "component", "github") },
		Logger: log.With("component", "github"),
	}
	if opts.TuneGitHub != nil {
		opts.TuneGitHub(&ghcfg)
	}
	gh, err := github.New(ghcfg)
	if err != nil {
		return nil, err
	}
	boot, err := bootstrap.New(bootstrap.Config{
		RunnerURL: cfg.Runner.URL, RunnerVersion: cfg.Runner.Version, RunnerChecksums: cfg.Runner.SHA256,
		Resolve: runnerReleaseFromGitHub(gh),
		Logger:  log.With("component", "bootstrap"),
	})
	if err != nil {
		return nil, err
	}
	// Before the store opens: a PostgreSQL deployment without a state key
	// is refused having touched nothing.
	note, err := ensureStateKey(cfg)
	if err != nil {
		return nil, err
	}
	if note != "" {
		log.Info(note)
	}
	if a.store, err = store.Open(ctx, cfg.DatabaseURL); err != nil {
		return nil, err
	}
	pcfg := provisioner.Config{
		Deployment: cfg.Deployment, Classes: cfg.ProvisionerClasses(), Providers: a.providers,
		GitHub: gh, Bootstrapper: boot, Store: a.store, Logger: log.With("component", "provisioner"),
		// Asked before a host is rented for an org-scope job: can the
		// configured runner group take it (github/runnergroups.go)?
		RunnerGroups:       gh,
		KeySecret:          leaseKeySecret(cfg.StateKey), // the state key's alone (statekey.go)
		PreviousKeySecret:  leaseKeySecret(cfg.StateKeyPrevious),
		Observer:           a.metrics,
		Limits:             provisioner.Limits{MaxLeases: cfg.Limits.MaxLeases, MaxSpendPerHour: cfg.Limits.MaxSpendPerHour},
		JobTimeout:         cfg.Work.JobTimeout,
		RescueAfter:        cfg.Work.RescueAfter,
		UnusedRetryBackoff: cfg.Reconcile.UnusedRunnerBackoff,
		Reconcile:          reconcileConfig(cfg, gh),
		Endpoints:          endpointPolicy(cfg),
		BadMachineTTL:      cfg.BadMachines.AvoidFor,
		BadPoolTTL:         cfg.BadMachines.AvoidPoolFor,
	}
	if opts.Tune != nil {
		opts.Tune(&pcfg)
	}
	if a.prov, err = provisioner.New(pcfg); err == nil && opts.Provisioner != nil {
		opts.Provisioner(a.prov)
	}
	if err != nil {
		return nil, err
	}
	secret := cfg.WebhookSecret
	if len(secret) == 0 {
		// Poll mode without a secret (config refuses it otherwise): no
		// delivery can be signed with a key nobody has, so /webhook
		// refuses them all.
		secret = make([]byte, 32)
		if _, err := rand.Read(secret); err != nil {
			return nil, err
		}
		log.Info("poll mode without a webhook secret: POST /webhook refuses every delivery")
	}
	hook, err := webhook.New(webhook.Config{
		Secret: secret, Events: a.prov, Ready: a.store.Ping,
		MaxBody: cfg.Webhook.MaxBodyBytes, MaxBuffered: cfg.Webhook.MaxBufferedBytes,
		Logger:  log.With("component", "webhook"),
		Observe: a.metrics.Delivery,
	})
	if err != nil {
		return nil, err
	}
	a.metrics.WatchStore(a.store)
	if a.listener, err = net.Listen("tcp", cfg.Listen); err != nil {
		return nil, fmt.Errorf("listen %s: %w", cfg.Listen, err)
	}
	a.gate = a.newGate()
	hook.Handle("GET /metrics", a.gate.Wrap(a.metrics.Handler()))
	if err := a.listenMetrics(); err != nil {
		return nil, err
	}
	a.server = webhook.Server(hook)
	return a, nil
}

// reconcileConfig sets the reconcile passes for the mode. Webhook mode
// scans the hot repositories each pass; the walk of every repository is
// needed only without the App's delivery log (a token). Poll mode walks
// every pass, at github.poll_interval, and has no deliveries to sweep.
func reconcileConfig(cfg *config.Config, gh *github.Client) provisioner.ReconcileConfig {
	rc := provisioner.ReconcileConfig{
		Interval: cfg.Reconcile.Interval, GCInterval: cfg.Reconcile.GCInterval,
		Scopes: cfg.GitHub.ScopeList(),
		Jobs:   gh, Deliveries: gh,
		Walk:      !gh.IsApp(),
		Retention: cfg.Retention.Deliveries,
		History:   cfg.Retention.History,
	}
	if cfg.GitHub.Polling() {
		rc.Interval = cfg.GitHub.PollInterval
		rc.Deliveries = nil
		rc.Walk = true
	}
	return rc
}

func buildProviders(cfg *config.Config, log *slog.Logger, given map[string]provisioner.Provider) (map[string]provisioner.Provider, error) {
	out := map[string]provisioner.Provider{}
	for name, p := range given {
		out[name] = p
	}
	for _, c := range cfg.Classes {
		for _, name := range c.Providers {
			if _, ok := out[name]; ok {
				continue
			}
			p, err := newProvider(name, cfg, log)
			if err != nil {
				return nil, fmt.Errorf("class %s: %w", c.Name, err)
			}
			out[name] = p
		}
	}
	return out, nil
}

// URL is the base URL the server listens on.
func (a *app) URL() string { return "http://" + a.listener.Addr().String() }

// run starts the workers and serves HTTP until ctx ends, then shuts down
// gracefully: stop taking deliveries, then let running work finish.
func (a *app) run(ctx context.Context) error {
	if err := a.prov.Start(ctx); err != nil {
		return err
	}
	errc := make(chan error, 2)
	// At most webhook.DefaultMaxConns connections (webhook/conns.go); set
	// here, after every route is added.
	l := webhook.LimitConns(a.server, a.listener, webhook.DefaultMaxConns, a.metrics.ConnectionShed)
	go func() { errc <- a.server.Serve(l) }()
	if a.metricsServer != nil {
		go func() { errc <- a.metricsServer.Serve(a.metricsListener) }()
	}
	a.log.Info("serving", "addr", a.listener.Addr().String(), "deployment", a.cfg.Deployment, "classes", len(a.cfg.Classes))
	a.logAccess()

	var serveErr error
	select {
	case <-ctx.Done():
	case serveErr = <-errc:
	}
	shutdownCtx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	a.log.Info("shutting down")
	if err := a.server.Shutdown(shutdownCtx); err != nil {
		a.log.Warn("http shutdown", "error", err)
	}
	if a.metricsServer != nil {
		if err := a.metricsServer.Shutdown(shutdownCtx); err != nil {
			a.log.Warn("metrics listener shutdown", "error", err)
		}
	}
	if err := a.prov.Stop(shutdownCtx); err != nil {
		a.log.Warn("work shutdown", "error", err)
	}
	if errors.Is(serveErr, http.ErrServerClosed) {
		serveErr = nil
	}
	return serveErr
}

func (a *app) close() {
	if a.listener != nil {
		a.listener.Close()
	}
	if a.metricsListener != nil {
		a.metricsListener.Close()
	}
	if a.store != nil {
		a.store.Close()
	}
}
