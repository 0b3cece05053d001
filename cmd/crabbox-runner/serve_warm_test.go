package main

import (
	"encoding/json"
	"sync"
	"testing"
	"time"

	"strings"

	"github.com/crabbox/crabbox-runner/github/githubtest"
	"github.com/crabbox/crabbox-runner/providers/vast/vasttest"
	"github.com/crabbox/crabbox-runner/provisioner"
)

// warmClass is the Vast harness's A100 class with min_idle 1 and the
// given idle_timeout.
func warmClass(idleTimeout string) string {
	return vastA100Class("60s", idleTimeout, "30m", "min_idle: 1")
}

// warmMarket is n A100 offers, each its own machine: the process skips an
// offer it rented for five minutes (provisioner/offerbook.go), and a warm
// class rents a host per job and per expiry, more than the few machines of
// vastE2EMarket.
func warmMarket(n int) []vasttest.Offer {
	out := make([]vasttest.Offer, n)
	for i := range out {
		o := vastE2EMarket[2] // A100 SXM4, $0.90/h + storage
		o.ID, o.MachineID = int64(8100000+i), int64(8100+i)
		out[i] = o
	}
	return out
}

// assignments records when the fake GitHub handed each job to a runner,
// and to which.
type assignments struct {
	mu sync.Mutex
	at map[int64]time.Time
	to map[int64]string
}

func watchAssignments(t *testing.T) *assignments {
	a := &assignments{at: map[int64]time.Time{}, to: map[int64]string{}}
	e2eOnEvent = func(ev githubtest.Event) {
		if ev.Kind == githubtest.EventJobAssigned {
			a.mu.Lock()
			a.at[ev.JobID], a.to[ev.JobID] = ev.At, ev.RunnerName
			a.mu.Unlock()
		}
	}
	t.Cleanup(func() { e2eOnEvent = nil })
	return a
}

func (a *assignments) get(id int64) (time.Time, string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.at[id], a.to[id]
}

// maxHeld samples serve's leases until stop is closed and returns the
// most it saw not released at once.
func maxHeld(e *vastE2E, stop <-chan struct{}) func() int {
	var mu sync.Mutex
	most := 0
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			select {
			case <-stop:
				return
			case <-time.After(50 * time.Millisecond):
			}
			n := 0
			for _, l := range e.leasesQuiet() {
				if l.State != provisioner.StateReleased {
					n++
				}
			}
			mu.Lock()
			most = max(most, n)
			mu.Unlock()
		}
	}()
	return func() int {
		<-done
		mu.Lock()
		defer mu.Unlock()
		return most
	}
}

// idleLease is serve's one lease whose runner is online and idle, or nil.
func idleLease(ls []*provisioner.Lease) *provisioner.Lease {
	var found *provisioner.Lease
	for _, l := range ls {
		if l.State == provisioner.StateIdle && l.ReleaseReason == "" {
			if found != nil {
				return nil
			}
			found = l
		}
	}
	return found
}

