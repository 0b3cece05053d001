package main

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/crabbox/crabbox-runner/providers/lambda/lambdatest"
	"github.com/crabbox/crabbox-runner/providers/vast/vasttest"
	"github.com/crabbox/crabbox-runner/provisioner"
	"github.com/crabbox/crabbox-runner/store/sqlite"
)

// badMarks reads the bad-machine marks from serve's database, as an
// operator's tool would.
func (e *e2e) badMarks() []provisioner.BadMachine {
	e.t.Helper()
	st, err := sqlite.Open(context.Background(), e.dbPath)
	if err != nil {
		e.t.Fatal(err)
	}
	defer st.Close()
	marks, err := st.BadMachines(context.Background(), time.Now())
	if err != nil {
		e.t.Fatal(err)
	}
	return marks
}

// waitVastClean waits until no Vast instance and no runner is left.
func (e *vastE2E) waitVastClean() {
	e.t.Helper()
	e.waitFor("every Vast instance destroyed and runner removed", 60*time.Second, func() bool {
		return len(e.vast.Live()) == 0 && len(e.gh.Runners()) == 0
	})
}

// createdAsks lists the asks serve rented, in order.
func createdAsks(v *vasttest.Server) string {
	var paths []string
	for _, r := range v.RequestsFor(vasttest.OpCreate) {
		paths = append(paths, strings.TrimSuffix(strings.TrimPrefix(r.Path, "/api/v0/asks/"), "/"))
	}
	return strings.Join(paths, " ")
}

// TestServeVastBadMachineAcrossRestarts: the cheapest machine's first host
// fails its GPU check. Its lease fails and the job is re-leased on the next
// machine; the mark is in the database with the reason, the metrics count
// it, and `offers` lists the machine skipped. serve is stopped and started
// again on the same database: the next job still does not go to that
// machine, though it is back on the market at once (RelistAfter 0). Once
// bad_machines.avoid_for has passed, the machine is rented again, and
// `offers` lists it first.
func TestServeVastBadMachineAcrossRestarts(t *testing.T) {
	// Long enough for two jobs and a restart on a loaded machine; the test
	// waits out what is left of it.
	const avoidFor = 90 * time.Second
	started := time.Now()
	e := startServeVastOpts(t, vastE2EOptions{bootTimeout: "30s", allowPrivate: true,
		// The first host on machine 801 has a broken GPU; later ones are fine.
		behave: func(seq int, o vasttest.Offer, _ string) vasttest.Behavior {
			return vasttest.Behavior{BrokenGPU: seq == 1 && o.MachineID == 801}
		},
		extraConfig: "bad_machines: {avoid_for: " + avoidFor.String() + "}\n"})

	id := e.queue("train")
	if job := e.waitJob(id); job.Conclusion != "success" {
		t.Fatalf("job 1: %+v", job)
	}
	if got := createdAsks(e.vast); got != "8000001 8000002" {
		t.Fatalf("creates %q, want the broken host's ask, then the next machine's", got)
	}
	var marks []provisioner.BadMachine
	e.waitFor("the bad machine recorded", 10*time.Second, func() bool { marks = e.badMarks(); return len(marks) == 1 })
	m := marks[0]
	ls := e.leases()
	if m.Provider != "vast" || m.Machine != "801" || !strings.Contains(m.Reason, "GPU") || m.LeaseID != ls[0].ID || m.Marks != 1 ||
		m.Until.Sub(m.LastAt) != avoidFor {
		t.Fatalf("mark %+v (first lease %s)", m, ls[0].ID)
	}
	// The first replacement's search may not list the broken host's ask
	// yet (its instance is still being destroyed), so no skip is counted
	// before the restart; the gauge comes from the database.
	if metrics := e.get("/metrics"); !strings.Contains(metrics, `crabbox_bad_machines{provider="vast"} 1`) {
		t.Errorf("/metrics lacks the bad machine gauge\n%s", grepLines(metrics, "bad_machine"))
	}
	e.waitVastClean()
	e.stop()

	// offers reads the same database: the machine is listed apart, skipped.
	code, out, errs := runCLI(t, e.env, "offers", "--class", "a100")
	if code != 0 {
		t.Fatalf("offers: exit %d: %s", code, errs)
	}
	t.Logf("offers --class a100:\n%s", out)
	table, avoided, _ := strings.Cut(out, "Offers on machines avoided")
	if strings.Contains(table, "8000001") || !strings.Contains(table, "8000002") {
		t.Errorf("offers to try:\n%s", table)
	}
	if line := grepLines(avoided, "8000001"); !strings.Contains(line, "801") || !strings.Contains(line, "skipped") ||
		!strings.Contains(line, m.Until.UTC().Format(time.RFC3339)) || !strings.Contains(line, "GPU") {
		t.Errorf("skipped offer line %q\n%s", line, out)
	}
	code, out, _ = runCLI(t, e.env, "offers", "--class", "a100", "--output", "json")
	var js []offerJSON
	if err := json.Unmarshal([]byte(out), &js); code != 0 || err != nil {
		t.Fatalf("offers json: exit %d, %v\n%s", code, err, out)
	}
	if last := js[len(js)-1]; last.OfferID != "8000001" || last.BadMachine == nil || last.BadMachine.How != "skipped" || last.BadMachine.Marks != 1 {
		t.Errorf("json: the skipped offer last, marked: %+v", js)
	}

	// A restarted serve knows the machine from the database alone.
	e.runServe(strings.TrimPrefix(e.url, "http://"), e.env)
	id2 := e.queue("train-2")
	if job := e.waitJob(id2); job.Conclusion != "success" {
		t.Fatalf("job 2: %+v", job)
	}
	if got := createdAsks(e.vast); got != "8000001 8000002 8000002" {
		t.Fatalf("creates %q: after the restart the bad machine was not avoided", got)
	}
	metrics := e.get("/metrics")
	for _, want := range []string{`crabbox_bad_machines{provider="vast"} 1`, `crabbox_offers_avoided_total{how="skipped",provider="vast"}`} {
		if !strings.Contains(metrics, want) {
			t.Errorf("/metrics after the restart lacks %s\n%s", want, grepLines(metrics, "avoided"))
		}
	}
	e.waitVastClean()

	// Past avoid_for the machine is the cheapest again, and rented.
	t.Logf("job 2 done %s after the start; waiting %s for the mark to run out", time.Since(started).Round(time.Second), time.Until(m.Until).Round(time.Second))
	time.Sleep(time.Until(m.Until) + 200*time.Millisecond)
	if marks := e.badMarks(); len(marks) != 0 {
		t.Fatalf("marks after avoid_for: %+v", marks)
	}
	code, out, _ = runCLI(t, e.env, "offers", "--class", "a100")
	if code != 0 || strings.Contains(out, "avoided") || !strings.Contains(grepLines(out, "vast"), "8000001") {
		t.Errorf("offers after avoid_for: exit %d\n%s", code, out)
	}
	id3 := e.queue("train-3")
	if job := e.waitJob(id3); job.Conclusion != "success" {
		t.Fatalf("job 3: %+v", job)
	}
	if got := createdAsks(e.vast); got != "8000001 8000002 8000002 8000001" {
		t.Fatalf("creates %q: after avoid_for the machine was not rented again", got)
	}
	e.waitVastClean()
	e.stop()
}

