package main

import (
	"fmt"
	"net/http"
	"os"
	"os/user"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/crabbox/crabbox-runner/github/githubtest"
	"github.com/crabbox/crabbox-runner/providers/vast/vasttest"
	"github.com/crabbox/crabbox-runner/provisioner"
)

const testVastKey = "vast_e2eKeyThatMustNeverBeLogged0001"

// vastE2E is a serve run whose class rents from the fake Vast through the
// real provider factory; the e2e helpers of serve_test.go drive it.
type vastE2E struct {
	*e2e
	vast *vasttest.Server
}

// The market of the story, cheapest first. Offers 1 to 3 fit the class;
// the rest are cheaper traps that must never be rented.
var vastE2EMarket = []vasttest.Offer{
	{ID: 8000001, MachineID: 801, GPUName: "A100 PCIE", NumGPUs: 1, GPURAM: 40960, DphBase: 0.55, StorageCost: 0.2, Reliability: 0.99, Geolocation: "Texas, US", DirectPortCount: 20, DiskSpace: 500, CUDAMaxGood: 12.6},
	{ID: 8000002, MachineID: 802, GPUName: "A100 PCIE", NumGPUs: 1, GPURAM: 40960, DphBase: 0.65, StorageCost: 0.2, Reliability: 0.99, Geolocation: "Quebec, CA", DirectPortCount: 20, DiskSpace: 500, CUDAMaxGood: 12.6},
	{ID: 8000003, MachineID: 803, GPUName: "A100 SXM4", NumGPUs: 1, GPURAM: 81920, DphBase: 0.90, StorageCost: 0.2, Reliability: 0.995, Geolocation: "Oregon, US", DirectPortCount: 64, DiskSpace: 1000, CUDAMaxGood: 12.8},
	{ID: 8000004, MachineID: 804, GPUName: "A100 SXM4", NumGPUs: 1, GPURAM: 81920, DphBase: 1.20, StorageCost: 0.2, Reliability: 0.995, Geolocation: "Oregon, US", DirectPortCount: 64, DiskSpace: 1000, CUDAMaxGood: 12.8},
	{ID: 8000005, MachineID: 805, GPUName: "RTX 4090", NumGPUs: 1, GPURAM: 24564, DphBase: 0.30, StorageCost: 0.1, Reliability: 0.99, Geolocation: "Texas, US", DirectPortCount: 20, DiskSpace: 500, CUDAMaxGood: 12.8},
	{ID: 8000006, MachineID: 806, GPUName: "A100 PCIE", NumGPUs: 1, GPURAM: 40960, DphBase: 0.40, StorageCost: 0.2, Reliability: 0.99, Unverified: true, Geolocation: "Texas, US", DirectPortCount: 20, DiskSpace: 500, CUDAMaxGood: 12.6},
	{ID: 8000007, MachineID: 807, GPUName: "A100 PCIE", NumGPUs: 1, GPURAM: 40960, DphBase: 0.45, StorageCost: 0.2, Reliability: 0.99, Geolocation: "Texas, US", DirectPortCount: 0, DiskSpace: 500, CUDAMaxGood: 12.6},
	{ID: 8000008, MachineID: 808, GPUName: "A100 PCIE", NumGPUs: 1, GPURAM: 40960, DphBase: 0.50, StorageCost: 0.2, Reliability: 0.70, Geolocation: "Texas, US", DirectPortCount: 20, DiskSpace: 500, CUDAMaxGood: 12.6},
	{ID: 8000009, MachineID: 809, GPUName: "A100X", NumGPUs: 1, GPURAM: 81920, DphBase: 0.52, StorageCost: 0.2, Reliability: 0.99, Geolocation: "Texas, US", DirectPortCount: 20, DiskSpace: 500, CUDAMaxGood: 12.8},
}

// startServeVast runs the real `crabbox-runner serve` with a class whose
// providers is [vast]: VAST_API_KEY and CRABBOX_VAST_API_URL point at the
// fake, and the provider is built by its factory from the config.
func startServeVast(t *testing.T, bootTimeout string, behave func(seq int, o vasttest.Offer, label string) vasttest.Behavior) *vastE2E {
	t.Helper()
	return startServeVastWith(t, bootTimeout, behave, true)
}

