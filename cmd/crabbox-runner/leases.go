package main

import (
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/crabbox/crabbox-runner/internal/config"
	"github.com/crabbox/crabbox-runner/provisioner"
	"github.com/crabbox/crabbox-runner/store"
)

type leasesOptions struct {
	all    bool
	states []string
	class  string
	output string
	limit  int
}

func newLeasesCmd(g *globalFlags, getenv config.Getenv) *cobra.Command {
	o := leasesOptions{}
	cmd := &cobra.Command{
		Use:   "leases",
		Short: "List leases: what runs, what it costs, what failed",
		Long: `leases lists the leases in the store: state, class, provider, GPU, price, instance,
runner, the job they serve, age, and the last error. By default only leases that are not
released; --all includes released ones.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if o.output != "table" && o.output != "json" {
				return fmt.Errorf("--output: %q is not table or json", o.output)
			}
			f := provisioner.LeaseFilter{Class: o.class, Limit: o.limit}
			for _, s := range o.states {
				st := provisioner.State(s)
				if !st.Valid() {
					return fmt.Errorf("--state: %q is not a lease state", s)
				}
				f.States = append(f.States, st)
			}
			if len(f.States) == 0 && !o.all {
				for _, st := range provisioner.AllStates {
					if st != provisioner.StateReleased {
						f.States = append(f.States, st)
					}
				}
			}
			cfg, err := loadConfig(g, getenv, config.Needs{})
			if err != nil {
				return err
			}
			if !databaseExists(cfg.DatabaseURL) {
				return fmt.Errorf("no database at %s (database_url); has serve run here?", cfg.DatabaseURL)
			}
			st, err := store.Open(cmd.Context(), cfg.DatabaseURL)
			if err != nil {
				return err
			}
			defer st.Close()
			leases, err := st.Leases(cmd.Context(), f)
			if err != nil {
				return err
			}
			return printLeases(cmd.OutOrStdout(), o.output, leases, time.Now())
		},
	}
	fl := cmd.Flags()
	fl.BoolVar(&o.all, "all", false, "include released leases")
	fl.StringSliceVar(&o.states, "state", nil, "only these states (repeatable): "+stateNames())
	fl.StringVar(&o.class, "class", "", "only this class")
	fl.StringVar(&o.output, "output", "table", "output format: table or json")
	fl.IntVar(&o.limit, "limit", 0, "at most this many (oldest first; 0: all)")
	return cmd
}

func stateNames() string {
	var s []string
	for _, st := range provisioner.AllStates {
		s = append(s, string(st))
	}
	return strings.Join(s, ", ")
}

type leaseJSON struct {
	ID            string    `json:"id"`
	State         string    `json:"state"`
	Class         string    `json:"class"`
	Scope         string    `json:"scope"`
	Provider      string    `json:"provider,omitempty"`
	OfferID       string    `json:"offer_id,omitempty"`
	GPU           string    `json:"gpu,omitempty"`
	PricePerHour  float64   `json:"price_per_hour"`
	Region        string    `json:"region,omitempty"`
	InstanceID    string    `json:"instance_id,omitempty"`
	SSH           string    `json:"ssh,omitempty"`
	RunnerName    string    `json:"runner_name"`
	RunnerID      int64     `json:"runner_id,omitempty"`
	JobID         int64     `json:"job_id,omitempty"`
	BoundJobID    int64     `json:"bound_job_id,omitempty"`
	ReleaseReason string    `json:"release_reason,omitempty"`
	Error         string    `json:"error,omitempty"`
	CreatedAt     time.Time `json:"created_at"`
	ExpiresAt     time.Time `json:"expires_at,omitzero"`
	ReleasedAt    time.Time `json:"released_at,omitzero"`
}

func printLeases(w io.Writer, format string, leases []*provisioner.Lease, now time.Time) error {
	if format == "json" {
		out := make([]leaseJSON, 0, len(leases))
		for _, l := range leases {
			out = append(out, leaseJSON{ID: l.ID, State: string(l.State), Class: l.Class, Scope: l.Scope.Key(),
				Provider: l.Provider, OfferID: l.OfferID, GPU: l.GPU, PricePerHour: l.PricePerHour, Region: l.Region,
				InstanceID: l.InstanceID, SSH: l.SSH.Addr(), RunnerName: l.RunnerName, RunnerID: l.RunnerID,
				JobID: l.JobID, BoundJobID: l.BoundJobID, ReleaseReason: l.ReleaseReason, Error: l.Error,
				CreatedAt: l.CreatedAt, ExpiresAt: l.ExpiresAt, ReleasedAt: l.ReleasedAt})
		}
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		return enc.Encode(out)
	}
	if len(leases) == 0 {
		fmt.Fprintln(w, "no leases")
		return nil
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "LEASE\tSTATE\tCLASS\tPROVIDER\tGPU\t$/H\tINSTANCE\tJOB\tAGE\tNOTE")
	spend := 0.0
	for _, l := range leases {
		job := "-"
		if l.BoundJobID != 0 {
			job = fmt.Sprint(l.BoundJobID)
		} else if l.JobID != 0 {
			job = fmt.Sprintf("(%d)", l.JobID)
		}
		note := l.Error
		if note == "" {
			note = l.ReleaseReason
		}
		if len(note) > 60 {
			note = note[:57] + "..."
		}
		if l.InstanceID != "" && l.State != provisioner.StateReleased {
			spend += l.PricePerHour
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%.2f\t%s\t%s\t%s\t%s\n", l.ID, l.State, l.Class, dash(l.Provider), dash(l.GPU),
			l.PricePerHour, dash(l.InstanceID), job, now.Sub(l.CreatedAt).Round(time.Second), note)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	fmt.Fprintf(w, "%d leases; hosts running now cost $%.2f/hour\n", len(leases), spend)
	return nil
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
