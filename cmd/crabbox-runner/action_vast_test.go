package main

import (
	"bytes"
	"context"
	"net/http"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/crabbox/crabbox-runner/action"
	"github.com/crabbox/crabbox-runner/github/githubtest"
	"github.com/crabbox/crabbox-runner/internal/config"
	"github.com/crabbox/crabbox-runner/providers/vast/vasttest"
	"github.com/crabbox/crabbox-runner/provisioner"
)

// TestActionWithVast runs the three jobs against the fake Vast through the
// real provider factory, as a workflow does: each step builds its provider
// afresh from the vast-api-key input and CRABBOX_VAST_API_URL, and all
// that lasts between steps is in the (fake) cloud, found by its marker.
func TestActionWithVast(t *testing.T) {
	w := newActionWorld(t, false, nil, nil)
	market := []vasttest.Offer{
		{ID: 9100001, MachineID: 911, GPUName: "A100 PCIE", NumGPUs: 1, GPURAM: 40960, DphBase: 0.70, StorageCost: 0.2, Reliability: 0.99, Geolocation: "Texas, US", DirectPortCount: 20, DiskSpace: 500, CUDAMaxGood: 12.6},
		{ID: 9100002, MachineID: 912, GPUName: "RTX 4090", NumGPUs: 1, GPURAM: 24564, DphBase: 0.30, StorageCost: 0.1, Reliability: 0.99, Geolocation: "Texas, US", DirectPortCount: 20, DiskSpace: 500, CUDAMaxGood: 12.8},
	}
	fake := vasttest.New(vasttest.Options{APIKey: actionVastKey, Dir: filepath.Join(w.dir, "vast"), Offers: market, Logf: t.Logf})
	t.Cleanup(fake.Close)
	w.onVast(fake)

	start := w.step(map[string]string{"mode": "start", "gpu": "A100", "min-gpu-memory": "40", "max-price": "2", "timeout": "2m", "max-lifetime": "1h"})
	if start.code != 0 {
		t.Fatalf("start: exit %d", start.code)
	}
	out := start.outputs
	if out["provider"] != "vast" || out["gpu"] != "A100 PCIE" || !strings.HasPrefix(out["price-per-hour"], "0.7") {
		t.Fatalf("outputs %v", out)
	}
	live := fake.Live()
	if len(live) != 1 || !strings.Contains(live[0].Label, "crabbox:action:"+out["lease-id"]+":") {
		t.Fatalf("vast instances %+v", live)
	}

	id := w.gh.QueueJob(githubtest.JobSpec{Repo: actionRepo, Labels: []string{out["label"]}, Script: "nvidia-smi"})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	job, err := w.gh.WaitJob(ctx, id, githubtest.StatusCompleted)
	cancel()
	if err != nil || job.Conclusion != "success" || job.RunnerName != out["runner-name"] {
		t.Fatalf("job %+v: %v", job, err)
	}

	stop := w.step(map[string]string{"mode": "stop", "label": out["label"]})
	if stop.code != 0 || stop.outputs["provider"] != "vast" || stop.outputs["cost"] == "" {
		t.Fatalf("stop: exit %d, outputs %v", stop.code, stop.outputs)
	}
	if live := fake.Live(); len(live) != 0 {
		t.Fatalf("vast instances left: %+v", live)
	}
	if rs := w.gh.Runners(); len(rs) != 0 {
		t.Fatalf("runners left: %+v", rs)
	}
}