// startServeVastWith is startServeVast with providers.vast.allow_private_endpoints
// as given: the fake's hosts are on loopback, so without it none is dialled
// (serve_endpoints_test.go).
func startServeVastWith(t *testing.T, bootTimeout string, behave func(seq int, o vasttest.Offer, label string) vasttest.Behavior, allowPrivate bool) *vastE2E {
	t.Helper()
	return startServeVastOpts(t, vastE2EOptions{bootTimeout: bootTimeout, behave: behave, allowPrivate: allowPrivate, relistAfter: time.Minute})
}

// vastE2EOptions are startServeVastOpts's settings.
type vastE2EOptions struct {
	bootTimeout  string
	behave       func(seq int, o vasttest.Offer, label string) vasttest.Behavior
	allowPrivate bool
	// relistAfter is the fake's vasttest.Options.RelistAfter.
	relistAfter time.Duration
	// extraConfig is appended to the config file (top-level keys).
	extraConfig string
	// market, when set, is the fake's offers instead of vastE2EMarket;
	// classes the config's classes block instead of the one A100 class.
	market  []vasttest.Offer
	classes string
	// runningAfter is the fake's vasttest.Options.RunningAfter (0: its
	// default): how long a new instance stays "loading".
	runningAfter time.Duration
}

// startServeVastOpts is startServeVast with every setting given.
func startServeVastOpts(t *testing.T, o vastE2EOptions) *vastE2E {
	t.Helper()
	bootTimeout, behave, allowPrivate := o.bootTimeout, o.behave, o.allowPrivate
	if _, err := os.Stat("/usr/sbin/sshd"); err != nil {
		if os.Getenv("CI") != "" {
			t.Fatal("/usr/sbin/sshd missing in CI: install openssh-server")
		}
		t.Skip("/usr/sbin/sshd missing: install openssh-server")
	}
	dir := t.TempDir()
	u, err := user.Current()
	if err != nil {
		t.Fatal(err)
	}
	e := newServeE2E(t)
	// A destroyed host's machine stays off the market for a while
	// (startServeVastWith: for the test), as a real one does, so the job
	// is re-leased on another offer.
	market := vastE2EMarket
	if o.market != nil {
		market = o.market
	}
	fake := vasttest.New(vasttest.Options{APIKey: testVastKey, Dir: filepath.Join(dir, "vast"), Offers: market,
		Behavior: behave, RelistAfter: o.relistAfter, RunningAfter: o.runningAfter, Logf: t.Logf})
	t.Cleanup(fake.Close)
	_, sum, err := githubtest.RunnerTarball("2.330.0")
	if err != nil {
		t.Fatal(err)
	}
	e.dbPath = filepath.Join(dir, "serve.db")
	cfgPath := filepath.Join(dir, "crabbox-runner.yaml")
	cfg := fmt.Sprintf(`deployment: e2e
database_url: sqlite:%s
log: {level: debug, format: json}
runner:
  version: "2.330.0"
  url: %s
  sha256: %q
providers:
  vast:
    ssh_user: %s
    min_request_interval: 2ms
    allow_private_endpoints: %t
`, e.dbPath, e.gh.TarballURLTemplate(), sum, u.Username, allowPrivate)
	if o.classes != "" {
		cfg += o.classes
	} else {
		cfg += vastA100Class(bootTimeout, "5m", "30m")
	}
	cfg += o.extraConfig
	if e2eConfigTweak != nil {
		cfg = e2eConfigTweak(cfg)
	}
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	env := map[string]string{
		"CRABBOX_CONFIG":         cfgPath,
		"CRABBOX_WEBHOOK_SECRET": testSecret,
		"CRABBOX_GITHUB_TOKEN":   testToken,
		"CRABBOX_GITHUB_API_URL": e.gh.URL(),
		"VAST_API_KEY":           testVastKey,
		"CRABBOX_VAST_API_URL":   fake.URL(),
	}
	e.cfgPath, e.env = cfgPath, env
	addr := freeAddr(t)
	e.url = "http://" + addr
	serveHook = func(o *appOptions) {
		// No Providers here: serve builds the vast provider from the config.
		o.Tune = func(c *provisioner.Config) {
			c.PollInterval = 100 * time.Millisecond
			c.QueuePollInterval = 50 * time.Millisecond
			c.GitHub = spyGitHub{c.GitHub, e.spy}
			c.Bootstrapper = spyBootstrapper{c.Bootstrapper, e.spy}
			if e2eTune != nil {
				e2eTune(c)
			}
		}
	}
	t.Cleanup(func() { serveHook = nil })
	e.runServe(addr, env)
	return &vastE2E{e2e: e, vast: fake}
}

