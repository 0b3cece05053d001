package main

import (
	"errors"
	"log/slog"
	"net/http"

	"github.com/spf13/cobra"

	"github.com/crabbox/crabbox-runner/github"
	"github.com/crabbox/crabbox-runner/internal/config"
	"github.com/crabbox/crabbox-runner/provisioner"
	"github.com/crabbox/crabbox-runner/status"
)

// serveHook lets in-process tests observe or replace parts of serve; it is
// nil in production.
var serveHook func(*appOptions)

func newServeCmd(g *globalFlags, getenv config.Getenv) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "serve",
		Short: "Receive workflow_job webhooks and lease GPU runners for them",
		Long: `serve receives GitHub's workflow_job webhooks on POST /webhook, leases a host for
every queued job whose labels match a class, bootstraps a one-job runner on it,
and destroys it when the job completes or a deadline passes.

Endpoints: POST /webhook, GET /healthz, GET /readyz, GET /metrics, and GET /, a
read-only status page (live leases, today's spend, last errors). The page and
/metrics need CRABBOX_STATUS_TOKEN(_FILE) when set (Bearer, or HTTP Basic with the
token as password); without a token they are open when --listen is loopback only
(127.0.0.1:8080) and closed (403) otherwise. metrics_listen (CRABBOX_METRICS_LISTEN)
serves /metrics alone on a second address without the token.
Secrets come from the environment or files only: CRABBOX_WEBHOOK_SECRET(_FILE),
CRABBOX_GITHUB_APP_ID with CRABBOX_GITHUB_APP_PRIVATE_KEY(_FILE), or CRABBOX_GITHUB_TOKEN,
VAST_API_KEY, LAMBDA_API_KEY, CRABBOX_STATUS_TOKEN(_FILE), and CRABBOX_STATE_KEY(_FILE),
the key of every lease's SSH keys (with SQLite, made at first start beside the
database when not given; required with PostgreSQL).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			cfg, err := loadConfig(g, getenv, config.Needs{Webhook: true, GitHub: true, Classes: true, Runner: true, Deployment: true})
			if err != nil {
				return err
			}
			// The state key is settled before the logger exists, so a key
			// serve made is among the secrets the redactor hides too.
			keyNote, err := ensureStateKey(cfg)
			if err != nil {
				return err
			}
			log := newLogger(cmd.ErrOrStderr(), cfg.Log.Level, cfg.Log.Format,
				string(cfg.WebhookSecret), cfg.GitHubToken, string(cfg.GitHubAppKey), cfg.VastAPIKey, cfg.LambdaAPIKey, cfg.StatusToken,
				string(cfg.StateKey), string(cfg.StateKeyPrevious))
			if keyNote != "" {
				log.Info(keyNote)
			}
			recent := status.NewRecent(status.DefaultRecentSize)
			log = withRecent(log, recent)
			opts := appOptions{}
			if serveHook != nil {
				serveHook(&opts)
			}
			a, err := newApp(cmd.Context(), cfg, log, opts)
			if err != nil {
				return err
			}
			defer a.close()
			if err := a.addStatusPage(recent); err != nil {
				return err
			}
			return a.run(cmd.Context())
		},
	}
	f := cmd.Flags()
	f.StringVar(&g.Listen, "listen", "", "address to listen on (env CRABBOX_LISTEN; default :8080)")
	f.StringVar(&g.DatabaseURL, "database-url", "", "sqlite:PATH (env CRABBOX_DATABASE_URL; default sqlite:crabbox-runner.db)")
	f.StringVar(&g.Deployment, "deployment", "", "ownership marker on every instance (env CRABBOX_DEPLOYMENT)")
	return cmd
}

// withRecent adds the status page's ring of recent warnings and errors to
// the logger's chain, after the redactor, so that what the page keeps has
// had every known secret taken out already.
func withRecent(log *slog.Logger, recent *status.Recent) *slog.Logger {
	if rh, ok := log.Handler().(*redactHandler); ok {
		return slog.New(&redactHandler{Handler: recent.Handler(rh.Handler), r: rh.r})
	}
	return slog.New(recent.Handler(log.Handler()))
}

// addStatusPage serves the status page at GET / beside the webhook's
// routes, before the server starts.
func (a *app) addStatusPage(recent *status.Recent) error {
	routes, ok := a.server.Handler.(interface{ Handle(string, http.Handler) })
	if !ok {
		return errors.New("serve: the HTTP handler takes no more routes; the status page cannot be served")
	}
	page, err := status.New(status.Config{
		Store: a.store, Gate: a.gate, WebURL: github.WebURL(a.cfg.GitHub.APIURL),
		Deployment: a.cfg.Deployment, Recent: recent, Logger: a.log.With("component", "status"),
		MinIdle: minIdle(a.cfg.ProvisionerClasses()),
	})
	if err != nil {
		return err
	}
	// Who reads it is a.gate's to say, logged when serve starts (access.go).
	routes.Handle("GET /{$}", page)
	return nil
}

// minIdle is each class's min_idle, for the status page's warm hosts.
func minIdle(classes []provisioner.Class) map[string]int {
	m := map[string]int{}
	for _, c := range classes {
		if c.MinIdle > 0 {
			m[c.Name] = c.MinIdle
		}
	}
	return m
}
