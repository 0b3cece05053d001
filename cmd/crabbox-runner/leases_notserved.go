package main

import (
	"encoding/json"
	"fmt"
	"io"
	"text/tabwriter"
	"time"

	"github.com/crabbox/crabbox-runner/github"
	"github.com/crabbox/crabbox-runner/provisioner"
)

// `leases --not-served`: the queued jobs given no host (refused by a class
// policy, turned away by the runner group, or given up on after runners
// GitHub never gave them), with the reason and since when.

type notServedJSON struct {
	JobID        int64     `json:"job_id"`
	RunAttempt   int64     `json:"run_attempt"`
	RunID        int64     `json:"run_id,omitempty"`
	Name         string    `json:"name,omitempty"`
	Repo         string    `json:"repo"`
	Visibility   string    `json:"visibility,omitempty"`
	Class        string    `json:"class,omitempty"`
	Labels       []string  `json:"labels"`
	Kind         string    `json:"kind"`
	Reason       string    `json:"reason"`
	Since        time.Time `json:"since"`
	Until        time.Time `json:"until,omitzero"`
	UnusedLeases int       `json:"unused_leases,omitempty"`
	JobURL       string    `json:"job_url,omitempty"`
}

// jobPageURL is the job's page on GitHub, when its run is known.
func jobPageURL(web string, j *provisioner.Job) string {
	if j.RunID <= 0 || j.Repo == "" {
		return ""
	}
	return github.JobURL(web, j.Repo, j.RunID, j.ID)
}

func printNotServed(w io.Writer, format string, jobs []*provisioner.Job, web string, now time.Time) error {
	if format == "json" {
		out := make([]notServedJSON, 0, len(jobs))
		for _, j := range jobs {
			u := j.Unservable
			out = append(out, notServedJSON{JobID: j.ID, RunAttempt: j.RunAttempt, RunID: j.RunID, Name: j.Name, Repo: j.Repo,
				Visibility: j.Visibility, Class: j.Class, Labels: j.Labels, Kind: string(u.Kind), Reason: u.Reason,
				Since: u.At, Until: u.Until, UnusedLeases: j.UnusedLeases, JobURL: jobPageURL(web, j)})
		}
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		return enc.Encode(out)
	}
	if len(jobs) == 0 {
		fmt.Fprintln(w, "every queued job that fits a class is being served")
		return nil
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "JOB\tREPO\tCLASS\tKIND\tSINCE\tREASON")
	for _, j := range jobs {
		u := j.Unservable
		fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s ago\t%s\n", j.ID, j.Repo, dash(j.Class), u.Kind, formatAge(now.Sub(u.At)), u.Reason)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	fmt.Fprintf(w, "%d jobs not served\n", len(jobs))
	return nil
}
