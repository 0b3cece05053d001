package main

import (
	"context"
	"fmt"
	"io"
	"time"

	"github.com/spf13/cobra"

	"github.com/crabbox/crabbox-runner/github"
	"github.com/crabbox/crabbox-runner/internal/config"
	"github.com/crabbox/crabbox-runner/store"
)

// doctor checks, before a deployment goes live, that everything serve
// needs answers: the configuration, the database, GitHub with the given
// credentials, and every provider with its key (by asking for offers, which
// rents nothing).
func newDoctorCmd(g *globalFlags, getenv config.Getenv) *cobra.Command {
	return &cobra.Command{
		Use:   "doctor",
		Short: "Check the configuration, the database, GitHub and the providers before going live",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx, cancel := context.WithTimeout(cmd.Context(), 2*time.Minute)
			defer cancel()
			d := &doctor{w: cmd.OutOrStdout()}
			cfg, err := loadConfig(g, getenv, config.Needs{Webhook: true, GitHub: true, Classes: true, Runner: true, Deployment: true})
			if !d.check("configuration", err, func() string {
				return fmt.Sprintf("%s, deployment %s, %d classes", cmpOr(cfg.Source, "environment only"), cfg.Deployment, len(cfg.Classes))
			}) {
				return d.result()
			}
			log := newLogger(io.Discard, "error", "text")

			if databaseExists(cfg.DatabaseURL) {
				st, err := store.Open(ctx, cfg.DatabaseURL)
				if d.check("database", err, func() string { return cfg.DatabaseURL }) {
					d.check("database answers", st.Ping(ctx), func() string { return "ok" })
					st.Close()
				}
			} else {
				d.check("database", nil, func() string { return cfg.DatabaseURL + " does not exist yet; serve creates it" })
			}

			gh, err := github.New(github.Config{APIURL: cfg.GitHub.APIURL, Token: cfg.GitHubToken, AppID: cfg.GitHub.AppID,
				AppPrivateKey: cfg.GitHubAppKey, RunnerGroupID: cfg.GitHub.RunnerGroupID})
			if d.check("GitHub client", err, func() string { return cfg.GitHub.APIURL }) {
				scopes, err := gh.Scopes(ctx)
				d.check("GitHub App installations", err, func() string {
					if cfg.GitHubToken != "" {
						return "token mode: none to list"
					}
					return fmt.Sprintf("%d organizations", len(scopes))
				})
				for _, s := range append(scopes, cfg.GitHub.ScopeList()...) {
					runners, err := gh.ListRunners(ctx, s)
					d.check("runners in "+s.Key(), err, func() string { return fmt.Sprintf("%d runners listed", len(runners)) })
				}
			}

			classes := cfg.ProvisionerClasses()
			built := map[string]bool{}
			for _, c := range classes {
				for _, name := range c.Providers {
					p, err := newProvider(name, cfg, log)
					if !built[name] {
						built[name] = true
						if !d.check("provider "+name, err, func() string { return "configured" }) {
							continue
						}
					}
					if err != nil {
						continue
					}
					offers, err := p.Offers(ctx, c)
					d.check(fmt.Sprintf("offers for class %s on %s", c.Name, name), err, func() string {
						if len(offers) == 0 {
							return "none fit right now"
						}
						return fmt.Sprintf("%d, cheapest %s at $%.2f/h", len(offers), offers[0].GPU, offers[0].PricePerHour)
					})
				}
			}
			return d.result()
		},
	}
}

type doctor struct {
	w      io.Writer
	failed int
}

// check prints one line: ok with what was found, or FAIL with the error.
func (d *doctor) check(what string, err error, ok func() string) bool {
	if err != nil {
		d.failed++
		fmt.Fprintf(d.w, "FAIL  %-40s %v\n", what, err)
		return false
	}
	fmt.Fprintf(d.w, "ok    %-40s %s\n", what, ok())
	return true
}

func (d *doctor) result() error {
	if d.failed > 0 {
		return exitError{code: 1, err: fmt.Errorf("%d checks failed", d.failed)}
	}
	fmt.Fprintln(d.w, "all checks passed")
	return nil
}
