package main

// The time-to-runner benchmark's figures, in real terms (the scaling model
// is in ttrbench_model_test.go and docs/benchmarks.md).

import (
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/crabbox/crabbox-runner/provisioner"
)

// ttrReport is one scenario's figures. Per-job phases are real-terms
// durations, one per job that ran.
type ttrReport struct {
	Scenario string
	p        ttrParams
	trace    string // ttrRun.trace
	Jobs     int
	// The phases of each job, and their sum.
	QueuedCreate, CreateSSH, SSHOnline, OnlineAssigned, Total []time.Duration
	// Ready are the totals of the jobs that found a runner already online
	// when they were queued (a warm host, or a surplus one).
	Ready []time.Duration
	// Provider is the provider's part of create → SSH (S × create →
	// reachable); Overhead = Total − Provider.
	Provider, Overhead []time.Duration
	// MoneyTotal is what every host cost; MoneyUnused what the hosts whose
	// lease never ran a job cost (USD, real terms).
	MoneyTotal, MoneyUnused float64
	Hosts, NeverBooted      int
	FailedFast              int
	MaxHostsPerLease        int
	// LongestNeverBootWait is the longest a lease held a host that never
	// booted (real terms).
	LongestNeverBootWait time.Duration
	Wall                 time.Duration
	// OtherJobs counts the jobs run by a lease made for another job (in
	// webhook mode any idle runner of the class takes the oldest queued
	// job): a slow host's delay is then spread over later jobs.
	OtherJobs int
	// Hedges started, and the leases due one that got none, by reason.
	Hedges     int
	HedgeSkips map[string]int
	// Fetches are the hosts' own timings of the runner tarball's download.
	Fetches []ttrFetch
	// Requests are the run's provider and GitHub requests (serve's own
	// counters): what a run costs against the providers' rate limits and
	// GitHub's rate budget.
	Requests ttrRequests
}

