package main

import (
	"fmt"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/crabbox/crabbox-runner/github/githubtest"
	"github.com/crabbox/crabbox-runner/providers/vast/vasttest"
	"github.com/crabbox/crabbox-runner/provisioner"
)

// Hedged provisioning through serve (issue 18): a class with hedge_after
// rents a second Vast host for a job whose first host is slow; the first
// runner online serves and the other host is destroyed at once.

// hedgeE2E serves the A100 class with hedge_after (none when empty) and
// the given boot timeout, the fake Vast hosts behaving as behave says and
// staying "loading" runningAfter (0: the fake's default).
func hedgeE2E(t *testing.T, hedgeAfter, bootTimeout string, runningAfter time.Duration, behave func(seq int, o vasttest.Offer, label string) vasttest.Behavior) *vastE2E {
	t.Helper()
	if hedgeAfter != "" {
		e2eConfigTweak = func(cfg string) string {
			return strings.Replace(cfg, "    max_lifetime: 30m\n", "    max_lifetime: 30m\n    hedge_after: "+hedgeAfter+"\n", 1)
		}
		t.Cleanup(func() { e2eConfigTweak = nil })
	}
	return startServeVastOpts(t, vastE2EOptions{bootTimeout: bootTimeout, behave: behave, allowPrivate: true,
		relistAfter: time.Minute, runningAfter: runningAfter})
}

// watchInstances samples the fake's live instances until the test ends
// and returns a function giving the most it saw at once.
func watchInstances(t *testing.T, e *vastE2E) func() int {
	var mu sync.Mutex
	most := 0
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			n := len(e.vast.Live())
			mu.Lock()
			most = max(most, n)
			mu.Unlock()
			select {
			case <-stop:
				return
			case <-time.After(10 * time.Millisecond):
			}
		}
	}()
	t.Cleanup(func() { close(stop); <-done })
	return func() int {
		mu.Lock()
		defer mu.Unlock()
		return most
	}
}

func hedgeJob(e *vastE2E) int64 {
	return e.gh.QueueJob(githubtest.JobSpec{Repo: "acme/vision", Org: "acme", Labels: []string{"self-hosted", "crabbox", "A100"},
		Name: "train", Script: `echo trained`})
}

// The first host never boots: its hedge's runner runs the job, the first
// host is destroyed as soon as the hedge's runner is online (long before
// the boot timeout), and the job never had more than two hosts.
func TestServeHedgeSecondWins(t *testing.T) {
	e := hedgeE2E(t, "2s", "120s", 0, func(seq int, o vasttest.Offer, _ string) vasttest.Behavior {
		return vasttest.Behavior{NeverBoot: seq == 1}
	})
	most := watchInstances(t, e)
	started := time.Now()
	id := hedgeJob(e)
	job := e.waitJob(id)
	took := time.Since(started)
	if job.Conclusion != "success" {
		t.Fatalf("job: %+v", job)
	}
	// The first host goes when the hedge wins, not at the boot timeout
	// (120 s): well within this wait.
	e.waitFor("every instance destroyed", 60*time.Second, func() bool { return len(e.vast.Live()) == 0 })
	if took > 100*time.Second {
		t.Fatalf("the job took %s: it waited for the boot timeout", took)
	}
	ls := e.leases()
	if len(ls) != 2 {
		t.Fatalf("%d leases, want 2: %+v", len(ls), ls)
	}
	first, hedge := ls[0], ls[1]
	if first.ReleaseReason != "hedge "+hedge.ID+" got its runner online first" || first.HedgedAt.IsZero() {
		t.Errorf("first lease: reason %q, hedged_at %s", first.ReleaseReason, first.HedgedAt)
	}
	if hedge.HedgeOf != "" || hedge.BoundJobID != id || job.RunnerName != hedge.RunnerName {
		t.Errorf("hedge: hedge_of %q bound %d runner %s; the job ran on %s", hedge.HedgeOf, hedge.BoundJobID, hedge.RunnerName, job.RunnerName)
	}
	if hedge.MachineID == first.MachineID || hedge.OfferID == first.OfferID {
		t.Errorf("the hedge rented the first's offer %s / machine %s", first.OfferID, first.MachineID)
	}
	if n := most(); n > 2 {
		t.Errorf("%d instances live at once, want at most 2", n)
	}
	checkHedgeMetrics(t, e, "second")
	if !strings.Contains(e.logs.String(), `"msg":"hedge started"`) {
		t.Error("no hedge started in the logs")
	}
	t.Logf("queued to completed with a hedge after 2s, first host never booting: %s", took.Round(10*time.Millisecond))
}