// TestActionHedgeWithVast starts with hedge-after against a fake Vast whose
// first host never boots: a second host from the other offer races it, its
// runner serves the job, the first host is destroyed before start returns,
// and never are more than two hosts live.
func TestActionHedgeWithVast(t *testing.T) {
	w, fake := twoOffersOnVast(t, 9100001, true)

	// The fake's live instances, sampled while start runs.
	stopSampling := make(chan struct{})
	peak := make(chan int)
	go func() {
		most := 0
		for {
			most = max(most, len(fake.Live()))
			select {
			case <-stopSampling:
				peak <- most
				return
			case <-time.After(10 * time.Millisecond):
			}
		}
	}()
	start := w.step(map[string]string{"mode": "start", "gpu": "A100", "max-price": "2", "timeout": "2m", "hedge-after": "1s", "max-lifetime": "1h"})
	close(stopSampling)
	if most := <-peak; most > 2 {
		t.Fatalf("%d instances live at once", most)
	}
	if start.code != 0 {
		t.Fatalf("start: exit %d", start.code)
	}
	out := start.outputs
	// The hedge, on the dearer offer, won.
	if !strings.HasPrefix(out["price-per-hour"], "0.9") {
		t.Fatalf("outputs %v", out)
	}
	live := fake.Live()
	if len(live) != 1 || live[0].OfferID != 9100002 || strconv.FormatInt(live[0].ID, 10) != out["instance-id"] {
		t.Fatalf("vast instances after start %+v (outputs %v)", live, out)
	}
	if !strings.Contains(start.stdout, "the hedge won") {
		t.Fatalf("start's log does not say the hedge won:\n%s", start.stdout)
	}
	if !strings.Contains(start.summary, "Hedged start: a second host was started") || !strings.Contains(start.summary, "the hedge won; the first host was destroyed after") {
		t.Fatalf("start's summary:\n%s", start.summary)
	}

	id := w.gh.QueueJob(githubtest.JobSpec{Repo: actionRepo, Labels: []string{out["label"]}, Script: "nvidia-smi"})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	job, err := w.gh.WaitJob(ctx, id, githubtest.StatusCompleted)
	cancel()
	if err != nil || job.Conclusion != "success" || job.RunnerName != out["runner-name"] {
		t.Fatalf("job %+v: %v", job, err)
	}
	stop := w.step(map[string]string{"mode": "stop", "label": out["label"]})
	if stop.code != 0 {
		t.Fatalf("stop: exit %d", stop.code)
	}
	if live := fake.Live(); len(live) != 0 {
		t.Fatalf("vast instances left: %+v", live)
	}
	if rs := w.gh.Runners(); len(rs) != 0 {
		t.Fatalf("runners left: %+v", rs)
	}
}

// A host that never boots is replaced at the boot timeout, not held until
// start's timeout: start succeeds on the next offer without hedging.
func TestActionBootTimeoutReplacesANeverBootingHost(t *testing.T) {
	w, fake := twoOffersOnVast(t, 9200001, true)

	start := w.step(map[string]string{"mode": "start", "gpu": "A100", "max-price": "2", "timeout": "5m", "boot-timeout": "20s", "max-lifetime": "1h"})
	if start.code != 0 {
		t.Fatalf("start: exit %d\n%s", start.code, start.stdout)
	}
	out := start.outputs
	if !strings.HasPrefix(out["price-per-hour"], "0.9") {
		t.Fatalf("outputs %v", out)
	}
	if live := fake.Live(); len(live) != 1 || live[0].OfferID != 9200002 {
		t.Fatalf("vast instances after start %+v", live)
	}
	if !strings.Contains(start.stdout, "offer 9200001 failed: host not reachable over SSH (last: instance 20000001 is pending): boot timeout: no runner online 20s after this host's creation") {
		t.Fatalf("start's log does not say why the first host went:\n%s", start.stdout)
	}
	stop := w.step(map[string]string{"mode": "stop", "label": out["label"]})
	if stop.code != 0 || len(fake.Live()) != 0 || len(w.gh.Runners()) != 0 {
		t.Fatalf("stop: exit %d; left %+v and %+v", stop.code, fake.Live(), w.gh.Runners())
	}
}