// report computes the figures. Per job: queued is the fake GitHub's queue
// time; create the first create call for the job (the earliest host of the
// leases made for it or of the lease that ran it, never before the queue
// time); reachable when the winning host turned reachable at the fake;
// SSH when the provisioner saw SSH (the lease's bootstrapping event);
// online the runner's first "online" at the fake GitHub; assigned when the
// job started. Each is kept at or after the one before, so a job that
// finds a host already up has zero for the phases it skipped.
func (r *ttrRun) report() *ttrReport {
	p := r.p
	S := p.Scale
	rep := &ttrReport{Scenario: r.sc.Name, p: p, Jobs: len(r.jobs), MaxHostsPerLease: r.maxHostsPerLease, Wall: r.ended.Sub(r.started),
		Hedges: r.hedges, HedgeSkips: r.hedgeSkips, trace: r.trace, Requests: r.requests, Fetches: r.fetches}
	byLease := map[string][]ttrHost{}
	for _, h := range r.hosts {
		byLease[h.LeaseID] = append(byLease[h.LeaseID], h)
	}
	byRunner := map[string]*provisioner.Lease{}
	for _, l := range r.leases {
		if l.RunnerName != "" {
			byRunner[l.RunnerName] = l
		}
	}
	jobWall := map[string]time.Duration{} // lease id → wall time its job ran
	for _, j := range r.jobs {
		l := byRunner[j.RunnerName]
		if l == nil || j.StartedAt.IsZero() {
			continue
		}
		jobWall[l.ID] = j.CompletedAt.Sub(j.StartedAt)
		if l.JobID != j.ID {
			rep.OtherJobs++
		}
		// The winning host: the lease's reachable one.
		var win ttrHost
		for _, h := range byLease[l.ID] {
			if !h.Reachable.IsZero() {
				win = h
			}
		}
		first := win.Created
		for _, ol := range r.leases {
			if ol.JobID == j.ID || ol.ID == l.ID {
				for _, h := range byLease[ol.ID] {
					if first.IsZero() || h.Created.Before(first) {
						first = h.Created
					}
				}
			}
		}
		var sshSeen time.Time
		for _, ev := range r.events[l.ID] {
			if ev.To == provisioner.StateBootstrapping {
				sshSeen = ev.At
			}
		}
		online := r.online[j.RunnerName]
		t0 := j.CreatedAt
		t1 := latest(t0, first)
		t2r := latest(t1, win.Reachable)
		t2 := latest(t2r, sshSeen)
		t3 := latest(t2, online)
		t4 := latest(t3, j.StartedAt)
		// Before the winning host was created, the job waited on hosts
		// that failed: a wait bounded by boot_timeout (a timer) or a
		// fast failure, both converted as timers are.
		prev := time.Duration(0)
		if win.Created.After(t1) && win.Created.Before(t2r) {
			prev = p.timerReal(win.Created.Sub(t1))
		}
		provider := prev + time.Duration(float64(t2r.Sub(latest(t1, win.Created)))*S)
		createSSH := provider + t2.Sub(t2r)
		total := t1.Sub(t0) + createSSH + t3.Sub(t2) + t4.Sub(t3)
		// The runner's layer in the image lengthened the boot: in the
		// total, but ours, not the provider's (ttrParams.ImageRunner).
		if r.sc.Provider == "vast" {
			provider -= min(provider, p.imagePull())
		}
		rep.QueuedCreate = append(rep.QueuedCreate, t1.Sub(t0))
		rep.CreateSSH = append(rep.CreateSSH, createSSH)
		rep.SSHOnline = append(rep.SSHOnline, t3.Sub(t2))
		rep.OnlineAssigned = append(rep.OnlineAssigned, t4.Sub(t3))
		rep.Total = append(rep.Total, total)
		if !online.IsZero() && !online.After(j.CreatedAt) {
			rep.Ready = append(rep.Ready, total)
		}
		rep.Provider = append(rep.Provider, provider)
		rep.Overhead = append(rep.Overhead, total-provider)
	}
	// Money: a host's billed time in real terms is S × its scaled part
	// (create → reachable, or create → destroy if it never booted), plus
	// the rest as measured, in which its job's run is scaled back up.
	for _, h := range r.hosts {
		rep.Hosts++
		end := h.Destroyed
		if end.IsZero() {
			end = r.ended
		}
		var existed, running time.Duration
		if h.Reachable.IsZero() {
			// Held until its boot timeout, or destroyed before it booted (failed
			// fast, or lost a hedge race while booting): a timer's wait.
			existed = p.timerReal(end.Sub(h.Created))
			if end.Sub(h.Created) >= r.bootTimeoutWall/2 {
				rep.NeverBooted++
				rep.LongestNeverBootWait = max(rep.LongestNeverBootWait, p.timerReal(end.Sub(h.Created)))
			} else {
				rep.FailedFast++
			}
		} else {
			jw := jobWall[h.LeaseID]
			running = end.Sub(h.Reachable) - jw + time.Duration(float64(jw)*S)
			existed = time.Duration(float64(h.Reachable.Sub(h.Created))*S) + running
		}
		c := h.cost(existed, running)
		rep.MoneyTotal += c
		if _, ran := jobWall[h.LeaseID]; !ran {
			rep.MoneyUnused += c
		}
	}
	return rep
}

func latest(a, b time.Time) time.Time {
	if b.After(a) {
		return b
	}
	return a
}

// pct is the p'th percentile (nearest rank) of ds.
func pct(ds []time.Duration, p float64) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	i := int(float64(len(s))*p/100+0.999999) - 1
	return s[min(max(i, 0), len(s)-1)]
}

func fmtDur(d time.Duration) string {
	if d >= 100*time.Second {
		return fmt.Sprintf("%dm%02ds", int(d.Minutes()), int(d.Seconds())%60)
	}
	return fmt.Sprintf("%.1fs", d.Seconds())
}

