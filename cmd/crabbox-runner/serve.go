package main

import (
	"github.com/spf13/cobra"

	"github.com/crabbox/crabbox-runner/internal/config"
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

Endpoints: POST /webhook, GET /healthz, GET /readyz.
Secrets come from the environment or files only: CRABBOX_WEBHOOK_SECRET(_FILE),
CRABBOX_GITHUB_APP_ID with CRABBOX_GITHUB_APP_PRIVATE_KEY(_FILE), or CRABBOX_GITHUB_TOKEN,
VAST_API_KEY, LAMBDA_API_KEY.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			cfg, err := loadConfig(g, getenv, config.Needs{Webhook: true, GitHub: true, Classes: true, Runner: true, Deployment: true})
			if err != nil {
				return err
			}
			log := newLogger(cmd.ErrOrStderr(), cfg.Log.Level, cfg.Log.Format,
				string(cfg.WebhookSecret), cfg.GitHubToken, string(cfg.GitHubAppKey), cfg.VastAPIKey, cfg.LambdaAPIKey)
			opts := appOptions{}
			if serveHook != nil {
				serveHook(&opts)
			}
			a, err := newApp(cmd.Context(), cfg, log, opts)
			if err != nil {
				return err
			}
			defer a.close()
			return a.run(cmd.Context())
		},
	}
	f := cmd.Flags()
	f.StringVar(&g.Listen, "listen", "", "address to listen on (env CRABBOX_LISTEN; default :8080)")
	f.StringVar(&g.DatabaseURL, "database-url", "", "sqlite:PATH (env CRABBOX_DATABASE_URL; default sqlite:crabbox-runner.db)")
	f.StringVar(&g.Deployment, "deployment", "", "ownership marker on every instance (env CRABBOX_DEPLOYMENT)")
	return cmd
}
