package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/crabbox/crabbox-runner/github"
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
	// notServed lists the jobs given no host instead (leases_notserved.go).
	notServed bool
}

func newLeasesCmd(g *globalFlags, getenv config.Getenv) *cobra.Command {
	o := leasesOptions{}
	cmd := &cobra.Command{
		Use:   "leases",
		Short: "List leases: what runs, what it costs, what failed",
		Long: `leases lists the leases in the store: lease, class, provider, instance, state, age,
price per hour, what the host has cost so far, the job it serves with the job's page on
GitHub, the GPU gate's verdict on its host (passed, or the rule it failed: gpu_count,
gpu_model, gpu_memory, driver, cuda, ecc, retired_pages, row_remap, gpu_lost, no_gpu;
the whole verdict is in --output json), and the last error. By default only leases that are not released; --all includes
released ones. --not-served lists instead the queued jobs that get no host and why: refused
by a class's policy (repositories, public_repositories, default labels only), a runner group
that cannot serve the repository, or runners GitHub never gave the job.

The job is the one whose runner took it; "(ID)" is the job the lease was created for,
when no job has taken its runner yet. The cost runs from the provider's answer to the
create call to the release (or now) at the lease's price per hour, disk included. Job
pages are on github.com, or on the host of github.api_url for GitHub Enterprise Server.`,
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
			now := time.Now()
			if o.notServed {
				jobs, err := st.UnservableJobs(cmd.Context(), provisioner.UnservableFilter{Limit: o.limit})
				if err != nil {
					return err
				}
				return printNotServed(cmd.OutOrStdout(), o.output, jobs, github.WebURL(cfg.GitHub.APIURL), now)
			}
			leases, err := st.Leases(cmd.Context(), f)
			if err != nil {
				return err
			}
			rows, err := leaseRows(cmd.Context(), st, leases, github.WebURL(cfg.GitHub.APIURL), now)
			if err != nil {
				return err
			}
			return printLeases(cmd.OutOrStdout(), o.output, rows, now)
		},
	}
	fl := cmd.Flags()
	fl.BoolVar(&o.all, "all", false, "include released leases")
	fl.StringSliceVar(&o.states, "state", nil, "only these states (repeatable): "+stateNames())
	fl.StringVar(&o.class, "class", "", "only this class")
	fl.StringVar(&o.output, "output", "table", "output format: table or json")
	fl.IntVar(&o.limit, "limit", 0, "at most this many (oldest first; 0: all)")
	fl.BoolVar(&o.notServed, "not-served", false, "list the queued jobs given no host instead: refused by a class's policy, "+
		"turned away by the runner group, or given up on after runners GitHub never gave them; with the reason and since when")
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
	ID            string  `json:"id"`
	State         string  `json:"state"`
	Class         string  `json:"class"`
	Scope         string  `json:"scope"`
	Provider      string  `json:"provider,omitempty"`
	OfferID       string  `json:"offer_id,omitempty"`
	GPU           string  `json:"gpu,omitempty"`
	PricePerHour  float64 `json:"price_per_hour"`
	Region        string  `json:"region,omitempty"`
	InstanceID    string  `json:"instance_id,omitempty"`
	SSH           string  `json:"ssh,omitempty"`
	RunnerName    string  `json:"runner_name"`
	RunnerID      int64   `json:"runner_id,omitempty"`
	JobID         int64   `json:"job_id,omitempty"`
	BoundJobID    int64   `json:"bound_job_id,omitempty"`
	ReleaseReason string  `json:"release_reason,omitempty"`
	Error         string  `json:"error,omitempty"`
	// Interruptible: the host is a bid instance (classes[].interruptible).
	Interruptible bool `json:"interruptible,omitempty"`
	// LostReason: the host was lost while the runner was idle or busy.
	LostReason string `json:"lost_reason,omitempty"`
	// Warm: made to keep the class's min_idle, not for a job.
	Warm bool `json:"warm,omitempty"`
	// GPUCount is the offer's GPU count; GPUCheck the GPU gate's verdict
	// ("passed: …" or "<rule>: found …, wanted …").
	GPUCount int `json:"gpu_count,omitempty"`
	// HedgeOf is the lease this one hedges while it races (hedge_after);
	// HedgedAt when a hedge was started for this lease.
	HedgeOf  string    `json:"hedge_of,omitempty"`
	HedgedAt time.Time `json:"hedged_at,omitzero"`
	// PromotedFrom is the failed lease whose hedge this lease was.
	PromotedFrom string    `json:"promoted_from,omitempty"`
	GPUCheck     string    `json:"gpu_check,omitempty"`
	CreatedAt    time.Time `json:"created_at"`
	ExpiresAt    time.Time `json:"expires_at,omitzero"`
	ReleasedAt   time.Time `json:"released_at,omitzero"`

	// AgeSeconds is the time since the lease was created.
	AgeSeconds float64 `json:"age_seconds"`
	// CostSoFar is what the host has cost, in USD: price per hour times
	// the time it was billed (provisioner.Cost).
	CostSoFar float64 `json:"cost_so_far"`
	// JobRepo, JobRunID and JobURL are the shown job's repository, workflow
	// run and page on GitHub, when the store knows the job.
	JobRepo  string `json:"job_repo,omitempty"`
	JobRunID int64  `json:"job_run_id,omitempty"`
	JobURL   string `json:"job_url,omitempty"`
	// JobRerun says why the shown job was re-run, when crabbox-runner
	// re-ran it after losing its host (rerun_lost_jobs).
	JobRerun   string    `json:"job_rerun,omitempty"`
	JobRerunAt time.Time `json:"job_rerun_at,omitzero"`
}