// A start killed mid-race (the runner's kill, not its interrupt) leaves two
// hosts with the lease's marker: stop destroys both and reports what both
// cost, not one.
func TestActionStopDestroysEveryHostOfTheLease(t *testing.T) {
	w, fake := twoOffersOnVast(t, 9300001, false)
	start := w.step(map[string]string{"mode": "start", "gpu": "A100", "max-price": "2", "timeout": "2m", "max-lifetime": "1h"})
	if start.code != 0 {
		t.Fatalf("start: exit %d", start.code)
	}
	// The second host, as the killed start's other lane rented it: the
	// same create call, with the lease's marker, on the other offer.
	creates := fake.RequestsFor(vasttest.OpCreate)
	if len(creates) != 1 {
		t.Fatalf("%d creates", len(creates))
	}
	req, err := http.NewRequest(http.MethodPut, fake.URL()+"/api/v0/asks/9300002/", bytes.NewReader(creates[0].Body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+actionVastKey)
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if live := fake.Live(); resp.StatusCode != http.StatusOK || len(live) != 2 || live[0].Label != live[1].Label {
		t.Fatalf("second create: %s; live %+v", resp.Status, live)
	}
	time.Sleep(1100 * time.Millisecond) // a second of run time for both

	stop := w.step(map[string]string{"mode": "stop", "label": start.outputs["label"]})
	if stop.code != 0 {
		t.Fatalf("stop: exit %d\n%s", stop.code, stop.stdout)
	}
	if live := fake.Live(); len(live) != 0 {
		t.Fatalf("vast instances left: %+v", live)
	}
	out := stop.outputs
	if out["instance-id"] != start.outputs["instance-id"] || !strings.Contains(stop.stdout, "with 1 other host(s) a cut-short start left, all destroyed") {
		t.Fatalf("stop outputs %v\n%s", out, stop.stdout)
	}
	if strings.Count(stop.summary, "| vast | A100 PCIE |") != 2 || !strings.Contains(stop.summary, "| $0.91 |") {
		t.Fatalf("stop summary:\n%s", stop.summary)
	}
}

// twoOffersOnVast is an Action world on a fake Vast of two A100 offers, ids
// first and first+1 ($0.70 and $0.90 an hour), whose first host never
// boots when neverBootFirst.
func twoOffersOnVast(t *testing.T, first int64, neverBootFirst bool) (*actionWorld, *vasttest.Server) {
	w := newActionWorld(t, false, nil, nil)
	offer := func(id int64, price float64) vasttest.Offer {
		return vasttest.Offer{ID: id, MachineID: 900 + id%100, GPUName: "A100 PCIE", NumGPUs: 1, GPURAM: 40960, DphBase: price, StorageCost: 0.2,
			Reliability: 0.99, Geolocation: "Texas, US", DirectPortCount: 20, DiskSpace: 500, CUDAMaxGood: 12.6}
	}
	fake := vasttest.New(vasttest.Options{APIKey: actionVastKey, Dir: filepath.Join(w.dir, "vast"), Offers: []vasttest.Offer{offer(first, 0.70), offer(first+1, 0.90)}, Logf: t.Logf,
		Behavior: func(seq int, _ vasttest.Offer, _ string) vasttest.Behavior {
			return vasttest.Behavior{NeverBoot: neverBootFirst && seq == 1}
		}})
	t.Cleanup(fake.Close)
	w.onVast(fake)
	return w, fake
}

// onVast points the world's steps at the fake Vast through the real
// provider factory: the fake's hosts are this user's sshd on loopback,
// which the Action refuses otherwise (action_endpoints_test.go); only polls
// and spies are tuned.
func (w *actionWorld) onVast(fake *vasttest.Server) {
	w.t.Helper()
	u, err := user.Current()
	if err != nil {
		w.t.Fatal(err)
	}
	w.provider = "vast"
	w.env = map[string]string{"CRABBOX_VAST_API_URL": fake.URL(), "CRABBOX_ALLOW_PRIVATE_ENDPOINTS": "true"}
	actionConfigHook = func(c *config.Config) {
		c.Providers.Vast.SSHUser = u.Username
		c.Providers.Vast.MinRequestInterval = 2 * time.Millisecond
	}
	w.t.Cleanup(func() { actionConfigHook = nil })
	actionHook = func(env *action.Env) {
		env.Tune = func(c *provisioner.Config) {
			c.PollInterval = 100 * time.Millisecond
			c.GitHub = jitSpy{c.GitHub, w.spy}
			c.Bootstrapper = keySpy{c.Bootstrapper, w.spy}
		}
	}
}
