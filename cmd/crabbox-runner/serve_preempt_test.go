package main

import (
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/crabbox/crabbox-runner/github/githubtest"
	"github.com/crabbox/crabbox-runner/providers/lambda/lambdatest"
	"github.com/crabbox/crabbox-runner/providers/vast/vasttest"
	"github.com/crabbox/crabbox-runner/provisioner"
)

// e2eConfigTweak, when set, rewrites the config the serve harnesses of
// serve_vast_test.go and serve_lambda_test.go write.
var e2eConfigTweak func(cfg string) string

// hostWatchInterval is the reconcile interval of these tests: the host
// watch runs once a pass.
const hostWatchInterval = time.Second

// withClass adds lines to the class and a reconcile interval to the config.
func withClass(t *testing.T, classLines string) {
	t.Helper()
	e2eConfigTweak = func(cfg string) string {
		cfg = strings.Replace(cfg, "    max_lifetime: 30m\n", "    max_lifetime: 30m\n"+classLines, 1)
		return cfg + fmt.Sprintf("reconcile: {interval: %s}\n", hostWatchInterval)
	}
	t.Cleanup(func() { e2eConfigTweak = nil })
}

// longJob runs until its host goes away.
func longJob(e *e2e) int64 {
	return e.gh.QueueJob(githubtest.JobSpec{Repo: "acme/vision", Org: "acme", Labels: []string{"self-hosted", "crabbox", "A100"},
		Name: "train", Script: `echo started; sleep 600`})
}

// waitLost waits for the lease to be released with a lost reason and
// returns it and how long after since it was released.
func waitLost(e *e2e, id string, since time.Time) (*provisioner.Lease, time.Duration) {
	e.t.Helper()
	var got *provisioner.Lease
	var at time.Duration
	e.waitFor("lease released as lost", 60*time.Second, func() bool {
		for _, l := range e.leases() {
			if l.ID == id && l.LostReason != "" && at == 0 {
				at = time.Since(since)
			}
			if l.ID == id && l.State == provisioner.StateReleased {
				got = l
				return true
			}
		}
		return false
	})
	return got, at
}

// The story of an interruptible Vast host: the class allows bids, so the
// cheapest fitting machine is rented as a bid (price sent, cheaper than
// on demand); mid-job the host is outbid (stopped, its processes and the
// runner killed); the next reconcile pass's host watch releases the lease
// with lost_reason outbid, the instance is destroyed (a stopped instance
// still bills its disk), the machine is not marked bad (the market, not
// the machine), and crabbox_hosts_lost_total counts it. One listing per
// pass is all the watch costs.
func TestServeVastInterruptibleOutbidMidJob(t *testing.T) {
	withClass(t, "    interruptible: {bid: 1.2}\n")
	e := startServeVast(t, "60s", nil)
	id := longJob(e.e2e)
	l := busyLease(e.e2e, id, "")
	// 8000001 is the cheapest fitting machine: bid 1.2 × min_bid (0.6 ×
	// 0.55) = 0.396, plus 40 GB at $0.2/GB/month: $0.4071/h against
	// $0.5611/h on demand.
	if !l.Interruptible || l.OfferID != "8000001" || l.PricePerHour != 0.407111 {
		t.Fatalf("lease: interruptible %v offer %s price %v", l.Interruptible, l.OfferID, l.PricePerHour)
	}
	creates := e.vast.RequestsFor(vasttest.OpCreate)
	var body map[string]any
	if err := json.Unmarshal(creates[len(creates)-1].Body, &body); err != nil || body["price"] != 0.396 {
		t.Fatalf("create body %s (%v)", creates[len(creates)-1].Body, err)
	}
	code, out, _ := runCLI(t, e.env, "leases")
	if code != 0 || !strings.Contains(out, "vast/bid") {
		t.Fatalf("leases does not show the bid host (%d):\n%s", code, out)
	}

	n, _ := strconv.ParseInt(l.InstanceID, 10, 64)
	listsBefore := len(e.vast.RequestsFor(vasttest.OpList))
	outbidAt := time.Now()
	if !e.vast.Outbid(n) {
		t.Fatal("the fake did not outbid the running bid instance")
	}
	got, detected := waitLost(e.e2e, l.ID, outbidAt)
	released := time.Since(outbidAt)
	if got.LostReason != provisioner.LostOutbid || got.ReleaseReason != "host lost: outbid" {
		t.Fatalf("lease: lost %q release %q error %q", got.LostReason, got.ReleaseReason, got.Error)
	}
	e.waitFor("the outbid instance destroyed", 30*time.Second, func() bool { return len(e.vast.Live()) == 0 })
	if inst, _ := e.vast.Instance(n); !inst.Destroyed {
		t.Fatalf("instance %d not destroyed: %+v", n, inst)
	}
	metrics := e.get("/metrics")
	for _, want := range []string{
		`crabbox_hosts_lost_total{provider="vast",reason="outbid"} 1`,
		`crabbox_hosts_lost_served_seconds_total{provider="vast",reason="outbid"}`,
	} {
		if !strings.Contains(metrics, want) {
			t.Errorf("/metrics lacks %s\n%s", want, grepLines(metrics, "crabbox_hosts_lost"))
		}
	}
	code, out, _ = runCLI(t, e.env, "leases", "--all", "--output", "json")
	if code != 0 || !strings.Contains(out, `"lost_reason": "outbid"`) || !strings.Contains(out, `"interruptible": true`) {
		t.Fatalf("leases --output json (%d):\n%s", code, out)
	}
	logs := e.logs.String()
	if !strings.Contains(logs, `"msg":"host lost; releasing the lease"`) || strings.Contains(logs, `"msg":"avoiding machine"`) {
		t.Errorf("logs: %s", grepLines(logs, "host lost"))
	}
	passes := len(e.vast.RequestsFor(vasttest.OpList)) - listsBefore
	e.stop()
	t.Logf("outbid → lost_reason set: %s; → released: %s; instance listings meanwhile: %d (reconcile every %s)",
		detected.Round(10*time.Millisecond), released.Round(10*time.Millisecond), passes, hostWatchInterval)
}