// markdownReport is the benchmark's report: one table of phases per
// scenario and one summary row each.
func markdownReport(reps []*ttrReport) string {
	var b strings.Builder
	for _, r := range reps {
		p := r.p
		deps := p.DepsTime.String()
		if p.ImageDeps && strings.HasPrefix(r.Scenario, "vast") {
			deps = "in the image"
		}
		if p.ImageRunner && strings.HasPrefix(r.Scenario, "vast") {
			deps = fmt.Sprintf("in the image with the runner, its %s pull added to each boot and counted as overhead", fmtDur(p.imagePull()))
		}
		fmt.Fprintf(&b, "### %s: %d jobs, scale %g, seed %d (tarball %d MB at %.0f MB/s, deps %s; wall %v)\n\n",
			r.Scenario, r.Jobs, p.Scale, p.Seed, p.TarballBytes>>20, float64(p.Bandwidth)/(1<<20), deps, r.Wall.Round(time.Second))
		b.WriteString("| phase (real terms) | p50 | p95 | max |\n|---|---:|---:|---:|\n")
		for _, row := range []struct {
			name string
			ds   []time.Duration
		}{
			{"queued → create", r.QueuedCreate}, {"create → SSH", r.CreateSSH}, {"SSH → runner online", r.SSHOnline},
			{"online → job assigned", r.OnlineAssigned}, {"**total (time to runner)**", r.Total},
			{"provider boot (S × create → reachable)", r.Provider}, {"our overhead (total − provider)", r.Overhead},
		} {
			fmt.Fprintf(&b, "| %s | %s | %s | %s |\n", row.name, fmtDur(pct(row.ds, 50)), fmtDur(pct(row.ds, 95)), fmtDur(pct(row.ds, 100)))
		}
		fmt.Fprintf(&b, "\nHosts %d (never booted %d, destroyed before they booted (failed fast or lost a hedge race) %d); host money $%.2f, of which on hosts that never ran a job $%.2f; "+
			"most hosts per lease %d; longest wait behind a never-booting host %s.\n\n",
			r.Hosts, r.NeverBooted, r.FailedFast, r.MoneyTotal, r.MoneyUnused, r.MaxHostsPerLease, fmtDur(r.LongestNeverBootWait))
		fmt.Fprintf(&b, "%d of %d jobs ran on a lease made for another job.\n\n", r.OtherJobs, r.Jobs)
		b.WriteString(fetchLine(r.Fetches))
		if np, ng := sumCounts(r.Requests.Provider), sumCounts(r.Requests.GitHub); np+ng > 0 && r.Jobs > 0 {
			fmt.Fprintf(&b, "Requests: provider %d (%.1f a job: %s); GitHub %d against the rate limit (%.1f a job: %s), %d more answered 304 (free).\n\n",
				np, float64(np)/float64(r.Jobs), fmtCounts(r.Requests.Provider), ng, float64(ng)/float64(r.Jobs), fmtCounts(r.Requests.GitHub), r.Requests.GitHubFree)
		}
		if r.Hedges > 0 || len(r.HedgeSkips) > 0 {
			fmt.Fprintf(&b, "Hedges started %d; leases due a hedge that got none, by reason (counted once per lease and reason): %v.\n\n", r.Hedges, r.HedgeSkips)
		}
		if len(r.Ready) > 0 {
			fmt.Fprintf(&b, "%d jobs found a runner already online when queued: queued → job assigned p50 %s, p95 %s, max %s.\n\n",
				len(r.Ready), fmtDur(pct(r.Ready, 50)), fmtDur(pct(r.Ready, 95)), fmtDur(pct(r.Ready, 100)))
		}
	}
	if len(reps) > 1 {
		b.WriteString("| scenario | jobs | p50 total | p95 total | max total | overhead p50 | overhead p95 | host money | on hosts that never ran a job | hosts/lease max | longest wait behind a never-booting host |\n")
		b.WriteString("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n")
		for _, r := range reps {
			fmt.Fprintf(&b, "| %s | %d | %s | %s | %s | %s | %s | $%.2f | $%.2f | %d | %s |\n", r.Scenario, r.Jobs,
				fmtDur(pct(r.Total, 50)), fmtDur(pct(r.Total, 95)), fmtDur(pct(r.Total, 100)),
				fmtDur(pct(r.Overhead, 50)), fmtDur(pct(r.Overhead, 95)), r.MoneyTotal, r.MoneyUnused, r.MaxHostsPerLease,
				fmtDur(r.LongestNeverBootWait))
		}
		b.WriteString(sideBySide(reps))
	}
	return b.String()
}

