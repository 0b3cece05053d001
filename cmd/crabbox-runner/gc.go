package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/crabbox/crabbox-runner/github"
	"github.com/crabbox/crabbox-runner/internal/config"
	"github.com/crabbox/crabbox-runner/provisioner"
	"github.com/crabbox/crabbox-runner/store"
)

type gcOptions struct {
	yes     bool
	output  string
	noStore bool
	scopes  []string
}

func newGCCmd(g *globalFlags, getenv config.Getenv) *cobra.Command {
	o := gcOptions{}
	cmd := &cobra.Command{
		Use:   "gc",
		Short: "Find and destroy hosts and runners this deployment left behind",
		Long: `gc lists every instance carrying this deployment's ownership marker on every
configured provider, and every runner named as this deployment's on GitHub, joins them
with the store when there is one, and plans:

  - destroy instances whose expiry passed, that have no lease, or whose lease is
    released or failed;
  - remove offline runners whose host is gone;
  - fail and release leases whose host vanished.

It is a dry run unless given --yes, and exits non-zero when an action fails. It never
touches an instance without this deployment's marker.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if o.output != "table" && o.output != "json" {
				return fmt.Errorf("--output: %q is not table or json", o.output)
			}
			cfg, err := loadConfig(g, getenv, config.Needs{GitHub: true, Deployment: true})
			if err != nil {
				return err
			}
			for _, s := range o.scopes {
				cfg.GitHub.Scopes = append(cfg.GitHub.Scopes, s)
			}
			if err := cfg.Validate(config.Needs{GitHub: true, Deployment: true}); err != nil {
				return err
			}
			log := newLogger(cmd.ErrOrStderr(), cfg.Log.Level, "text", cfg.GitHubToken, string(cfg.GitHubAppKey), cfg.VastAPIKey, cfg.LambdaAPIKey)
			plan, failed, err := runGC(cmd.Context(), cfg, log, !o.noStore, o.yes)
			if err != nil {
				return err
			}
			if err := printGC(cmd.OutOrStdout(), o.output, plan, o.yes); err != nil {
				return err
			}
			if failed > 0 {
				return exitError{code: 2, err: fmt.Errorf("%d of %d gc actions failed", failed, len(plan.Actions))}
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.BoolVar(&o.yes, "yes", false, "carry out the plan (default: dry run)")
	f.StringVar(&o.output, "output", "table", "output format: table or json")
	f.BoolVar(&o.noStore, "no-store", false, "work from the instances' markers alone, as in Action mode")
	f.StringSliceVar(&o.scopes, "scope", nil, "org or owner/repo to check for runners (repeatable; adds to github.scopes)")
	return cmd
}

// runGC plans a gc pass over every provider the configuration names and,
// with apply, carries it out. The store is used when useStore is set and
// its database exists; gc never creates a database.
func runGC(ctx context.Context, cfg *config.Config, log *slog.Logger, useStore, apply bool) (*provisioner.GCPlan, int, error) {
	providers := map[string]provisioner.Provider{}
	for _, c := range cfg.Classes {
		for _, name := range c.Providers {
			if _, ok := providers[name]; ok {
				continue
			}
			p, err := newProvider(name, cfg, log)
			if err != nil {
				return nil, 0, err
			}
			providers[name] = p
		}
	}
	gh, err := github.New(github.Config{APIURL: cfg.GitHub.APIURL, Token: cfg.GitHubToken, AppID: cfg.GitHub.AppID,
		AppPrivateKey: cfg.GitHubAppKey, RunnerGroupID: cfg.GitHub.RunnerGroupID})
	if err != nil {
		return nil, 0, err
	}
	pcfg := provisioner.Config{Deployment: cfg.Deployment, Classes: cfg.ProvisionerClasses(), Providers: providers,
		GitHub: gh, Logger: log}
	if useStore && databaseExists(cfg.DatabaseURL) {
		st, err := store.Open(ctx, cfg.DatabaseURL)
		if err != nil {
			return nil, 0, err
		}
		defer st.Close()
		pcfg.Store = st
	}
	p, err := provisioner.New(pcfg)
	if err != nil {
		return nil, 0, err
	}
	plan, err := p.PlanGC(ctx, provisioner.GCOptions{Scopes: cfg.GitHub.ScopeList()})
	if err != nil {
		return nil, 0, err
	}
	failed := 0
	if apply {
		failed = p.ApplyGC(ctx, plan)
	}
	return plan, failed, nil
}

func databaseExists(url string) bool {
	path, ok := strings.CutPrefix(url, "sqlite:")
	if !ok {
		return true // a server database exists or the open fails loudly
	}
	_, err := os.Stat(path)
	return err == nil
}

func printGC(w io.Writer, format string, plan *provisioner.GCPlan, applied bool) error {
	if format == "json" {
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		return enc.Encode(plan)
	}
	mode := "dry run (use --yes to act)"
	if applied {
		mode = "applied"
	}
	fmt.Fprintf(w, "gc for deployment %s: %d instances and %d runners of ours seen; %d actions, %s\n",
		plan.Deployment, plan.Instances, plan.Runners, len(plan.Actions), mode)
	for _, warn := range plan.Warnings {
		fmt.Fprintf(w, "warning: %s\n", warn)
	}
	if len(plan.Actions) == 0 {
		return nil
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "ACTION\tTARGET\tLEASE\tREASON\tRESULT")
	for _, a := range plan.Actions {
		target := a.Provider + " " + a.InstanceID
		if a.Kind == provisioner.GCRemoveRunner {
			target = a.Scope + " " + a.RunnerName
		}
		result := "planned"
		switch {
		case a.Error != "":
			result = "FAILED: " + a.Error
		case a.Done:
			result = "done"
		case a.Skipped != "":
			result = "skipped: " + a.Skipped
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", a.Kind, target, a.LeaseID, a.Reason, result)
	}
	return tw.Flush()
}