// TestServeWarmHosts is the story of a class with min_idle 1 through
// serve and the fake Vast: nothing is kept warm before the class's first
// job; once it ran, a host is kept booted with its runner online; a second
// job is handed to that runner (no host is created for it) while the warm
// host's replacement is made at once; a warm host idle past idle_timeout
// is destroyed and replaced; max_leases 2 holds throughout. The status
// page, `leases` and the metrics show the warm hosts.
func TestServeWarmHosts(t *testing.T) {
	asg := watchAssignments(t)
	e := startServeVastOpts(t, vastE2EOptions{bootTimeout: "60s", allowPrivate: true, relistAfter: 200 * time.Millisecond,
		market: warmMarket(20), classes: warmClass("12s"), extraConfig: "limits: {max_leases: 2}\nreconcile: {interval: 2s}\n"})
	stop := make(chan struct{})
	most := maxHeld(e, stop)

	e.waitFor("the reconcile pass saying min_idle waits for a first job", 30*time.Second, func() bool {
		return strings.Contains(e.logs.String(), "min_idle waits for the class's first job")
	})
	if ls := e.leases(); len(ls) != 0 {
		t.Fatalf("%d leases before the class's first job", len(ls))
	}

	first := e.queue("first")
	if j := e.waitJob(first); j.Conclusion != "success" {
		t.Fatalf("job 1: %+v", j)
	}
	var warm *provisioner.Lease
	e.waitFor("a warm host: one lease idle with its runner online", 90*time.Second, func() bool {
		warm = idleLease(e.leases())
		if warm == nil || !warm.Warm {
			return false
		}
		for _, r := range e.gh.Runners() {
			if r.Name == warm.RunnerName && r.Status == "online" && !r.Busy {
				return true
			}
		}
		return false
	})

	creates := func(from, to time.Time) int {
		n := 0
		for _, r := range e.vast.RequestsFor(vasttest.OpCreate) {
			if r.Status == 200 && !r.At.Before(from) && !r.At.After(to) {
				n++
			}
		}
		return n
	}
	queued := time.Now()
	second := e.queue("second")
	if j := e.waitJob(second); j.Conclusion != "success" || j.RunnerName != warm.RunnerName {
		t.Fatalf("job 2 ran on %q, want the warm runner %q (%+v)", j.RunnerName, warm.RunnerName, j)
	}
	at, _ := asg.get(second)
	if at.IsZero() {
		t.Fatal("job 2's assignment was not seen")
	}
	// The host that ran job 2 was there before it was queued; the one
	// create that may come before the assignment is the replacement's.
	if n := creates(queued, at); n > 1 {
		t.Fatalf("%d hosts created between job 2's queuing and its assignment", n)
	}
	t.Logf("job 2: queued → assigned %s on the warm runner", at.Sub(queued).Round(time.Millisecond))

	var replacement *provisioner.Lease
	e.waitFor("the replacement warm and idle", 90*time.Second, func() bool {
		replacement = idleLease(e.leases())
		return replacement != nil && replacement.ID != warm.ID && replacement.Warm && replacement.CreatedAt.After(queued.Add(-time.Second))
	})
	if n := creates(queued, time.Now()); n != 1 {
		t.Fatalf("%d hosts created since job 2 was queued, want 1: the replacement", n)
	}

	// The status page and `leases` show it.
	page := e.get("/")
	if !strings.Contains(page, `<section id="warm-hosts">`) || !strings.Contains(page, `<tr class="warm-row"><td>a100</td><td class="num">1</td><td class="num">1</td>`) {
		t.Errorf("status page lacks the warm hosts row:\n%s", grepLines(page, "warm"))
	}
	code, out, errs := runCLI(t, e.env, "leases", "--output", "json")
	var rows []leaseJSON
	if code != 0 || json.Unmarshal([]byte(out), &rows) != nil {
		t.Fatalf("leases: %d %s %s", code, out, errs)
	}
	for _, r := range rows {
		if r.ID == replacement.ID && !r.Warm {
			t.Errorf("leases --output json: the replacement is not marked warm: %+v", r)
		}
	}
	if code, out, _ := runCLI(t, e.env, "leases"); code != 0 || !strings.Contains(grepLines(out, replacement.ID), "warm") {
		t.Errorf("leases table does not mark the warm lease:\n%s", out)
	}

	// Idle past idle_timeout: destroyed, and replaced.
	e.waitFor("the replacement released for its idle timeout and replaced", 90*time.Second, func() bool {
		var gone bool
		var next bool
		for _, l := range e.leases() {
			if l.ID == replacement.ID && l.State == provisioner.StateReleased && l.ReleaseReason == "idle timeout" {
				gone = true
			}
			if l.Warm && l.CreatedAt.After(replacement.CreatedAt) && l.State != provisioner.StateReleased {
				next = true
			}
		}
		return gone && next
	})
	for _, in := range e.vast.Instances() {
		m, _ := provisioner.ParseMarker(in.Label)
		if m.LeaseID == replacement.ID && !in.Destroyed {
			t.Errorf("the expired warm host's instance %d is not destroyed", in.ID)
		}
	}
	// The release records the warm host's idle cost just after it marks
	// the lease released: look until it has.
	wants := []string{`crabbox_warm_jobs_total{class="a100"} 1`, `crabbox_warm_expired_total{class="a100"}`,
		`crabbox_warm_idle_cost_dollars_total{class="a100"}`, `crabbox_warm_created_total{class="a100"}`, `crabbox_warm_hosts{class="a100",state=`}
	var metrics string
	deadline := time.Now().Add(10 * time.Second)
	for {
		metrics = e.get("/metrics")
		missing := false
		for _, want := range wants {
			missing = missing || !strings.Contains(metrics, want)
		}
		if !missing || time.Now().After(deadline) {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	for _, want := range wants {
		if !strings.Contains(metrics, want) {
			t.Errorf("/metrics lacks %s\n%s", want, grepLines(metrics, "crabbox_warm"))
		}
	}
	close(stop)
	if n := most(); n > 2 {
		t.Errorf("%d leases held at once under max_leases 2", n)
	}
	e.stop()
}
