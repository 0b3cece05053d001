package main

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/spf13/cobra"

	"github.com/crabbox/crabbox-runner/internal/config"
	"github.com/crabbox/crabbox-runner/provisioner"
	"github.com/crabbox/crabbox-runner/store"
)

func newReleaseCmd(g *globalFlags, getenv config.Getenv) *cobra.Command {
	var reason string
	var wait time.Duration
	cmd := &cobra.Command{
		Use:   "release LEASE_ID...",
		Short: "Release leases: remove their runners and destroy their hosts",
		Long: `release asks for leases to be released. The release itself (runner removed, host
destroyed) is durable work that serve carries out, so it happens even if this command
is interrupted; --wait waits until it is done. A job still queued for the lease's class
gets a new lease.`,
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			cfg, err := loadConfig(g, getenv, config.Needs{Deployment: true})
			if err != nil {
				return err
			}
			if !databaseExists(cfg.DatabaseURL) {
				return fmt.Errorf("no database at %s (database_url)", cfg.DatabaseURL)
			}
			ctx := cmd.Context()
			st, err := store.Open(ctx, cfg.DatabaseURL)
			if err != nil {
				return err
			}
			defer st.Close()
			// An insert-only queue: serve's workers do the release.
			if err := st.StartWork(ctx, provisioner.WorkConfig{}); err != nil {
				return err
			}
			p, err := provisioner.New(provisioner.Config{Deployment: cfg.Deployment, Classes: cfg.ProvisionerClasses(),
				Store: st, Logger: newLogger(cmd.ErrOrStderr(), "warn", "text")})
			if err != nil {
				return err
			}
			var found []string
			var problems []string
			for _, id := range args {
				l, err := st.Lease(ctx, id)
				if errors.Is(err, provisioner.ErrNotFound) {
					problems = append(problems, fmt.Sprintf("lease %s: not found (crabbox-runner leases --all lists them)", id))
					continue
				}
				if err != nil {
					return fmt.Errorf("lease %s: %w", id, err)
				}
				found = append(found, id)
				switch l.State {
				case provisioner.StateReleased:
					fmt.Fprintf(cmd.OutOrStdout(), "lease %s: already released\n", id)
					continue
				case provisioner.StateReleasing:
					fmt.Fprintf(cmd.OutOrStdout(), "lease %s: already being released\n", id)
					continue
				}
				if err := p.Release(ctx, id, reason); err != nil {
					problems = append(problems, fmt.Sprintf("lease %s: %v", id, err))
					continue
				}
				fmt.Fprintf(cmd.OutOrStdout(), "lease %s: release requested (was %s)\n", id, l.State)
			}
			if len(problems) > 0 {
				for _, pr := range problems[:len(problems)-1] {
					fmt.Fprintln(cmd.ErrOrStderr(), "crabbox-runner:", pr)
				}
				return errors.New(problems[len(problems)-1])
			}
			if wait <= 0 {
				return nil
			}
			return waitReleasedIDs(ctx, cmd.OutOrStdout(), st, found, wait)
		},
	}
	cmd.Flags().StringVar(&reason, "reason", "released by hand", "why, for the lease's history")
	cmd.Flags().DurationVar(&wait, "wait", 0, "wait up to this long for the hosts to be destroyed (serve must be running)")
	return cmd
}

func waitReleasedIDs(ctx context.Context, w interface{ Write([]byte) (int, error) }, st provisioner.Store, ids []string, d time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, d)
	defer cancel()
	for {
		done := 0
		for _, id := range ids {
			l, err := st.Lease(ctx, id)
			if err == nil && l.State == provisioner.StateReleased {
				done++
			}
		}
		if done == len(ids) {
			fmt.Fprintf(w, "released: %d of %d\n", done, len(ids))
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%d of %d leases released after %s; is serve running?", done, len(ids), d)
		case <-time.After(200 * time.Millisecond):
		}
	}
}
