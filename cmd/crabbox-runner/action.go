package main

import (
	"errors"
	"io"
	"log/slog"

	"github.com/spf13/cobra"

	"github.com/crabbox/crabbox-runner/action"
	"github.com/crabbox/crabbox-runner/internal/config"
	"github.com/crabbox/crabbox-runner/provisioner"
)

// actionHook lets tests replace what the action builds from the process
// (providers that must outlive one run, faster polls); actionConfigHook
// adjusts the provider settings the factories get (the fake clouds' SSH user).
var (
	actionHook       func(*action.Env)
	actionConfigHook func(*config.Config)
)

func newActionCmd(_ *globalFlags, getenv config.Getenv) *cobra.Command {
	return &cobra.Command{
		Use:   "action",
		Short: "The entry of the composite GitHub Action (action.yml): start, stop or gc",
		Long: `action is what action.yml runs. It reads the Action's inputs from INPUT_<NAME>
variables (upper-cased, hyphens kept: INPUT_GITHUB-TOKEN), which action.yml's step
sets from its inputs, and the GITHUB_* variables every runner sets. It writes
outputs to $GITHUB_OUTPUT, a table to $GITHUB_STEP_SUMMARY, and workflow commands
to stdout. Every secret it is given or makes is masked first.

  INPUT_MODE=start   lease the cheapest fitting GPU host; register a runner with a
                     label unique to this run (output: label); wait until it is online
  INPUT_MODE=stop    remove the runner and destroy the host of INPUT_LEASE-ID or
                     INPUT_LABEL; report run time and cost; safe to repeat
  INPUT_MODE=gc      destroy expired hosts of the deployment, and offline runners
                     whose host is gone (crabbox-runner gc --no-store); dry run with
                     INPUT_DRY-RUN=true

See docs/action.md for the inputs, and the workflows in examples/workflows.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			env := action.Env{
				Getenv:      getenv,
				Stdout:      cmd.OutOrStdout(),
				Stderr:      cmd.ErrOrStderr(),
				NewProvider: actionProvider(getenv),
				PrintGC: func(w io.Writer, plan *provisioner.GCPlan, applied bool) error {
					return printGC(w, "table", plan, applied)
				},
			}
			if actionHook != nil {
				actionHook(&env)
			}
			err := action.Run(cmd.Context(), env)
			if errors.Is(err, action.ErrFailed) {
				// Already reported as an ::error:: annotation, redacted.
				return exitError{code: 1, err: err}
			}
			return err
		},
	}
}

// actionProvider builds providers from the Action's keys and the contract's
// API URL variables; no config file is read, so a crabbox-runner.yaml in
// the workflow's checkout changes nothing.
func actionProvider(getenv config.Getenv) func(string, action.Keys, *slog.Logger) (provisioner.Provider, error) {
	return func(name string, keys action.Keys, log *slog.Logger) (provisioner.Provider, error) {
		cfg := &config.Config{VastAPIKey: keys.Vast, LambdaAPIKey: keys.Lambda}
		cfg.Providers.Vast.APIURL = getenv("CRABBOX_VAST_API_URL")
		cfg.Providers.Lambda.APIURL = getenv("CRABBOX_LAMBDA_API_URL")
		cfg.ApplyDefaults()
		if err := config.CheckBaseURL("CRABBOX_VAST_API_URL", cfg.Providers.Vast.APIURL); err != nil {
			return nil, err
		}
		if err := config.CheckBaseURL("CRABBOX_LAMBDA_API_URL", cfg.Providers.Lambda.APIURL); err != nil {
			return nil, err
		}
		if actionConfigHook != nil {
			actionConfigHook(cfg)
		}
		if name == "local" {
			// Loopback hosts, for tests and demos only.
			cfg.Providers.Local.Dir = getenv("CRABBOX_ACTION_LOCAL_DIR")
			if cfg.Providers.Local.Dir == "" {
				return nil, errors.New("provider local is for tests: it needs CRABBOX_ACTION_LOCAL_DIR")
			}
		}
		return newProvider(name, cfg, log)
	}
}
