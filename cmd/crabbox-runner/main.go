// Command crabbox-runner leases GPU hosts on Vast.ai and Lambda Cloud for
// GitHub Actions jobs, turns each into a one-job runner over SSH, and
// destroys it when the job ends or a deadline passes.
//
// main stays thin: it parses flags, loads configuration and wires packages.
// Each subcommand lives in its own file.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/crabbox/crabbox-runner/internal/config"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr, os.Getenv)
	stop()
	os.Exit(code)
}

// globalFlags are accepted by every subcommand.
type globalFlags struct {
	config.Overrides
}

// run executes one command line and returns the exit code, so that tests can
// run the real program in-process.
func run(ctx context.Context, args []string, stdout, stderr io.Writer, getenv config.Getenv) int {
	root := newRootCmd(stdout, stderr, getenv)
	root.SetArgs(args)
	if err := root.ExecuteContext(ctx); err != nil {
		var ee exitError
		if !errors.As(err, &ee) || !ee.quiet {
			fmt.Fprintln(stderr, "crabbox-runner:", err)
		}
		if errors.As(err, &ee) {
			return ee.code
		}
		return 1
	}
	return 0
}

// exitError carries an exit code other than 1. quiet: the command has
// already said why (smoke's classification must stay the last line).
type exitError struct {
	code  int
	err   error
	quiet bool
}

func (e exitError) Error() string { return e.err.Error() }
func (e exitError) Unwrap() error { return e.err }

func newRootCmd(stdout, stderr io.Writer, getenv config.Getenv) *cobra.Command {
	g := &globalFlags{}
	root := &cobra.Command{
		Use:   "crabbox-runner",
		Short: "Ephemeral GPU runners for GitHub Actions on Vast.ai and Lambda Cloud",
		Long: `crabbox-runner leases the cheapest GPU host that fits a GitHub Actions job,
turns it into a one-job runner over SSH, and destroys it when the job ends.

Configuration: flags > environment (CRABBOX_*) > config file (crabbox-runner.yaml) > defaults.`,
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.SetOut(stdout)
	root.SetErr(stderr)
	pf := root.PersistentFlags()
	pf.StringVar(&g.ConfigFile, "config", "", "config file (env CRABBOX_CONFIG; default crabbox-runner.yaml if present)")
	pf.StringVar(&g.LogLevel, "log-level", "", "log level: debug, info, warn, error (env CRABBOX_LOG_LEVEL)")
	pf.StringVar(&g.LogFormat, "log-format", "", "log format: json or text (env CRABBOX_LOG_FORMAT)")

	root.AddCommand(
		newServeCmd(g, getenv),
		newDemoCmd(g, getenv),
		newOffersCmd(g, getenv),
		newGCCmd(g, getenv),
		newLeasesCmd(g, getenv),
		newReleaseCmd(g, getenv),
		newDoctorCmd(g, getenv),
		newVersionCmd(),
		newActionCmd(g, getenv),
		newSmokeCmd(g, getenv),
	)
	return root
}

// loadConfig loads and validates the configuration for a command.
func loadConfig(g *globalFlags, getenv config.Getenv, needs config.Needs) (*config.Config, error) {
	cfg, err := config.Load(g.Overrides, getenv)
	if err != nil {
		return nil, err
	}
	if err := cfg.Validate(needs); err != nil {
		return nil, err
	}
	return cfg, nil
}