// sideBySide compares each scenario with the run of its provider's plain
// scenario ("vast", "lambda") in the same report, same seed: #18's hedging
// goal is a p95 ratio and a money ratio, both measured side by side.
func sideBySide(reps []*ttrReport) string {
	base := map[string]*ttrReport{}
	for _, r := range reps {
		if r.Scenario == "vast" || r.Scenario == "lambda" {
			base[r.Scenario] = r
		}
	}
	var b strings.Builder
	for _, r := range reps {
		prov, _, _ := strings.Cut(r.Scenario, "-")
		bs := base[prov]
		if bs == nil || bs == r || pct(bs.Total, 95) == 0 || bs.MoneyTotal == 0 {
			continue
		}
		if b.Len() == 0 {
			b.WriteString("\n| scenario vs its provider's plain run | p50 ratio | p95 ratio | max ratio | money ratio | hosts |\n|---|---:|---:|---:|---:|---:|\n")
		}
		ratio := func(q float64) float64 { return float64(pct(r.Total, q)) / float64(pct(bs.Total, q)) }
		fmt.Fprintf(&b, "| %s vs %s | %.2f | %.2f | %.2f | %.3f | %d vs %d |\n", r.Scenario, bs.Scenario,
			ratio(50), ratio(95), ratio(100), r.MoneyTotal/bs.MoneyTotal, r.Hosts, bs.Hosts)
	}
	return b.String()
}

// ttrJSON is one scenario's raw figures (CRABBOX_TTR_OUT + ".json"), for
// pooling the jobs of several seeds.
type ttrJSON struct {
	Scenario   string         `json:"scenario"`
	Seed       uint64         `json:"seed"`
	Scale      float64        `json:"scale"`
	TotalSecs  []float64      `json:"total_seconds"`
	Money      float64        `json:"money"`
	Hosts      int            `json:"hosts"`
	OtherJobs  int            `json:"other_jobs"`
	Hedges     int            `json:"hedges"`
	HedgeSkips map[string]int `json:"hedge_skips"`
	// ProviderRequests and GitHubRequests (those counted against the rate
	// limit), by endpoint.
	ProviderRequests map[string]int `json:"provider_requests,omitempty"`
	GitHubRequests   map[string]int `json:"github_requests,omitempty"`
	// Setting is what else the run assumed (IMAGE_RUNNER, the tarball,
	// the bandwidth, the dependencies): runs are pooled only with runs of
	// the same setting (ttrbench_pool_test.go).
	Setting string `json:"setting"`
}

func (r *ttrReport) json() ttrJSON {
	p := r.p
	out := ttrJSON{Scenario: r.Scenario, Seed: p.Seed, Scale: p.Scale, Money: r.MoneyTotal, Hosts: r.Hosts, OtherJobs: r.OtherJobs,
		Hedges: r.Hedges, HedgeSkips: r.HedgeSkips, ProviderRequests: r.Requests.Provider, GitHubRequests: r.Requests.GitHub,
		Setting: fmt.Sprintf("tarball %d MB at %.0f MB/s, deps %s, image deps %t, image runner %t, lambda init lead %s",
			p.TarballBytes>>20, float64(p.Bandwidth)/(1<<20), p.DepsTime, p.ImageDeps, p.ImageRunner, p.LambdaInitLead)}
	for _, d := range r.Total {
		out.TotalSecs = append(out.TotalSecs, d.Seconds())
	}
	return out
}
