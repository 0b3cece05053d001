package main

import (
	"cmp"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/crabbox/crabbox-runner/github/githubtest"
	"github.com/crabbox/crabbox-runner/providers/lambda"
	"github.com/crabbox/crabbox-runner/providers/lambda/lambdatest"
	"github.com/crabbox/crabbox-runner/providers/vast"
	"github.com/crabbox/crabbox-runner/providers/vast/vasttest"
	"github.com/crabbox/crabbox-runner/provisioner"
)

// Fault rates of the reliability run. docs/reliability.md states them with
// the results; change both together.
var faultRates = struct {
	API429, API5xx, APIDrop, APILostAnswer float64 // per provider API call
	LambdaCapacity                         float64 // per Lambda launch
	VastNeverBoot, VastBrokenGPU           float64 // per Vast host
	LambdaStuck, LambdaBrokenGPU           float64 // per Lambda host
	HookDrop, HookDup                      float64 // per webhook delivery
}{
	API429: 0.10, API5xx: 0.05, APIDrop: 0.03, APILostAnswer: 0.02,
	LambdaCapacity: 0.25,
	VastNeverBoot:  0.15, VastBrokenGPU: 0.10,
	LambdaStuck: 0.10, LambdaBrokenGPU: 0.10,
	HookDrop: 0.10, HookDup: 0.15,
}

// faultProxy stands between serve and a fake cloud and breaks a share of
// the calls the way networks and APIs break: 429s, 5xx, connections cut
// before the call reaches the cloud, and answers lost after it acted.
type faultProxy struct {
	rp     *httputil.ReverseProxy
	lambda bool

	mu     sync.Mutex
	rng    *rand.Rand
	counts map[string]int
}

func newFaultProxy(target string, lambda bool, seed uint64) *faultProxy {
	u, _ := url.Parse(target)
	return &faultProxy{rp: httputil.NewSingleHostReverseProxy(u), lambda: lambda,
		rng: rand.New(rand.NewPCG(seed, 1)), counts: map[string]int{}}
}

func (p *faultProxy) roll() float64 {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.rng.Float64()
}

func (p *faultProxy) count(kind string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.counts[kind]++
}

func (p *faultProxy) Counts() map[string]int {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := map[string]int{}
	for k, v := range p.counts {
		out[k] = v
	}
	return out
}

func (p *faultProxy) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	p.count("calls")
	r0 := faultRates
	x := p.roll()
	switch {
	case x < r0.API429:
		p.count("429")
		http.Error(w, "API requests too frequent", http.StatusTooManyRequests)
		return
	case x < r0.API429+r0.API5xx:
		p.count("5xx")
		http.Error(w, "Service Temporarily Unavailable", http.StatusServiceUnavailable)
		return
	case x < r0.API429+r0.API5xx+r0.APIDrop:
		p.count("dropped")
		cut(w)
		return
	case x < r0.API429+r0.API5xx+r0.APIDrop+r0.APILostAnswer:
		// The cloud acts; its answer never arrives.
		p.count("lost_answer")
		p.rp.ServeHTTP(httptest.NewRecorder(), r)
		cut(w)
		return
	}
	if p.lambda && r.Method == http.MethodPost && strings.HasSuffix(r.URL.Path, "/instance-operations/launch") && p.roll() < r0.LambdaCapacity {
		p.count("capacity")
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusBadRequest)
		fmt.Fprint(w, `{"error":{"code":"instance-operations/launch/insufficient-capacity","message":"Not enough capacity to fulfill launch request."}}`)
		return
	}
	p.rp.ServeHTTP(w, r)
}

// cut closes the connection without an answer.
func cut(w http.ResponseWriter) {
	if hj, ok := w.(http.Hijacker); ok {
		if conn, _, err := hj.Hijack(); err == nil {
			conn.Close()
			return
		}
	}
	panic(http.ErrAbortHandler)
}

