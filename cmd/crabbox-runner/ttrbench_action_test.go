package main

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/crabbox/crabbox-runner/github/githubtest"
	"github.com/crabbox/crabbox-runner/providers/vast/vasttest"
	"github.com/crabbox/crabbox-runner/provisioner"
)

// TestTTRActionBench is the time-to-runner benchmark for the Action mode
// (docs/benchmarks.md "Hedging in the Action (#18)"): each job is a
// workflow's start step, its GPU job and its stop step, one lease per job,
// against the fake Vast with the Vast-like draws of ttrbench_model_test.go
// and the runner in the image (IMAGE_RUNNER's model: its layer's pull added
// to each boot). The same jobs run once per hedge-after setting, with the
// same seed: each job's first host has the same draw in every run.
//
//	CRABBOX_TTR_ACTION_BENCH=1 CRABBOX_TTR_ACTION_HEDGES=0,90s,30s \
//	  go test -count=1 -timeout 2h -run '^TestTTRActionBench$' ./cmd/crabbox-runner/
//
// JOBS, SCALE and SEED are the ttrbench settings (CRABBOX_TTR_*);
// CRABBOX_TTR_ACTION_CONCURRENCY (default 5) is how many workflows run at
// once; CRABBOX_TTR_OUT names the markdown report.
func TestTTRActionBench(t *testing.T) {
	if os.Getenv("CRABBOX_TTR_ACTION_BENCH") == "" {
		t.Skip("set CRABBOX_TTR_ACTION_BENCH=1 (minutes of wall time)")
	}
	p, err := ttrParamsFromEnv()
	if err != nil {
		t.Fatal(err)
	}
	p.ImageRunner, p.ImageDeps = true, true
	var hedges []time.Duration
	for _, s := range strings.Split(cmp.Or(os.Getenv("CRABBOX_TTR_ACTION_HEDGES"), "0,90s"), ",") {
		d, err := time.ParseDuration(strings.TrimSpace(s))
		if err != nil {
			t.Fatalf("CRABBOX_TTR_ACTION_HEDGES: %v", err)
		}
		hedges = append(hedges, d)
	}
	conc, _ := strconv.Atoi(cmp.Or(os.Getenv("CRABBOX_TTR_ACTION_CONCURRENCY"), "5"))
	// The image's padded release is built once, here: built by the first
	// create, it held the fake's create handler for seconds.
	if _, _, err := githubtest.RunnerTarballShared("2.330.0", "x64", githubtest.TarballOptions{Size: p.TarballBytes, InstallDepsTime: p.DepsTime}); err != nil {
		t.Fatal(err)
	}
	var reps []*actionTTRReport
	slack := ttrHedgeSlack
	for _, h := range hedges {
		rep := runActionTTR(t, p, h, slack, max(conc, 1))
		if h == 0 && len(rep.ours) > 0 {
			// The hedge timer's unscaled part is what the bootstrap took
			// in this run without hedging (its median).
			slack = (pct(rep.ours, 50) - p.imagePull()).Round(100 * time.Millisecond)
		}
		t.Log("\n" + rep.markdown())
		reps = append(reps, rep)
	}
	out := actionTTRMarkdown(reps)
	t.Log("\n" + out)
	if path := os.Getenv("CRABBOX_TTR_OUT"); path != "" {
		if err := os.WriteFile(path, []byte(out), 0o644); err != nil {
			t.Fatal(err)
		}
		// Per-job totals (seconds, real terms) and money per run, for
		// pooling seeds.
		var runs []map[string]any
		for _, r := range reps {
			secs := make([]float64, len(r.total))
			for i, d := range r.total {
				secs[i] = d.Seconds()
			}
			runs = append(runs, map[string]any{"hedge_after_s": r.hedgeAfter.Seconds(), "seed": r.p.Seed, "total_s": secs,
				"failed": r.failed, "money": r.money, "money_unused": r.moneyUnused, "hosts": r.hosts, "hedges": r.hedges, "hedge_wins": r.hedgeWins,
				"boot_timeout_s": r.bootTimeout.Seconds(), "longest_unreached_s": r.longestUnreached.Seconds()})
		}
		data, err := json.MarshalIndent(runs, "", " ")
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path+".json", data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// actionTTRJob is one workflow of the run.
type actionTTRJob struct {
	started    time.Time // the start step began
	code       int       // the start step's exit code
	instanceID string    // the winner's, from the step's outputs
	runnerName string
	hedged     bool // a second host was started
	hedgeWon   bool
	// lanes are the instances each lane created, in order (the step's
	// "instance … created" and "hedge: instance … created" lines).
	lanes [2][]string
}

var actionCreatedRE = regexp.MustCompile(`(hedge: )?instance (\d+) created`)

type actionTTRReport struct {
	p          ttrParams
	hedgeAfter time.Duration // real terms; 0: off
	hedgeWall  time.Duration // as the harness set it
	// bootTimeout is each host's boot-timeout, real terms; bootWall as
	// the harness set it.
	bootTimeout, bootWall time.Duration
	conc                  int
	wall                  time.Duration
	// Per job that got a runner, real terms: start → runner online, and
	// its part after the winning host was reachable (ours).
	total, ours              []time.Duration
	failed                   int // start steps that failed, and late ones
	late                     int // of failed: runner online after timeout, real terms
	hosts, hedges, hedgeWins int
	maxHostsPerLease         int
	money, moneyUnused       float64
	// longestUnreached is the longest a host that never became reachable
	// was held, real terms: a never-booting host's cost in waiting.
	longestUnreached time.Duration
}

func runActionTTR(t *testing.T, p ttrParams, hedgeAfter, slack time.Duration, conc int) *actionTTRReport {
	t.Helper()
	S := p.Scale
	online := map[string]time.Time{}
	var mu sync.Mutex
	actionGitHubTune = func(o *githubtest.Options) {
		o.OnEvent = func(ev githubtest.Event) {
			if ev.Kind == githubtest.EventRunnerOnline {
				mu.Lock()
				if _, seen := online[ev.RunnerName]; !seen {
					online[ev.RunnerName] = ev.At
				}
				mu.Unlock()
			}
		}
		o.OnlineTimeout = time.Minute
	}
	t.Cleanup(func() { actionGitHubTune = nil })
	w := newActionWorld(t, false, nil, nil)
	// Each workflow has a deployment of its own, so a host's marker names
	// its job: the pairing key is the job and the host's rank for it.
	rank := map[string]int{}
	behave := func(seq int, _ vasttest.Offer, label string) vasttest.Behavior {
		m, _ := provisioner.ParseMarker(label)
		mu.Lock()
		rank[m.Deployment]++
		key := fmt.Sprintf("action/%s/%d", m.Deployment, rank[m.Deployment])
		mu.Unlock()
		if os.Getenv("CRABBOX_TTR_ACTION_DEBUG") != "" {
			b := p.vastBehavior(seq, key)
			t.Logf("instance seq %d label %q key %s boot %s", seq, label, key, b.BootAfter)
		}
		return p.vastBehavior(seq, key)
	}
	fake := vasttest.New(vasttest.Options{APIKey: actionVastKey, Dir: filepath.Join(w.dir, "vast"), Offers: ttrMarket(),
		Behavior: behave, RelistAfter: p.wall(time.Minute)})
	t.Cleanup(fake.Close)
	w.onVast(fake)

	// boot-timeout (the Action's default, half of timeout) runs from a
	// host's creation over its boot (scaled) and its bootstrap (not): it is
	// set with hedgeTimer's close conversion, its unscaled part what a
	// bootstrap takes (ttrHedgeSlack, the same in every run so the runs
	// stay paired). With timer's generous allowance (68 s unscaled) a host
	// booting in 8 minutes, real terms, would be kept past its 5.
	bootTimeout := p.BootTimeout / 2
	bootWall := p.wall(bootTimeout-ttrHedgeSlack) + ttrHedgeSlack
	// timeout also spans API calls, which run in real time (Vast's create
	// pace among five workflows: up to tens of seconds), so no setting of
	// it is exact: it is set generously (timer) and a start whose runner
	// came online more than timeout after it began, in real terms, is
	// counted as failed below.
	timeout := p.timer(p.BootTimeout)
	with := map[string]string{"mode": "start", "gpu": "A100", "max-price": "2", "timeout": timeout.String(),
		"boot-timeout": bootWall.Round(time.Millisecond).String(), "max-lifetime": "2h"}
	hedgeWall := time.Duration(0)
	if hedgeAfter > 0 {
		// Its provider part scaled, the bootstrap's not (hedgeTimer): a
		// timer scaled whole would fire while a first host that is on
		// time in real terms still bootstraps.
		hedgeWall = p.wall(hedgeAfter-slack) + slack
		with["hedge-after"] = hedgeWall.Round(time.Millisecond).String()
	}

	// The most hosts a lease (a deployment here) had at once.
	rep := &actionTTRReport{p: p, hedgeAfter: hedgeAfter, conc: conc, hedgeWall: hedgeWall, bootTimeout: bootTimeout, bootWall: bootWall}
	stop, sampled := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(sampled)
		for {
			select {
			case <-stop:
				return
			case <-time.After(50 * time.Millisecond):
			}
			live := map[string]int{}
			for _, in := range fake.Live() {
				m, _ := provisioner.ParseMarker(in.Label)
				live[m.Deployment]++
			}
			for _, n := range live {
				rep.maxHostsPerLease = max(rep.maxHostsPerLease, n)
			}
		}
	}()

	began := time.Now()
	jobs := make([]actionTTRJob, p.Jobs)
	sem := make(chan struct{}, conc)
	var wg sync.WaitGroup
	for i := range jobs {
		sem <- struct{}{}
		wg.Add(1)
		go func(i int) {
			defer func() { <-sem; wg.Done() }()
			dep := fmt.Sprintf("ttr-%d", i)
			in := map[string]string{"deployment": dep}
			for k, v := range with {
				in[k] = v
			}
			j := &jobs[i]
			j.started = time.Now()
			out, code, stdout := w.quietStep(in, timeout+time.Minute)
			j.code, j.instanceID = code, out["instance-id"]
			j.hedged = strings.Contains(stdout, "starting a second host")
			j.hedgeWon = strings.Contains(stdout, "the hedge won")
			for _, m := range actionCreatedRE.FindAllStringSubmatch(stdout, -1) {
				lane := 0
				if m[1] != "" {
					lane = 1
				}
				j.lanes[lane] = append(j.lanes[lane], m[2])
			}
			if os.Getenv("CRABBOX_TTR_ACTION_DEBUG") != "" {
				t.Logf("job %d start:\n%s", i, stdout)
			}
			if code == 0 {
				j.runnerName = out["runner-name"]
				id := w.gh.QueueJob(githubtest.JobSpec{Repo: actionRepo, Labels: []string{out["label"]}, Script: "echo trained"})
				ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
				if _, err := w.gh.WaitJob(ctx, id, githubtest.StatusCompleted); err != nil {
					t.Errorf("job %d: %v", i, err)
				}
				cancel()
			}
			if _, code, stdout := w.quietStep(map[string]string{"mode": "stop", "deployment": dep, "lease-id": out["lease-id"]}, 5*time.Minute); code != 0 {
				t.Errorf("job %d: stop exit %d:\n%s", i, code, stdout)
			}
		}(i)
	}
	wg.Wait()
	close(stop)
	<-sampled
	rep.wall = time.Since(began)

	records := map[string]vasttest.Record{}
	for _, r := range fake.Records() {
		records[strconv.FormatInt(r.ID, 10)] = r
		if r.Destroyed.IsZero() {
			t.Errorf("instance %d (%s) not destroyed", r.ID, r.Label)
		}
	}
	byDeployment := map[string][]vasttest.Record{}
	for _, r := range records {
		m, _ := provisioner.ParseMarker(r.Label)
		byDeployment[m.Deployment] = append(byDeployment[m.Deployment], r)
	}
	tl := actionTimeline{S: S, hedgeAfter: hedgeAfter, hedgeWall: hedgeWall, bootTimeout: bootTimeout, bootWall: bootWall}
	served := map[string]bool{}
	for i, j := range jobs {
		if j.hedged {
			rep.hedges++
		}
		if j.hedgeWon {
			rep.hedgeWins++
		}
		if j.code != 0 {
			// The workflow waited the whole timeout and got no runner:
			// counted at the timeout, in real terms, a lower bound.
			rep.failed++
			rep.total = append(rep.total, p.BootTimeout)
			continue
		}
		win, ok := records[j.instanceID]
		on := online[j.runnerName]
		if !ok || win.Reachable.IsZero() || on.IsZero() {
			t.Errorf("job %d: winner %q %+v online %v", i, j.instanceID, win, on)
			continue
		}
		served[j.instanceID] = true
		// Before the winner was reachable: the offers and the first create
		// call (real time: the API's pace), then the winner's lane up to
		// its create (actionTimeline.created), then its boot (× S).
		first := win.Created
		for _, r := range byDeployment[fmt.Sprintf("ttr-%d", i)] {
			if r.Created.Before(first) {
				first = r.Created
			}
		}
		upTo, err := tl.created(records, j.lanes, first, j.instanceID)
		if err != nil {
			t.Errorf("job %d: %v", i, err)
			continue
		}
		total := first.Sub(j.started) + upTo +
			time.Duration(float64(win.Reachable.Sub(win.Created))*S) + on.Sub(win.Reachable)
		if total > p.BootTimeout {
			// Past start's timeout in real terms: the product would have
			// given up; its host's money still counts.
			rep.failed++
			rep.late++
			rep.total = append(rep.total, p.BootTimeout)
			continue
		}
		rep.total = append(rep.total, total)
		if os.Getenv("CRABBOX_TTR_ACTION_DEBUG") != "" {
			t.Logf("job %d: winner %s (first created %s after start, lanes %v, its create %s, boot %s, bootstrap %s) total %s hedged %v won %v",
				i, j.instanceID, first.Sub(j.started), j.lanes, upTo, win.Reachable.Sub(win.Created), on.Sub(win.Reachable), total, j.hedged, j.hedgeWon)
		}
		rep.ours = append(rep.ours, on.Sub(win.Reachable)+p.imagePull())
	}
	// Money, real terms: a host's life (actionTimeline.life), plus the
	// job's run (JobRun) on a host that served one.
	for id, r := range records {
		rep.hosts++
		existed := tl.life(r)
		if r.Reachable.IsZero() {
			rep.longestUnreached = max(rep.longestUnreached, existed)
		}
		var running time.Duration
		if !r.Reachable.IsZero() {
			running = r.Destroyed.Sub(r.Reachable)
			if served[id] {
				running += p.JobRun
				existed += p.JobRun
			}
		}
		c := r.Cost(existed, running)
		rep.money += c
		if !served[id] {
			rep.moneyUnused += c
		}
	}
	return rep
}

// actionTimeline converts a workflow's wall-clock times back to real terms.
// The harness scales provider waits (boots) by 1/S and runs API calls and
// bootstraps in real time; the product's timers are set to match
// (boot-timeout and hedge-after with hedgeTimer's conversion, timeout with
// timer's), so each wait converts by what ended it.
type actionTimeline struct {
	S                     float64
	hedgeAfter, hedgeWall time.Duration
	bootTimeout, bootWall time.Duration
}

func (tl actionTimeline) scale(w time.Duration) time.Duration {
	return time.Duration(float64(w) * tl.S)
}

// life is how long a host existed, real terms: its boot × S and, once
// reachable, the rest as it ran; a host never reachable was destroyed by
// its boot-timeout (the timer in real terms, plus the destroy's lag), or
// earlier (failed fast, lost a race, start's timeout: × S).
func (tl actionTimeline) life(r vasttest.Record) time.Duration {
	w := r.Destroyed.Sub(r.Created)
	switch {
	case !r.Reachable.IsZero():
		return tl.scale(r.Reachable.Sub(r.Created)) + r.Destroyed.Sub(r.Reachable)
	case tl.bootWall > 0 && w >= tl.bootWall-100*time.Millisecond && w < tl.bootWall+30*time.Second:
		return tl.bootTimeout + max(w-tl.bootWall, 0)
	}
	return tl.scale(w)
}

// created is when instance id was created, real terms, after the
// workflow's first create: its lane's start (0 for the first lane; the
// hedge's due time, hedge-after, for the second, and the API calls after
// it as they ran) plus, for each earlier host of the lane, its life and
// the calls between its destroy and the next create, as they ran.
func (tl actionTimeline) created(records map[string]vasttest.Record, lanes [2][]string, first time.Time, id string) (time.Duration, error) {
	for lane, ids := range lanes {
		at := time.Duration(0)
		for k, hid := range ids {
			r, ok := records[hid]
			if !ok {
				return 0, fmt.Errorf("instance %s of lane %d not recorded", hid, lane)
			}
			switch {
			case k == 0 && lane == 1:
				at = tl.hedgeAfter + max(r.Created.Sub(first)-tl.hedgeWall, 0)
			case k > 0:
				prev := records[ids[k-1]]
				at += tl.life(prev) + max(r.Created.Sub(prev.Destroyed), 0)
			}
			if hid == id {
				return at, nil
			}
		}
	}
	return 0, fmt.Errorf("instance %s is in neither lane %v", id, lanes)
}

// quietStep runs one Action step like actionWorld.step, without its
// logging and checks (the benchmark runs many at once).
func (w *actionWorld) quietStep(with map[string]string, timeout time.Duration) (map[string]string, int, string) {
	env, re, err := w.stepEnv(with)
	if err != nil {
		return nil, -1, err.Error()
	}
	var stdout, stderr bytes.Buffer
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	code := run(ctx, []string{"action"}, &stdout, &stderr, func(k string) string { return env[k] })
	out, _ := re.Outputs()
	return out, code, stdout.String() + stderr.String()
}

func (r *actionTTRReport) name() string {
	if r.hedgeAfter == 0 {
		return "no hedge"
	}
	return "hedge-after " + r.hedgeAfter.String()
}

func (r *actionTTRReport) markdown() string {
	var b strings.Builder
	fmt.Fprintf(&b, "### Action, %s: %d workflows (%d at once), scale %g, seed %d, runner in the image (its %s pull added to each boot, counted as ours); wall %s",
		r.name(), r.p.Jobs, r.conc, r.p.Scale, r.p.Seed, fmtDur(r.p.imagePull()), r.wall.Round(time.Second))
	fmt.Fprintf(&b, "; boot-timeout %s (set to %s of wall time)", fmtDur(r.bootTimeout), r.bootWall.Round(time.Millisecond))
	if r.hedgeWall > 0 {
		fmt.Fprintf(&b, "; hedge-after set to %s of wall time", r.hedgeWall.Round(time.Millisecond))
	}
	b.WriteString("\n\n")
	b.WriteString("| real terms | p50 | p95 | max |\n|---|---:|---:|---:|\n")
	fmt.Fprintf(&b, "| start → runner online | %s | %s | %s |\n", fmtDur(pct(r.total, 50)), fmtDur(pct(r.total, 95)), fmtDur(slices.Max(append([]time.Duration{0}, r.total...))))
	fmt.Fprintf(&b, "| ours (winner reachable → online, + the pull) | %s | %s | %s |\n\n", fmtDur(pct(r.ours, 50)), fmtDur(pct(r.ours, 95)), fmtDur(slices.Max(append([]time.Duration{0}, r.ours...))))
	fmt.Fprintf(&b, "Start steps that failed (no runner within the timeout, real terms; counted at the timeout, %s, above): %d (of which %d got their runner after it, in real terms, and count as failed). Hosts %d; hedges started %d, won by the hedge %d; most hosts per lease %d. Host money $%.2f, of which on hosts that served no job $%.2f. Longest a host that never became reachable was held: %s.\n",
		fmtDur(r.p.BootTimeout), r.failed, r.late, r.hosts, r.hedges, r.hedgeWins, r.maxHostsPerLease, r.money, r.moneyUnused, fmtDur(r.longestUnreached))
	return b.String()
}

func actionTTRMarkdown(reps []*actionTTRReport) string {
	var b strings.Builder
	for _, r := range reps {
		b.WriteString(r.markdown() + "\n")
	}
	if len(reps) > 1 && reps[0].hedgeAfter == 0 {
		base := reps[0]
		b.WriteString("| run | p50 | p95 | max | failed starts | p95 vs no hedge | money vs no hedge | money per job served vs no hedge |\n|---|---:|---:|---:|---:|---:|---:|---:|\n")
		perJob := func(r *actionTTRReport) float64 { return r.money / float64(max(len(r.total)-r.failed, 1)) }
		for _, r := range reps {
			fmt.Fprintf(&b, "| %s | %s | %s | %s | %d | %.2f× | %.3f× | %.3f× |\n", r.name(), fmtDur(pct(r.total, 50)), fmtDur(pct(r.total, 95)),
				fmtDur(slices.Max(append([]time.Duration{0}, r.total...))), r.failed,
				float64(pct(r.total, 95))/float64(max(pct(base.total, 95), 1)), r.money/max(base.money, 1e-9), perJob(r)/max(perJob(base), 1e-9))
		}
	}
	return b.String()
}

// TestTTRActionPool pools the per-job totals of TestTTRActionBench runs
// (their OUT.json files, comma-separated in CRABBOX_TTR_ACTION_POOL) per
// hedge-after setting, over the seeds every setting ran, and compares each
// with the runs without hedging:
//
//	CRABBOX_TTR_ACTION_POOL=a.md.json,b.md.json go test -run '^TestTTRActionPool$' ./cmd/crabbox-runner/
func TestTTRActionPool(t *testing.T) {
	files := os.Getenv("CRABBOX_TTR_ACTION_POOL")
	if files == "" {
		t.Skip("set CRABBOX_TTR_ACTION_POOL to TestTTRActionBench OUT.json files")
	}
	type run struct {
		HedgeAfter  float64   `json:"hedge_after_s"`
		Seed        uint64    `json:"seed"`
		Total       []float64 `json:"total_s"`
		Failed      int       `json:"failed"`
		Money       float64   `json:"money"`
		MoneyUnused float64   `json:"money_unused"`
		Hosts       int       `json:"hosts"`
		Hedges      int       `json:"hedges"`
		HedgeWins   int       `json:"hedge_wins"`
		// Longest is the longest a never-reachable host was held (runs
		// before boot-timeout existed wrote none).
		Longest float64 `json:"longest_unreached_s"`
	}
	pooled := map[float64]*run{}
	seeds := map[float64][]uint64{}
	for _, f := range strings.Split(files, ",") {
		data, err := os.ReadFile(strings.TrimSpace(f))
		if err != nil {
			t.Fatal(err)
		}
		var runs []run
		if err := json.Unmarshal(data, &runs); err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		for _, r := range runs {
			p := pooled[r.HedgeAfter]
			if p == nil {
				p = &run{HedgeAfter: r.HedgeAfter}
				pooled[r.HedgeAfter] = p
			}
			p.Total = append(p.Total, r.Total...)
			p.Failed += r.Failed
			p.Money += r.Money
			p.MoneyUnused += r.MoneyUnused
			p.Hosts += r.Hosts
			p.Hedges += r.Hedges
			p.HedgeWins += r.HedgeWins
			p.Longest = max(p.Longest, r.Longest)
			seeds[r.HedgeAfter] = append(seeds[r.HedgeAfter], r.Seed)
		}
	}
	base := pooled[0]
	if base == nil {
		t.Fatal("no run without hedging to compare with")
	}
	var keys []float64
	for k := range pooled {
		if !slices.Equal(seeds[k], seeds[0]) {
			t.Fatalf("hedge-after %gs ran seeds %v, the runs without hedging %v: pool the same seeds", k, seeds[k], seeds[0])
		}
		keys = append(keys, k)
	}
	slices.Sort(keys)
	durs := func(secs []float64) []time.Duration {
		out := make([]time.Duration, len(secs))
		for i, s := range secs {
			out[i] = time.Duration(s * float64(time.Second))
		}
		return out
	}
	var b strings.Builder
	fmt.Fprintf(&b, "Pooled over seeds %v (%d workflows a setting):\n\n", seeds[0], len(base.Total))
	b.WriteString("| hedge-after | p50 | p95 | max | failed starts | hosts | hedges (won by the hedge) | host money | on hosts that served no job | longest held unreachable host | p95 vs no hedge | money vs no hedge | money per job served vs no hedge |\n|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n")
	p95 := func(r *run) time.Duration { return pct(durs(r.Total), 95) }
	// A failed start ran no job, so it paid for no job's run: money per
	// job served compares runs that served different numbers of jobs.
	perJob := func(r *run) float64 { return r.Money / float64(max(len(r.Total)-r.Failed, 1)) }
	// The workflows that got a runner: a failed start is counted at the
	// timeout, above every served one, so the Failed largest go.
	served := func(r *run) []time.Duration {
		d := durs(r.Total)
		slices.Sort(d)
		return d[:len(d)-r.Failed]
	}
	for _, k := range keys {
		r := pooled[k]
		name := "off"
		if k > 0 {
			name = (time.Duration(k) * time.Second).String()
		}
		fmt.Fprintf(&b, "| %s | %s | %s | %s | %d | %d | %d (%d) | $%.2f | $%.2f | %s | %.2f× | %.3f× | %.3f× |\n", name,
			fmtDur(pct(durs(r.Total), 50)), fmtDur(p95(r)), fmtDur(slices.Max(durs(r.Total))), r.Failed, r.Hosts, r.Hedges, r.HedgeWins,
			r.Money, r.MoneyUnused, fmtDur(time.Duration(r.Longest*float64(time.Second))), float64(p95(r))/float64(p95(base)), r.Money/base.Money, perJob(r)/perJob(base))
	}
	b.WriteString("\nThe workflows that got a runner only (the run without hedging lost its failed starts):\n\n")
	b.WriteString("| hedge-after | workflows | p50 | p90 | p95 | max | p95 vs no hedge |\n|---|---:|---:|---:|---:|---:|---:|\n")
	for _, k := range keys {
		r := pooled[k]
		name := "off"
		if k > 0 {
			name = (time.Duration(k) * time.Second).String()
		}
		d := served(r)
		fmt.Fprintf(&b, "| %s | %d | %s | %s | %s | %s | %.2f× |\n", name, len(d), fmtDur(pct(d, 50)), fmtDur(pct(d, 90)),
			fmtDur(pct(d, 95)), fmtDur(slices.Max(d)), float64(pct(d, 95))/float64(pct(served(base), 95)))
	}
	t.Log("\n" + b.String())
	if path := os.Getenv("CRABBOX_TTR_OUT"); path != "" {
		if err := os.WriteFile(path, []byte(b.String()), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}
