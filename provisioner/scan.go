package provisioner

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"
)

// The cheap reconcile (issue 13). GitHub gives an App installation or a
// token 5,000 requests an hour; a pass that lists every repository's runs
// every minute spends that many for an org of 40 repositories. So the scan
// is narrowed to what can have changed: the repositories where jobs of ours
// were seen lately, where jobs are still queued or leases hold runners, and
// the configured repository scopes ("hot" repositories). Where nothing else
// finds what webhooks missed (poll mode; a token, which has no delivery
// log), the source also walks every repository, spread over passes within
// its request budget. Background calls refused for budget come back as
// ErrDeferred: the pass stops that work, and a later pass does it.

// JobScanner is what a JobSource may offer for a reconcile that costs
// nearly nothing; without it the reconcile calls QueuedJobs for each scope.
type JobScanner interface {
	// ScanJobs reports, as job events, what it finds in the scope: jobs
	// queued, started (in_progress, with the runner's name) or completed,
	// each at least once after it changed (repeats are harmless:
	// HandleJobEvent deduplicates them). It looks at the repositories in
	// hot first; with walk set it goes on through every repository of the
	// scope, resuming where the previous scan stopped, as far as its
	// request budget allows.
	ScanJobs(ctx context.Context, scope Scope, hot []string, walk bool) ([]JobEvent, error)
}

// hotWindow is how long a repository stays hot after a job event of ours:
// GitHub cancels a job that stayed queued for 24 hours.
const hotWindow = 24 * time.Hour

// recentRepos remembers where job events of ours were seen. It lives in
// memory only: after a restart the queued jobs and live leases in the
// store name the repositories that matter, and in App mode the delivery
// log covers the rest.
type recentRepos struct {
	mu sync.Mutex
	m  map[string]recentRepo // scope key + "\x00" + lower-cased repo
}

type recentRepo struct {
	scopeKey, repo string
	at             time.Time
}

func (r *recentRepos) note(s Scope, repo string, at time.Time) {
	if repo == "" {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.m == nil {
		r.m = map[string]recentRepo{}
	}
	r.m[s.Key()+"\x00"+strings.ToLower(repo)] = recentRepo{scopeKey: s.Key(), repo: repo, at: at}
}

// since returns the repositories seen after t by scope key, and forgets
// the older ones.
func (r *recentRepos) since(t time.Time) map[string][]string {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := map[string][]string{}
	for k, e := range r.m {
		if e.at.Before(t) {
			delete(r.m, k)
			continue
		}
		out[e.scopeKey] = append(out[e.scopeKey], e.repo)
	}
	return out
}

// hotRepos lists, by scope key, the repositories that can have changed:
// recent job events, jobs still queued, the jobs of live leases, and
// repository scopes themselves.
func (p *Provisioner) hotRepos(ctx context.Context, live []*Lease, scopes map[string]Scope) (map[string][]string, error) {
	hot := p.recent.since(p.now().Add(-hotWindow))
	add := func(key, repo string) {
		if repo != "" {
			hot[key] = append(hot[key], repo)
		}
	}
	for key, s := range scopes {
		add(key, s.Repo)
	}
	// Every job still queued, whatever its age: its lease is yet to come.
	queued, err := p.cfg.Store.QueuedJobs(ctx, p.now().Add(time.Minute))
	if err != nil {
		return nil, err
	}
	for _, j := range queued {
		add(j.Scope.Key(), j.Repo)
	}
	for _, l := range live {
		id := cmp.Or(l.BoundJobID, l.JobID)
		if id == 0 {
			continue
		}
		j, err := p.cfg.Store.LatestJob(ctx, id)
		if errors.Is(err, ErrNotFound) {
			continue
		}
		if err != nil {
			return nil, err
		}
		add(l.Scope.Key(), j.Repo)
	}
	for key, repos := range hot {
		slices.SortFunc(repos, func(a, b string) int { return strings.Compare(strings.ToLower(a), strings.ToLower(b)) })
		hot[key] = slices.CompactFunc(repos, strings.EqualFold)
	}
	return hot, nil
}

// scanScope hands what a JobScanner found in a scope to HandleJobEvent,
// as the webhooks would have. It returns how many events were news.
func (p *Provisioner) scanScope(ctx context.Context, sc JobScanner, s Scope, hot []string) (int, error) {
	evs, err := sc.ScanJobs(ctx, s, hot, p.cfg.Reconcile.Walk)
	// What was found before a deferral still counts.
	n := 0
	for _, ev := range evs {
		out, herr := p.HandleJobEvent(ctx, ev)
		if herr != nil {
			return n, herr
		}
		if out == Accepted {
			n++
			p.log.Info("job event found by the reconcile scan", "job_id", ev.JobID, "repo", ev.Repo,
				"action", ev.Action, "runner_name", ev.RunnerName)
		}
	}
	if err != nil {
		return n, fmt.Errorf("scan %s: %w", s.Key(), err)
	}
	return n, nil
}

// deferredLog says once per run of deferrals that background work waits
// for the budget, not on every pass.
type deferredLog struct {
	mu      sync.Mutex
	since   time.Time
	skipped int
}

// note records a pass whose work was deferred; it returns true the first
// time in a row, when a line should be logged.
func (d *deferredLog) note(now time.Time) bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.skipped++
	if d.since.IsZero() {
		d.since = now
		return true
	}
	return false
}

// clear ends a run of deferrals; it returns how many passes it held and
// since when, or 0.
func (d *deferredLog) clear() (int, time.Time) {
	d.mu.Lock()
	defer d.mu.Unlock()
	n, t := d.skipped, d.since
	d.skipped, d.since = 0, time.Time{}
	return n, t
}