// The fakes inject, at the rates above, 429s, 5xx, cut connections, lost
// answers, capacity errors, hosts that never boot, broken GPUs, and lost,
// duplicated and reordered webhooks. Every job must still be served, and
// nothing may be left running.
func TestReliabilityUnderFaults(t *testing.T) {
	if testing.Short() {
		t.Skip("a minute-long run under injected faults")
	}
	seed := uint64(time.Now().UnixNano())
	if s := os.Getenv("CRABBOX_FAULT_SEED"); s != "" {
		fmt.Sscan(s, &seed)
	}
	t.Logf("fault seed %d (set CRABBOX_FAULT_SEED to replay)", seed)
	rng := rand.New(rand.NewPCG(seed, 2))
	var rngMu sync.Mutex
	roll := func() float64 {
		rngMu.Lock()
		defer rngMu.Unlock()
		return rng.Float64()
	}
	dir := t.TempDir()
	hostFaults := map[string]int{}
	var hfMu sync.Mutex
	hostFault := func(kind string) {
		hfMu.Lock()
		defer hfMu.Unlock()
		hostFaults[kind]++
	}

	var offers []vasttest.Offer
	for i := int64(0); i < 12; i++ {
		offers = append(offers, vasttest.Offer{ID: 7000100 + i, MachineID: 700 + i, HostID: 70 + i, GPUName: "A100 SXM4", NumGPUs: 1,
			GPURAM: 81920, DphBase: 1.00 + float64(i)/20, StorageCost: 0.2, Reliability: 0.995, Geolocation: "Oregon, US",
			DirectPortCount: 64, DiskSpace: 1000, CUDAMaxGood: 12.8})
	}
	vfake := vasttest.New(vasttest.Options{Dir: filepath.Join(dir, "vast"), Offers: offers,
		LoadingAfter: 50 * time.Millisecond, RunningAfter: 200 * time.Millisecond,
		Behavior: func(seq int, o vasttest.Offer, _ string) vasttest.Behavior {
			x := roll()
			switch {
			case x < faultRates.VastNeverBoot:
				hostFault("vast_never_boots")
				return vasttest.Behavior{NeverBoot: true}
			case x < faultRates.VastNeverBoot+faultRates.VastBrokenGPU:
				hostFault("vast_broken_gpu")
				return vasttest.Behavior{BrokenGPU: true}
			}
			return vasttest.Behavior{}
		}})
	t.Cleanup(vfake.Close)
	lfake := lambdatest.New(t, lambdatest.Options{BootDelay: 200 * time.Millisecond,
		Behavior: func(seq int, req lambdatest.LaunchRequest) lambdatest.Behavior {
			x := roll()
			switch {
			case x < faultRates.LambdaStuck:
				hostFault("lambda_stuck_booting")
				return lambdatest.Behavior{StuckBooting: true}
			case x < faultRates.LambdaStuck+faultRates.LambdaBrokenGPU:
				hostFault("lambda_broken_gpu")
				return lambdatest.Behavior{BrokenGPU: true}
			}
			return lambdatest.Behavior{}
		}})
	vproxy := newFaultProxy(vfake.URL(), false, seed+3)
	lproxy := newFaultProxy(lfake.URL(), true, seed+4)
	vsrv, lsrv := httptest.NewServer(vproxy), httptest.NewServer(lproxy)
	t.Cleanup(vsrv.Close)
	t.Cleanup(lsrv.Close)

	me := lambdatest.CurrentUser()
	vp, err := vast.New(vast.Config{APIKey: vasttest.DefaultAPIKey, APIURL: vsrv.URL, MinRequestInterval: -1, SSHUser: me,
		Timeout: 5 * time.Second, Retry: vast.Retry{MaxRetries: 8, Initial: 20 * time.Millisecond, Max: 200 * time.Millisecond}})
	if err != nil {
		t.Fatal(err)
	}
	lp, err := lambda.New(lambda.Options{APIKey: lfake.APIKey(), APIURL: lsrv.URL, MinRequestInterval: time.Millisecond,
		LaunchInterval: 20 * time.Millisecond, SSHUser: me, SSHAddress: lfake.SSHAddress, Timeout: 5 * time.Second,
		Retry: lambda.RetryPolicy{InitialInterval: 20 * time.Millisecond, MaxInterval: 200 * time.Millisecond, MaxAttempts: 8}})
	if err != nil {
		t.Fatal(err)
	}

	e := &e2e{t: t, logs: &syncBuffer{}, spy: &secretSpy{}, exit: make(chan int, 1)}
	e.gh = githubtest.New(githubtest.Options{Tokens: []string{testToken}, OnlineTimeout: 5 * time.Second})
	t.Cleanup(e.gh.Close)
	hooks := map[string]int{}
	var hooksMu sync.Mutex
	e.gh.SetDropDeliveries(func(d githubtest.Delivery) bool {
		if d.Redelivery || roll() >= faultRates.HookDrop {
			return false
		}
		hooksMu.Lock()
		hooks["dropped"]++
		hooksMu.Unlock()
		return true
	})
	// Deliveries go out in shuffled batches, some twice.
	e.gh.HoldDeliveries(true)
	stopShuffle := make(chan struct{})
	shuffled := make(chan struct{})
	go func() {
		defer close(shuffled)
		for {
			select {
			case <-stopShuffle:
				e.gh.HoldDeliveries(false)
				return
			case <-time.After(300 * time.Millisecond):
			}
			e.gh.ReleaseDeliveries(func(ds []githubtest.Delivery) []githubtest.Delivery {
				rngMu.Lock()
				rng.Shuffle(len(ds), func(i, j int) { ds[i], ds[j] = ds[j], ds[i] })
				rngMu.Unlock()
				out := ds
				for _, d := range ds {
					if roll() < faultRates.HookDup {
						out = append(out, d)
						hooksMu.Lock()
						hooks["duplicated"]++
						hooksMu.Unlock()
					}
				}
				if len(ds) > 1 {
					hooksMu.Lock()
					hooks["reordered_batches"]++
					hooksMu.Unlock()
				}
				return out
			})
		}
	}()
	defer func() {
		select {
		case <-shuffled:
		default:
			close(stopShuffle)
			<-shuffled
		}
	}()

	_, sum, err := githubtest.RunnerTarball("2.330.0")
	if err != nil {
		t.Fatal(err)
	}
	e.dbPath = filepath.Join(dir, "serve.db")
	cfgPath := filepath.Join(dir, "crabbox-runner.yaml")
	// Passes every second stand for passes every minute: the reconcile's
	// ceiling of background requests a minute would hold back most of
	// them (and the gc that cleans up), so it is off here; the cost tests
	// measure it (reconcile_cost_test.go).
	os.WriteFile(cfgPath, []byte(fmt.Sprintf(`deployment: faults
database_url: sqlite:%s
log: {level: debug, format: json}
runner: {version: "2.330.0", url: %q, sha256: %q}
github: {scopes: [acme], background_requests_per_minute: -1}
reconcile: {interval: 1s, gc_interval: 3s}
providers: {vast: {allow_private_endpoints: true}, lambda: {allow_private_endpoints: true}}
classes:
  - name: a100
    labels: [self-hosted, linux, x64, crabbox, a100]
    gpu: {name: A100, count: 1, min_memory_gb: 40}
    providers: [vast, lambda]
    max_price_per_hour: 3
    boot_timeout: 60s
    idle_timeout: 5m
    max_lifetime: 30m
`, e.dbPath, e.gh.TarballURLTemplate(), sum)), 0o600)
	env := map[string]string{"CRABBOX_CONFIG": cfgPath, "CRABBOX_WEBHOOK_SECRET": testSecret,
		"CRABBOX_GITHUB_TOKEN": testToken, "CRABBOX_GITHUB_API_URL": e.gh.URL(),
		"VAST_API_KEY": "unused", "LAMBDA_API_KEY": "unused"}
	addr := freeAddr(t)
	e.url = "http://" + addr
	serveHook = func(o *appOptions) {
		o.Providers = map[string]provisioner.Provider{"vast": vp, "lambda": lp}
		o.Tune = func(c *provisioner.Config) {
			c.PollInterval = 100 * time.Millisecond
			c.QueuePollInterval = 50 * time.Millisecond
		}
	}
	t.Cleanup(func() { serveHook = nil })
	e.runServe(addr, env)
	// A failure (a timing one seldom replays from its seed) leaves serve's
	// whole log and the leases where CI keeps its artifacts.
	t.Cleanup(func() {
		if !t.Failed() {
			return
		}
		dir := cmp.Or(os.Getenv("CRABBOX_TEST_ARTIFACTS"), filepath.Join(os.TempDir(), "crabbox-runner-test-artifacts"))
		leases, _ := json.MarshalIndent(e.leasesQuiet(), "", " ")
		path := filepath.Join(dir, fmt.Sprintf("reliability-%d.log", seed))
		if os.MkdirAll(dir, 0o755) == nil && os.WriteFile(path, []byte(e.logs.String()+"\nleases:\n"+string(leases)+"\n"), 0o644) == nil {
			t.Logf("serve's log and the leases: %s", path)
		}
	})

	start := time.Now()
	const jobs = 12
	var ids []int64
	for i := 0; i < jobs; i++ {
		ids = append(ids, e.gh.QueueJob(githubtest.JobSpec{Repo: "acme/vision", Org: "acme",
			Labels: []string{"self-hosted", "crabbox", "a100"}, Name: fmt.Sprintf("shard-%d", i), Script: "sleep 1; echo ok"}))
	}
	for _, id := range ids {
		e.waitFor(fmt.Sprintf("job %d served", id), 4*time.Minute, func() bool {
			j, _ := e.gh.Job(id)
			return j.Status == githubtest.StatusCompleted
		})
	}
	served := time.Since(start)
	close(stopShuffle)
	<-shuffled
	e.waitFor("nothing left running", 3*time.Minute, func() bool {
		if len(vfake.Live()) != 0 || len(lfake.Live()) != 0 || len(e.gh.Runners()) != 0 {
			return false
		}
		for _, l := range e.leases() {
			if l.State != provisioner.StateReleased {
				return false
			}
		}
		return true
	})
	clean := time.Since(start)

	failed := 0
	for _, id := range ids {
		if j, _ := e.gh.Job(id); j.Conclusion != "success" {
			failed++
		}
	}
	if failed > 0 {
		t.Errorf("%d of %d jobs did not succeed", failed, jobs)
	}
	leases := e.leases()
	leaseErrors := map[string]int{}
	for _, l := range leases {
		switch {
		case l.Error == "":
		case strings.Contains(l.Error, "GPU"):
			leaseErrors["gpu_check_failed"]++
		case strings.Contains(l.Error, "boot timeout"):
			leaseErrors["boot_timeout"]++
		case strings.Contains(l.Error, "failed to boot"):
			leaseErrors["host_failed"]++
		default:
			msg := l.Error
			if len(msg) > 100 {
				msg = msg[:100]
			}
			leaseErrors["other: "+msg]++
		}
	}
	hooksMu.Lock()
	hfMu.Lock()
	report := map[string]any{
		"seed": seed, "jobs": jobs, "jobs_succeeded": jobs - failed,
		"leases": len(leases), "lease_failures": leaseErrors,
		"vast_hosts_created": len(vfake.Instances()), "lambda_launches": len(lfake.Launches()),
		"vast_api_faults": vproxy.Counts(), "lambda_api_faults": lproxy.Counts(),
		"host_faults": hostFaults, "webhook_faults": hooks,
		"deliveries":         len(e.gh.Deliveries()),
		"all_served_after_s": served.Seconds(), "all_clean_after_s": clean.Seconds(),
		"left_running": len(vfake.Live()) + len(lfake.Live()),
	}
	hfMu.Unlock()
	hooksMu.Unlock()
	js, _ := json.MarshalIndent(report, "", "  ")
	t.Logf("reliability report:\n%s", js)
	if p := os.Getenv("CRABBOX_RELIABILITY_REPORT"); p != "" {
		os.WriteFile(p, js, 0o644)
	}
	if p := os.Getenv("CRABBOX_RELIABILITY_LOG"); p != "" {
		os.WriteFile(p, []byte(e.logs.String()), 0o644) // serve's whole log, to trace a run
	}
	if v := lfake.Violations(); len(v) > 0 {
		t.Errorf("requests or answers outside Lambda's OpenAPI document: %v", v)
	}
}
