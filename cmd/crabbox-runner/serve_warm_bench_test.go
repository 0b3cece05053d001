package main

import (
	"os"
	"regexp"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/crabbox/crabbox-runner/provisioner"
)

// TestServeWarmBenchmark measures, through serve and the fake Vast, how
// long jobs that find a warm host wait from queued to assigned, and what
// min_idle 1 costs an hour while no job comes. It takes minutes, so it runs
// only with CRABBOX_WARM_BENCH=1 (CRABBOX_WARM_BENCH_JOBS, default 20, and
// CRABBOX_WARM_BENCH_IDLE, default 2m, size it); the figures go to
// docs/benchmarks.md. It asserts invariants only, never a duration.
func TestServeWarmBenchmark(t *testing.T) {
	if os.Getenv("CRABBOX_WARM_BENCH") != "1" {
		t.Skip("set CRABBOX_WARM_BENCH=1 to run the warm hosts benchmark")
	}
	jobs := 20
	if n, err := strconv.Atoi(os.Getenv("CRABBOX_WARM_BENCH_JOBS")); err == nil && n > 0 {
		jobs = n
	}
	idleFor := 2 * time.Minute
	if d, err := time.ParseDuration(os.Getenv("CRABBOX_WARM_BENCH_IDLE")); err == nil && d > 0 {
		idleFor = d
	}
	const idleTimeout = 20 * time.Second
	asg := watchAssignments(t)
	e := startServeVastOpts(t, vastE2EOptions{bootTimeout: "60s", allowPrivate: true, relistAfter: 200 * time.Millisecond,
		market: warmMarket(200), classes: warmClass(idleTimeout.String()), extraConfig: "reconcile: {interval: 5s}\n"})

	first := e.queue("first")
	e.waitJob(first)
	var waits []time.Duration
	for i := range jobs {
		var warm *provisioner.Lease
		e.waitFor("a warm host ready", 120*time.Second, func() bool {
			warm = idleLease(e.leases())
			return warm != nil && warm.Warm
		})
		queued := time.Now()
		id := e.queue("job-" + strconv.Itoa(i))
		j := e.waitJob(id)
		at, to := asg.get(id)
		if j.Conclusion != "success" || at.IsZero() {
			t.Fatalf("job %d: %+v", id, j)
		}
		if to != warm.RunnerName {
			// The warm host expired between the look and the job: that job
			// did not find a warm host; it is not counted.
			t.Logf("job %d ran on %s, not the warm runner %s: not counted", id, to, warm.RunnerName)
			continue
		}
		waits = append(waits, at.Sub(queued))
	}
	slices.Sort(waits)
	pct := func(p float64) time.Duration { return waits[min(len(waits)-1, int(p*float64(len(waits))))] }
	if len(waits) == 0 {
		t.Fatal("no job found a warm host")
	}
	t.Logf("warm jobs: %d of %d; queued → assigned p50 %s p95 %s max %s", len(waits), jobs,
		pct(0.50).Round(time.Millisecond), pct(0.95).Round(time.Millisecond), waits[len(waits)-1].Round(time.Millisecond))

	// No job for idleFor: warm hosts expire and are replaced; the idle
	// cost metric grows by what they cost.
	costRe := regexp.MustCompile(`crabbox_warm_idle_cost_dollars_total\{class="a100"\} ([0-9.e+-]+)`)
	expRe := regexp.MustCompile(`crabbox_warm_expired_total\{class="a100"\} ([0-9]+)`)
	read := func(re *regexp.Regexp) float64 {
		m := re.FindStringSubmatch(e.get("/metrics"))
		if m == nil {
			return 0
		}
		v, _ := strconv.ParseFloat(m[1], 64)
		return v
	}
	c0, x0, t0 := read(costRe), read(expRe), time.Now()
	time.Sleep(idleFor)
	c1, x1, t1 := read(costRe), read(expRe), time.Now()
	price := 0.0
	for _, l := range e.leases() {
		if l.Warm && l.PricePerHour > 0 {
			price = l.PricePerHour
		}
	}
	hours := t1.Sub(t0).Hours()
	t.Logf("idle window %s: warm hosts expired %v, idle cost $%.5f = $%.3f/h (host price $%.6f/h, idle_timeout %s)",
		t1.Sub(t0).Round(time.Second), x1-x0, c1-c0, (c1-c0)/hours, price, idleTimeout)
	// The metric grows by a whole host at each expiry, so a window's rate
	// depends on where the expiries fall. The warm hosts that expired in
	// the window follow one another: their host-time over the span from
	// the first one's create to the last one's release is the idle cost's
	// rate in hosts (1 + the overlap while one is destroyed).
	var hostTime, boot time.Duration
	var from, to time.Time
	n := 0
	for _, l := range e.leases() {
		if !l.Warm || l.BoundJobID != 0 || l.ReleaseReason != "idle timeout" || l.CreatedAt.Before(t0) {
			continue
		}
		n++
		hostTime += l.ReleasedAt.Sub(l.CreatedAt)
		boot += l.IdleSince.Sub(l.CreatedAt)
		if from.IsZero() || l.CreatedAt.Before(from) {
			from = l.CreatedAt
		}
		if l.ReleasedAt.After(to) {
			to = l.ReleasedAt
		}
	}
	if n > 0 {
		span := to.Sub(from)
		t.Logf("%d warm hosts made and expired in the window: lifetime %s each, boot (created → idle) %s each; %.3f hosts billed on average over %s = $%.3f/h at $%.6f/h",
			n, (hostTime / time.Duration(n)).Round(100*time.Millisecond), (boot / time.Duration(n)).Round(100*time.Millisecond),
			hostTime.Seconds()/span.Seconds(), span.Round(time.Second), price*hostTime.Seconds()/span.Seconds(), price)
	}
	held := 0
	for _, l := range e.leases() {
		if l.State != provisioner.StateReleased {
			held++
		}
	}
	if held > 2 {
		t.Errorf("%d leases held with min_idle 1 and no job", held)
	}
	e.stop()
}