// A class whose bids do not fit (bid 10 × min_bid is over the $1/h cap on
// every machine) falls back to on-demand: the lease is not interruptible,
// and the create sends no price.
func TestServeVastInterruptibleFallsBackToOnDemand(t *testing.T) {
	withClass(t, "    interruptible: {bid: 10}\n")
	e2eTweak := e2eConfigTweak
	e2eConfigTweak = func(cfg string) string {
		return strings.Replace(e2eTweak(cfg), "max_price_per_hour: 2.50", "max_price_per_hour: 1.00", 1)
	}
	e := startServeVast(t, "60s", nil)
	id := e.queue("train")
	if job := e.waitJob(id); job.Conclusion != "success" {
		t.Fatalf("job %+v", job)
	}
	var l *provisioner.Lease
	for _, x := range e.leases() {
		if x.BoundJobID == id {
			l = x
		}
	}
	if l == nil || l.Interruptible || l.OfferID != "8000001" || l.PricePerHour != 0.561111 {
		t.Fatalf("lease %+v", l)
	}
	var bidSearch bool
	for _, r := range e.vast.RequestsFor(vasttest.OpSearch) {
		bidSearch = bidSearch || strings.Contains(string(r.Body), `"type":"bid"`)
	}
	for _, r := range e.vast.RequestsFor(vasttest.OpCreate) {
		if strings.Contains(string(r.Body), `"price"`) {
			t.Fatalf("an on-demand create sent a bid: %s", r.Body)
		}
	}
	if !bidSearch {
		t.Fatal("the interruptible class never searched the bid market")
	}
	e.stop()
}