// leaseRow is a lease with what leases shows beside it.
type leaseRow struct {
	*provisioner.Lease
	cost  float64
	job   *provisioner.Job // the bound job, else the one it was created for; nil when unknown
	jobID int64
	url   string
}

// leaseRows adds to each lease its cost so far and its job with the job's
// page under web (GitHub's web base).
func leaseRows(ctx context.Context, st provisioner.Store, leases []*provisioner.Lease, web string, now time.Time) ([]leaseRow, error) {
	rows := make([]leaseRow, 0, len(leases))
	for _, l := range leases {
		r := leaseRow{Lease: l}
		events, err := st.LeaseEvents(ctx, l.ID)
		if err != nil {
			return nil, err
		}
		r.cost = provisioner.Cost(l, events, now)
		var job *provisioner.Job
		switch {
		case l.BoundJobID != 0:
			r.jobID = l.BoundJobID
			job, err = st.LatestJob(ctx, l.BoundJobID)
		case l.JobID != 0:
			r.jobID = l.JobID
			job, err = st.Job(ctx, l.JobID, l.RunAttempt)
			if errors.Is(err, provisioner.ErrNotFound) {
				job, err = st.LatestJob(ctx, l.JobID)
			}
		}
		switch {
		case errors.Is(err, provisioner.ErrNotFound):
			// A job the store never saw (action mode): no page to link.
		case err != nil:
			return nil, err
		case job != nil:
			r.job = job
			if job.Repo != "" && job.RunID != 0 {
				r.url = github.JobURL(web, job.Repo, job.RunID, job.ID)
			}
		}
		rows = append(rows, r)
	}
	return rows, nil
}

// age is the time since the lease was created.
func (r leaseRow) age(now time.Time) time.Duration { return max(now.Sub(r.CreatedAt), 0) }