// The first host never boots and its hedge fails fast (an OCI runtime
// error): once the failed hedge's host is destroyed, a new hedge is rented,
// and its runner runs the job long before the first's boot timeout; the job
// never had more than two hosts at once.
func TestServeHedgeFailedHedgeReplaced(t *testing.T) {
	e := hedgeE2E(t, "2s", "120s", 0, func(seq int, o vasttest.Offer, _ string) vasttest.Behavior {
		return vasttest.Behavior{NeverBoot: seq == 1, OCIError: seq == 2}
	})
	most := watchInstances(t, e)
	started := time.Now()
	id := hedgeJob(e)
	job := e.waitJob(id)
	took := time.Since(started)
	if job.Conclusion != "success" {
		t.Fatalf("job: %+v", job)
	}
	e.waitFor("every instance destroyed", 60*time.Second, func() bool { return len(e.vast.Live()) == 0 })
	if took > 100*time.Second {
		t.Fatalf("the job took %s: it waited for the first host's boot timeout", took)
	}
	ls := e.leases()
	if len(ls) != 3 {
		t.Fatalf("%d leases, want 3 (first, failed hedge, new hedge): %+v", len(ls), ls)
	}
	first, failed, again := ls[0], ls[1], ls[2]
	if failed.State != provisioner.StateReleased || !strings.Contains(failed.Error, "OCI") {
		t.Errorf("failed hedge: state %s error %q", failed.State, failed.Error)
	}
	if job.RunnerName != again.RunnerName || first.ReleaseReason != "hedge "+again.ID+" got its runner online first" {
		t.Errorf("the job ran on %s (new hedge %s); first released for %q", job.RunnerName, again.RunnerName, first.ReleaseReason)
	}
	if again.CreatedAt.Before(failed.ReleasedAt) {
		t.Errorf("new hedge made at %s, before the failed hedge's host was destroyed at %s", again.CreatedAt, failed.ReleasedAt)
	}
	if n := most(); n > 2 {
		t.Errorf("%d instances live at once, want at most 2", n)
	}
	t.Logf("queued to completed, first host never booting, first hedge failing fast: %s", took.Round(10*time.Millisecond))
}

// The first host boots late, after its hedge was started but before the
// hedge's host (which never boots): the first serves, the hedge's host is
// destroyed as soon as the first runner is online.
func TestServeHedgeFirstWins(t *testing.T) {
	e := hedgeE2E(t, "1s", "120s", 3*time.Second, func(seq int, o vasttest.Offer, _ string) vasttest.Behavior {
		return vasttest.Behavior{NeverBoot: seq == 2}
	})
	most := watchInstances(t, e)
	id := hedgeJob(e)
	job := e.waitJob(id)
	if job.Conclusion != "success" {
		t.Fatalf("job: %+v", job)
	}
	e.waitFor("every instance destroyed", 60*time.Second, func() bool { return len(e.vast.Live()) == 0 })
	ls := e.leases()
	if len(ls) != 2 {
		t.Fatalf("%d leases, want 2: %+v", len(ls), ls)
	}
	first, hedge := ls[0], ls[1]
	if want := "hedge not needed: " + first.ID + " got its runner online first"; hedge.ReleaseReason != want || hedge.HedgeOf != first.ID {
		t.Errorf("hedge: reason %q, hedge_of %q", hedge.ReleaseReason, hedge.HedgeOf)
	}
	if first.BoundJobID != id || job.RunnerName != first.RunnerName {
		t.Errorf("the job ran on %s, want the first lease's %s", job.RunnerName, first.RunnerName)
	}
	if n := most(); n > 2 {
		t.Errorf("%d instances live at once, want at most 2", n)
	}
	checkHedgeMetrics(t, e, "first")
}

func checkHedgeMetrics(t *testing.T, e *vastE2E, winner string) {
	t.Helper()
	var metrics string
	e.waitFor("the loser's cost counted", 30*time.Second, func() bool {
		metrics = e.get("/metrics")
		return strings.Contains(metrics, `crabbox_hedge_extra_cost_dollars_total{class="a100"}`)
	})
	for _, want := range []string{
		`crabbox_hedges_started_total{class="a100"} 1`,
		fmt.Sprintf(`crabbox_hedges_won_total{class="a100",winner=%q} 1`, winner),
	} {
		if !strings.Contains(metrics, want) {
			t.Errorf("/metrics lacks %s\n%s", want, grepLines(metrics, "hedge"))
		}
	}
	if strings.Contains(metrics, `crabbox_hedges_won_total{class="a100",winner="`+map[string]string{"first": "second", "second": "first"}[winner]+`"}`) {
		t.Errorf("both won:\n%s", grepLines(metrics, "hedge"))
	}
}

// TestServeHedgeBench measures queued → job completed when the first host
// never boots, with and without a hedge (docs/benchmarks.md). Only with
// CRABBOX_HEDGE_BENCH=1: without a hedge it waits out a boot timeout.
func TestServeHedgeBench(t *testing.T) {
	if os.Getenv("CRABBOX_HEDGE_BENCH") == "" {
		t.Skip("set CRABBOX_HEDGE_BENCH=1")
	}
	for _, hedgeAfter := range []string{"", "3s"} {
		t.Run("hedge_after="+hedgeAfter, func(t *testing.T) {
			e := hedgeE2E(t, hedgeAfter, "20s", 0, func(seq int, o vasttest.Offer, _ string) vasttest.Behavior {
				return vasttest.Behavior{NeverBoot: seq == 1}
			})
			most := watchInstances(t, e)
			started := time.Now()
			job := e.waitJob(hedgeJob(e))
			took := time.Since(started)
			e.waitFor("every instance destroyed", 60*time.Second, func() bool { return len(e.vast.Live()) == 0 })
			e.waitFor("every lease released", 30*time.Second, func() bool {
				for _, l := range e.leases() {
					if l.State != provisioner.StateReleased {
						return false
					}
				}
				return true
			})
			ls := e.leases()
			var why []string
			for _, l := range ls {
				why = append(why, fmt.Sprintf("%s: %s", l.ID, firstNonEmpty(l.Error, l.ReleaseReason)))
			}
			t.Logf("BENCH hedge_after=%q boot_timeout=20s first host never boots: queued→completed %s, conclusion %s, instances %d, most live at once %d; leases %s",
				hedgeAfter, took.Round(10*time.Millisecond), job.Conclusion, len(e.vast.Instances()), most(), strings.Join(why, "; "))
		})
	}
}

func firstNonEmpty(s ...string) string {
	for _, v := range s {
		if v != "" {
			return v
		}
	}
	return ""
}