// A Lambda host preempted mid-job: the host watch releases the lease with
// lost_reason preempted, the instance is terminated, and the metric counts
// it. Lambda has no bid market: the class is on-demand.
func TestServeLambdaPreemptedMidJob(t *testing.T) {
	withClass(t, "")
	fake := lambdatest.New(t, lambdatest.Options{APIKey: testLambdaKey, BootDelay: 200 * time.Millisecond})
	e := startServeLambda(t, fake)
	id := longJob(e.e2e)
	l := busyLease(e.e2e, id, "")
	preemptedAt := time.Now()
	// lambda-openapi.json InstanceStatus: "preempted"; the fake stops the
	// host's sshd and with it the runner.
	if err := fake.SetStatus(l.InstanceID, "preempted"); err != nil {
		t.Fatal(err)
	}
	got, detected := waitLost(e.e2e, l.ID, preemptedAt)
	if got.LostReason != provisioner.LostPreempted || got.Interruptible {
		t.Fatalf("lease: lost %q interruptible %v error %q", got.LostReason, got.Interruptible, got.Error)
	}
	e.waitFor("the instance terminated", 60*time.Second, func() bool { return len(fake.Live()) == 0 })
	if m := e.get("/metrics"); !strings.Contains(m, `crabbox_hosts_lost_total{provider="lambda",reason="preempted"} 1`) {
		t.Errorf("/metrics: %s", grepLines(m, "crabbox_hosts_lost"))
	}
	e.stop()
	t.Logf("preempted → lost_reason set: %s (reconcile every %s)", detected.Round(10*time.Millisecond), hostWatchInterval)
}

// Bids refused at create (400 invalid_price: the minimum bid rose since
// the search) are not "offer taken": the lease goes on to the next offer,
// here the first machine on demand, cheaper than the third machine's bid.
func TestServeVastRefusedBidsFallBackToOnDemand(t *testing.T) {
	withClass(t, "    interruptible: {bid: 1.2}\n")
	e := startServeVast(t, "60s", nil)
	// vast-openapi.yaml createInstance: 400 with error invalid_price.
	refused := vasttest.Fault{Status: 400, ContentType: "application/json",
		Body: `{"success": false, "error": "invalid_price", "msg": "bid below the current minimum"}`}
	e.vast.FailNext(vasttest.OpCreate, refused, refused)
	id := e.queue("train")
	if job := e.waitJob(id); job.Conclusion != "success" {
		t.Fatalf("job %+v", job)
	}
	var l *provisioner.Lease
	for _, x := range e.leases() {
		if x.BoundJobID == id {
			l = x
		}
	}
	if l == nil || l.Interruptible || l.OfferID != "8000001" || l.PricePerHour != 0.561111 {
		t.Fatalf("lease %+v", l)
	}
	var paths []string
	for _, r := range e.vast.RequestsFor(vasttest.OpCreate) {
		paths = append(paths, fmt.Sprintf("%s %v", r.Path, strings.Contains(string(r.Body), `"price"`)))
	}
	if want := "/api/v0/asks/8000001/ true,/api/v0/asks/8000002/ true,/api/v0/asks/8000001/ false"; strings.Join(paths, ",") != want {
		t.Fatalf("creates %v, want %s", paths, want)
	}
	e.stop()
}

// An on-demand Vast host whose container exits mid-job (actual_status
// exited: "container process exited unexpectedly", vast-api.md §6): the
// lease is released with lost_reason "host failed", the instance
// destroyed, and its machine avoided, unlike an outbid one.
func TestServeVastHostDiesMidJob(t *testing.T) {
	withClass(t, "")
	e := startServeVast(t, "60s", nil)
	id := longJob(e.e2e)
	l := busyLease(e.e2e, id, "")
	n, _ := strconv.ParseInt(l.InstanceID, 10, 64)
	e.vast.SetStatus(n, "exited", "container exited with code 137")
	got, _ := waitLost(e.e2e, l.ID, time.Now())
	if got.LostReason != provisioner.LostFailed || got.Interruptible || !strings.Contains(got.Error, "code 137") {
		t.Fatalf("lease: lost %q error %q", got.LostReason, got.Error)
	}
	e.waitFor("the instance destroyed", 30*time.Second, func() bool { return len(e.vast.Live()) == 0 })
	if logs := e.logs.String(); !strings.Contains(logs, `"msg":"avoiding machine"`) || !strings.Contains(logs, `"machine_id":"801"`) {
		t.Errorf("machine 801 not avoided: %s", grepLines(logs, "avoiding"))
	}
	if m := e.get("/metrics"); !strings.Contains(m, `crabbox_hosts_lost_total{provider="vast",reason="host failed"} 1`) {
		t.Errorf("/metrics: %s", grepLines(m, "crabbox_hosts_lost"))
	}
	e.stop()
}