func printLeases(w io.Writer, format string, rows []leaseRow, now time.Time) error {
	if format == "json" {
		out := make([]leaseJSON, 0, len(rows))
		for _, r := range rows {
			l := r.Lease
			j := leaseJSON{ID: l.ID, State: string(l.State), Class: l.Class, Scope: l.Scope.Key(),
				Provider: l.Provider, OfferID: l.OfferID, GPU: l.GPU, PricePerHour: l.PricePerHour, Region: l.Region,
				InstanceID: l.InstanceID, SSH: l.SSH.Addr(), RunnerName: l.RunnerName, RunnerID: l.RunnerID,
				JobID: l.JobID, BoundJobID: l.BoundJobID, ReleaseReason: l.ReleaseReason, Error: l.Error,
				GPUCount: l.GPUCount, GPUCheck: l.GPUCheck,
				CreatedAt: l.CreatedAt, ExpiresAt: l.ExpiresAt, ReleasedAt: l.ReleasedAt,
				Interruptible: l.Interruptible, LostReason: l.LostReason, HedgeOf: l.HedgeOf, HedgedAt: l.HedgedAt, PromotedFrom: l.PromotedFrom, Warm: l.Warm,
				AgeSeconds: r.age(now).Seconds(), CostSoFar: r.cost, JobURL: r.url}
			if r.job != nil {
				j.JobRepo, j.JobRunID = r.job.Repo, r.job.RunID
				j.JobRerun, j.JobRerunAt = r.job.RerunReason, r.job.RerunAt
			}
			out = append(out, j)
		}
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		return enc.Encode(out)
	}
	if len(rows) == 0 {
		fmt.Fprintln(w, "no leases")
		return nil
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "LEASE\tCLASS\tPROVIDER\tINSTANCE\tSTATE\tAGE\t$/H\tCOST\tJOB\tURL\tGPU\tNOTE")
	rate, spent := 0.0, 0.0
	for _, r := range rows {
		l := r.Lease
		job := "-"
		switch {
		case l.BoundJobID != 0:
			job = fmt.Sprint(l.BoundJobID)
		case l.JobID != 0:
			job = fmt.Sprintf("(%d)", l.JobID)
		case l.Warm:
			job = "warm" // kept for min_idle, no job yet
		}
		if l.Warm && l.BoundJobID != 0 {
			job += " (warm)"
		}
		note := l.Error
		if note == "" {
			note = l.ReleaseReason
		}
		if len(note) > 60 {
			note = note[:57] + "..."
		}
		if l.HedgeOf != "" {
			note = "hedge of " + l.HedgeOf + "; " + note
		}
		if r.job != nil && !r.job.RerunAt.IsZero() {
			note += " (job re-run)"
		}
		if l.InstanceID != "" && l.State != provisioner.StateReleased {
			rate += l.PricePerHour
		}
		spent += r.cost
		provider := dash(l.Provider)
		if l.Interruptible {
			provider += "/bid" // an interruptible host, which may be outbid
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%.2f\t%.3f\t%s\t%s\t%s\t%s\n", l.ID, l.Class, provider, dash(l.InstanceID),
			l.State, formatAge(r.age(now)), l.PricePerHour, r.cost, job, dash(r.url), gateColumn(l.GPUCheck), note)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	fmt.Fprintf(w, "%d leases; hosts running now cost $%.2f/hour; these leases cost $%.2f so far\n", len(rows), rate, spent)
	return nil
}

// gateColumn is the GPU gate's verdict in a word: "passed", the failed
// rule, or "-" when the host was not checked (yet). The whole verdict is in
// the JSON output and, for a failure, in the note.
func gateColumn(check string) string {
	rule, _, _ := strings.Cut(check, ":")
	return dash(rule)
}

// formatAge is a duration to the second, shortest first: 45s, 12m5s, 3h2m, 2d4h.
func formatAge(d time.Duration) string {
	d = d.Round(time.Second)
	switch {
	case d < time.Minute:
		return fmt.Sprintf("%ds", int(d.Seconds()))
	case d < time.Hour:
		return fmt.Sprintf("%dm%ds", int(d.Minutes()), int(d.Seconds())%60)
	case d < 48*time.Hour:
		return fmt.Sprintf("%dh%dm", int(d.Hours()), int(d.Minutes())%60)
	}
	return fmt.Sprintf("%dd%dh", int(d.Hours())/24, int(d.Hours())%24)
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