// TestServeLambdaBadPoolTriedLast: Lambda names no machine, so a host that
// fails its GPU check marks its instance type in its region, a pool. The
// next leases launch in the other regions first; when those have no
// capacity, the bad pool is still launched in rather than the job left
// waiting.
func TestServeLambdaBadPoolTriedLast(t *testing.T) {
	fake := lambdatest.New(t, lambdatest.Options{APIKey: testLambdaKey, BootDelay: 200 * time.Millisecond,
		Behavior: func(seq int, req lambdatest.LaunchRequest) lambdatest.Behavior {
			return lambdatest.Behavior{BrokenGPU: seq == 1}
		}})
	e := startServeLambda(t, fake)
	regions := func() string {
		var out []string
		for _, l := range fake.Launches() {
			out = append(out, l.RegionName)
		}
		return strings.Join(out, " ")
	}
	waitLambdaClean := func() {
		e.waitFor("instances terminated, runners removed", 60*time.Second, func() bool {
			return len(fake.Live()) == 0 && len(e.gh.Runners()) == 0
		})
	}

	// The three A100 SXM4 regions cost the same and are tried in id order:
	// us-east-1 first. Its host's GPU is broken; the job goes to us-south-1.
	if job := e.waitJob(e.queue("train")); job.Conclusion != "success" {
		t.Fatalf("job 1: %+v", job)
	}
	if got := regions(); got != "us-east-1 us-south-1" {
		t.Fatalf("launches in %q", got)
	}
	var marks []provisioner.BadMachine
	e.waitFor("the pool recorded", 10*time.Second, func() bool { marks = e.badMarks(); return len(marks) == 1 })
	if m := marks[0]; m.Provider != "lambda" || m.Machine != "gpu_1x_a100_sxm4@us-east-1" || m.Until.Sub(m.LastAt) != provisioner.DefaultBadPoolTTL {
		t.Fatalf("mark %+v", m)
	}
	waitLambdaClean()

	// The next job: the bad pool goes after the others.
	if job := e.waitJob(e.queue("train-2")); job.Conclusion != "success" {
		t.Fatalf("job 2: %+v", job)
	}
	if got := regions(); got != "us-east-1 us-south-1 us-south-1" {
		t.Fatalf("launches in %q: the bad pool was not put last", got)
	}
	waitLambdaClean()

	// No capacity elsewhere: the bad pool is tried, not skipped.
	fake.NoCapacity("gpu_1x_a100_sxm4", "us-south-1")
	fake.NoCapacity("gpu_1x_a100_sxm4", "us-west-2")
	if job := e.waitJob(e.queue("train-3")); job.Conclusion != "success" {
		t.Fatalf("job 3: %+v", job)
	}
	if got := regions(); got != "us-east-1 us-south-1 us-south-1 us-south-1 us-west-2 us-east-1" {
		t.Fatalf("launches in %q: want the two refused for capacity, then the bad pool", got)
	}
	if metrics := e.get("/metrics"); !strings.Contains(metrics, `crabbox_offers_avoided_total{how="tried_last",provider="lambda"}`) ||
		strings.Contains(metrics, `crabbox_offers_avoided_total{how="skipped",provider="lambda"}`) {
		t.Errorf("/metrics:\n%s", grepLines(metrics, "avoided"))
	}
	waitLambdaClean()
	e.stop()
}