// TestServeVast is the story of a Vast job: queued; the cheapest fitting
// offer vanishes at create (410), so the next one is rented; that host
// never boots, so the lease fails at its boot timeout and the job gets a
// new lease, which avoids the bad machine and rents the next offer; that
// host is bootstrapped over SSH with the lease's key, runs the job, and is
// destroyed when the job completes. Nothing is left running.
func TestServeVast(t *testing.T) {
	started := time.Now()
	e := startServeVast(t, "15s", func(seq int, o vasttest.Offer, _ string) vasttest.Behavior {
		return vasttest.Behavior{NeverBoot: o.MachineID == 802}
	})
	e.vast.Vanish(8000001, http.StatusGone)
	e.vast.FailNext(vasttest.OpSearch, vasttest.TooFrequent) // a 429 on the way
	// The job fails unless it runs on the rented host's (fake) A100 SXM4.
	id := e.gh.QueueJob(githubtest.JobSpec{Repo: "acme/vision", Org: "acme", Labels: []string{"self-hosted", "crabbox", "A100"},
		Name: "train", Script: `nvidia-smi --query-gpu=name --format=csv,noheader | grep -q "A100 SXM4" && echo trained`})
	job := e.waitJob(id)
	if job.Conclusion != "success" || !strings.HasPrefix(job.RunnerName, "crabbox-e2e-") {
		t.Fatalf("job: conclusion %q runner %q", job.Conclusion, job.RunnerName)
	}
	took := time.Since(started)
	e.waitFor("every Vast instance destroyed and runner removed", 60*time.Second, func() bool {
		return len(e.vast.Live()) == 0 && len(e.gh.Runners()) == 0
	})
	e.waitFor("both leases released", 30*time.Second, func() bool {
		ls := e.leases()
		return len(ls) == 2 && ls[0].State == provisioner.StateReleased && ls[1].State == provisioner.StateReleased
	})
	// Every HTTP attempt to Vast is counted by route template (#14): the
	// vanished offer's 410, the two creates that rented, the 429.
	metrics := e.get("/metrics")
	for _, want := range []string{
		`crabbox_provider_requests_total{endpoint="PUT /api/v0/asks/{id}/",provider="vast",status="410"} 1`,
		`crabbox_provider_requests_total{endpoint="PUT /api/v0/asks/{id}/",provider="vast",status="200"} 2`,
		`crabbox_provider_requests_total{endpoint="POST /api/v0/bundles/",provider="vast",status="429"} 1`,
		`crabbox_provider_requests_total{endpoint="DELETE /api/v0/instances/{id}/",provider="vast",status="200"} 2`,
	} {
		if !strings.Contains(metrics, want) {
			t.Errorf("/metrics lacks %s\n%s", want, grepLines(metrics, "crabbox_provider_requests_total"))
		}
	}
	e.stop()
	t.Logf("queued to completed: %s", took.Round(10*time.Millisecond))

	ls := e.leases()
	failed, good := ls[0], ls[1]
	if !strings.Contains(failed.Error, "boot timeout") || failed.OfferID != "8000002" || failed.MachineID != "802" {
		t.Errorf("first lease: %+v", failed)
	}
	if good.BoundJobID != id || good.OfferID != "8000003" || good.GPU != "A100 SXM4" || good.Provider != "vast" ||
		good.PricePerHour != 0.911111 || good.MachineID != "803" {
		t.Errorf("second lease: %+v", good)
	}

	// Created: the vanished offer (refused), the dead host, the good host;
	// never a trap, never the dearer 8000004.
	var paths []string
	for _, r := range e.vast.RequestsFor(vasttest.OpCreate) {
		paths = append(paths, r.Path)
	}
	if want := "/api/v0/asks/8000001/ /api/v0/asks/8000002/ /api/v0/asks/8000003/"; strings.Join(paths, " ") != want {
		t.Errorf("creates %v, want %s", paths, want)
	}
	insts := e.vast.Instances()
	if len(insts) != 2 {
		t.Fatalf("instances %+v", insts)
	}
	for i, in := range insts {
		lease := ls[i]
		m, ok := provisioner.ParseMarker(in.Label)
		if !in.Destroyed || !ok || m.Deployment != "e2e" || m.LeaseID != lease.ID || !m.Expires.Equal(lease.ExpiresAt.Truncate(time.Second)) {
			t.Errorf("instance %d: destroyed %v, label %q; lease %s expires %s", in.ID, in.Destroyed, in.Label, lease.ID, lease.ExpiresAt)
		}
		// Vast (the strict fake) refuses a key until the container
		// runs: the host that never booted never got one, the good host
		// got its lease's key once running.
		wantKeys := map[int]int{0: 0, 1: 1}[i]
		if !in.Direct || !strings.Contains(in.OnStart, ".no_auto_tmux") || len(in.Keys) != wantKeys || (wantKeys == 1 && !strings.HasPrefix(in.Keys[0], "ssh-")) {
			t.Errorf("instance %d: direct %v, keys %q, onstart %q", in.ID, in.Direct, in.Keys, in.OnStart)
		}
	}
	var refused int
	for _, r := range e.vast.RequestsFor(vasttest.OpAttach) {
		if r.Status == http.StatusBadRequest {
			refused++
		}
	}
	if refused < 2 {
		t.Errorf("%d key attaches refused before running; want at least one per host", refused)
	}
	if insts[1].OnStartError != "" {
		t.Errorf("onstart failed on the host: %s\n%s", insts[1].OnStartError, insts[1].OnStartOutput)
	}
	for _, r := range e.vast.Requests() {
		if !r.Authorized || strings.Contains(r.Query, "api_key") {
			t.Errorf("%s %s: authorized %v, query %q", r.Method, r.Path, r.Authorized, r.Query)
		}
	}

	// The key never reached the logs, not even redacted: nothing tried.
	logs := e.logs.String()
	if e.stateKey == "" {
		t.Error("serve made no state key beside its database")
	}
	for _, s := range append(e.spy.all(), testVastKey, testToken, testSecret, e.stateKey) {
		if strings.Contains(logs, s) {
			t.Errorf("a secret (%.6s…) appears in serve's logs", s)
		}
	}
	if strings.Contains(logs, "[REDACTED]") {
		t.Errorf("something tried to log a secret:\n%s", grepLines(logs, "[REDACTED]"))
	}
	for _, must := range []string{`"msg":"vast: instance created"`, `"msg":"vast: instance destroyed"`, `"offer_id":8000003`} {
		if !strings.Contains(logs, must) {
			t.Errorf("logs lack %s", must)
		}
	}
}

func grepLines(s, sub string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, sub) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}

// vastA100Class is the Vast harness's one class, an A100 on Vast, with its
// timers and any extra class lines (each without its indentation).
func vastA100Class(bootTimeout, idleTimeout, maxLifetime string, extra ...string) string {
	c := fmt.Sprintf(`classes:
  - name: a100
    labels: [self-hosted, linux, x64, crabbox, a100]
    gpu: {name: A100, count: 1, min_memory_gb: 40}
    providers: [vast]
    max_price_per_hour: 2.50
    min_reliability: 0.95
    disk_gb: 40
    boot_timeout: %s
    idle_timeout: %s
    max_lifetime: %s
`, bootTimeout, idleTimeout, maxLifetime)
	for _, l := range extra {
		c += "    " + l + "\n"
	}
	return c
}
