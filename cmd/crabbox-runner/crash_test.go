package main

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/crabbox/crabbox-runner/github/githubtest"
	"github.com/crabbox/crabbox-runner/providers/vast/vasttest"
	"github.com/crabbox/crabbox-runner/provisioner"
)

// TestMain lets a test run the real program in a child process (to kill
// it with SIGKILL): the test binary re-executed with CRABBOX_TEST_MAIN=1
// is crabbox-runner.
func TestMain(m *testing.M) {
	if os.Getenv("CRABBOX_TEST_MAIN") == "1" {
		main()
		return
	}
	os.Exit(m.Run())
}

// holdProxy sits between serve and the fake Vast so the test can stop the
// world at a chosen call: after a create was done but before its answer
// reaches serve, or before a destroy reaches Vast.
type holdProxy struct {
	rp *httputil.ReverseProxy

	mu           sync.Mutex
	holdCreate   bool
	holdDestroy  bool
	seen         chan string   // "create" or "destroy", once per hold
	release      chan struct{} // closed to let the held call go on
	destroysSeen int
}

func newHoldProxy(target string) *holdProxy {
	u, _ := url.Parse(target)
	p := &holdProxy{rp: httputil.NewSingleHostReverseProxy(u), seen: make(chan string, 4)}
	p.rp.ModifyResponse = func(resp *http.Response) error {
		r := resp.Request
		if r.Method == http.MethodPut && strings.HasPrefix(r.URL.Path, "/api/v0/asks/") && resp.StatusCode == 200 {
			p.mu.Lock()
			hold, rel := p.holdCreate, p.release
			p.holdCreate = false
			p.mu.Unlock()
			if hold {
				p.seen <- "create"
				<-rel // the instance exists; serve dies before it hears so
			}
		}
		return nil
	}
	return p
}

func (p *holdProxy) arm(create, destroy bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.holdCreate, p.holdDestroy = create, destroy
	p.release = make(chan struct{})
}

func (p *holdProxy) letGo() {
	p.mu.Lock()
	defer p.mu.Unlock()
	close(p.release)
}

func (p *holdProxy) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method == http.MethodDelete && strings.HasPrefix(r.URL.Path, "/api/v0/instances/") {
		p.mu.Lock()
		hold, rel := p.holdDestroy, p.release
		p.holdDestroy = false
		p.mu.Unlock()
		if hold {
			p.seen <- "destroy"
			<-rel
			return // never reaches Vast: the release was cut short
		}
	}
	p.rp.ServeHTTP(w, r)
}

type crashRig struct {
	t       *testing.T
	dir     string
	cfg     string
	env     []string
	addr    string
	logPath string
	gh      *githubtest.Server
	vast    *vasttest.Server
	proxy   *holdProxy
	cmd     *exec.Cmd
	runs    int
}

func (c *crashRig) start() {
	c.t.Helper()
	c.runs++
	logf, err := os.OpenFile(c.logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		c.t.Fatal(err)
	}
	fmt.Fprintf(logf, "\n==== start %d ====\n", c.runs)
	cmd := exec.Command(os.Args[0], "serve", "--listen", c.addr)
	cmd.Env = append(os.Environ(), c.env...)
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		c.t.Fatal(err)
	}
	logf.Close()
	c.cmd = cmd
	// A failed test must not leave its serve running (it would go on
	// polling fakes that are gone).
	c.t.Cleanup(func() {
		if cmd.ProcessState == nil {
			cmd.Process.Kill()
			cmd.Wait()
		}
	})
	c.waitFor("serve ready", func() bool {
		resp, err := http.Get("http://" + c.addr + "/readyz")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == 200
	})
}

func (c *crashRig) kill(why string) {
	c.t.Helper()
	c.t.Logf("SIGKILL serve: %s", why)
	c.cmd.Process.Signal(syscall.SIGKILL)
	c.cmd.Wait()
}

func (c *crashRig) waitFor(what string, cond func() bool) {
	c.t.Helper()
	deadline := time.Now().Add(90 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			logs, _ := os.ReadFile(c.logPath)
			c.t.Fatalf("timed out waiting for %s\nserve log:\n%s", what, tail(string(logs), 60))
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func (c *crashRig) leases() []*provisioner.Lease {
	e := &e2e{t: c.t, dbPath: filepath.Join(c.dir, "serve.db")}
	if _, err := os.Stat(e.dbPath); err != nil {
		return nil
	}
	return e.leases()
}

func (c *crashRig) anyLeaseIn(s provisioner.State) bool {
	for _, l := range c.leases() {
		if l.State == s {
			return true
		}
	}
	return false
}

// A burst of queued jobs, and serve killed with SIGKILL before a create
// call returns, while a host boots, while a runner is bootstrapped, and
// while a host is released; restarted each time on the same database.
// Every job gets a host, no instance is created twice for one job, and
// none remains at the end.
func TestCrashAnywhereLosesNothing(t *testing.T) {
	if testing.Short() {
		t.Skip("starts serve six times")
	}
	dir := t.TempDir()
	me, err := user.Current()
	if err != nil {
		t.Fatal(err)
	}
	c := &crashRig{t: t, dir: dir, addr: freeAddr(t), logPath: filepath.Join(dir, "serve.log")}
	c.gh = githubtest.New(githubtest.Options{Tokens: []string{testToken}, OnlineTimeout: 5 * time.Second})
	t.Cleanup(c.gh.Close)
	// Hosts take a while to boot, so that a kill can land during boot.
	var offers []vasttest.Offer
	for i := int64(0); i < 8; i++ {
		offers = append(offers, vasttest.Offer{ID: 6000100 + i, MachineID: 600 + i, HostID: 60 + i, GPUName: "RTX 4090", NumGPUs: 1,
			GPURAM: 24564, DphBase: 0.30 + float64(i)/100, StorageCost: 0.15, Reliability: 0.995, Geolocation: "Texas, US",
			DirectPortCount: 100, DiskSpace: 500, CUDAMaxGood: 12.8})
	}
	c.vast = vasttest.New(vasttest.Options{Dir: filepath.Join(dir, "vast"), Offers: offers,
		LoadingAfter: 300 * time.Millisecond, RunningAfter: 1500 * time.Millisecond})
	t.Cleanup(c.vast.Close)
	c.proxy = newHoldProxy(c.vast.URL())
	proxySrv := httpTestServer(t, c.proxy)
	_, sum, err := githubtest.RunnerTarball("2.330.0")
	if err != nil {
		t.Fatal(err)
	}
	c.cfg = filepath.Join(dir, "crabbox-runner.yaml")
	os.WriteFile(c.cfg, []byte(fmt.Sprintf(`deployment: crash
database_url: sqlite:%s
log: {level: debug, format: json}
runner: {version: "2.330.0", url: %q, sha256: %q}
providers:
  vast: {ssh_user: %s, min_request_interval: 1ms, allow_private_endpoints: true}
reconcile: {interval: 2s, gc_interval: -1s}
# A queued webhook sent while serve is down is lost (GitHub does not retry);
# the reconcile pass finds the job by asking GitHub about these scopes.
github: {scopes: [acme]}
classes:
  - name: gpu
    labels: [self-hosted, linux, x64, crabbox, gpu]
    gpu: {name: RTX 4090, count: 1}
    providers: [vast]
    max_price_per_hour: 5
    boot_timeout: 2m
    idle_timeout: 5m
    max_lifetime: 30m
`, filepath.Join(dir, "serve.db"), c.gh.TarballURLTemplate(), sum, me.Username)), 0o600)
	c.env = []string{"CRABBOX_TEST_MAIN=1", "CRABBOX_CONFIG=" + c.cfg, "CRABBOX_WEBHOOK_SECRET=" + testSecret,
		"CRABBOX_GITHUB_TOKEN=" + testToken, "CRABBOX_GITHUB_API_URL=" + c.gh.URL(),
		"VAST_API_KEY=" + vasttest.DefaultAPIKey, "CRABBOX_VAST_API_URL=" + proxySrv}
	c.gh.SetWebhook("http://"+c.addr+"/webhook", []byte(testSecret))

	// 1. Before a create call returns.
	c.proxy.arm(true, false)
	c.start()
	var jobs []int64
	for i := 0; i < 4; i++ {
		jobs = append(jobs, c.gh.QueueJob(githubtest.JobSpec{Repo: "acme/vision", Org: "acme",
			Labels: []string{"self-hosted", "crabbox", "gpu"}, Name: fmt.Sprintf("train-%d", i),
			Script: "sleep 2; echo trained"}))
	}
	select {
	case <-c.proxy.seen:
	case <-time.After(60 * time.Second):
		t.Fatal("no create call")
	}
	c.kill("a create call was made; its answer is lost")
	c.proxy.letGo()

	// 2. While a host boots.
	c.start()
	c.waitFor("a lease booting", func() bool { return c.anyLeaseIn(provisioner.StateBooting) })
	c.kill("a host is booting")

	// 3. While a runner is bootstrapped.
	c.start()
	c.waitFor("a lease bootstrapping", func() bool { return c.anyLeaseIn(provisioner.StateBootstrapping) })
	c.kill("a runner is being installed")

	// 4. While a host is released.
	c.proxy.arm(false, true)
	c.start()
	select {
	case <-c.proxy.seen:
	case <-time.After(90 * time.Second):
		logs, _ := os.ReadFile(c.logPath)
		t.Fatalf("no destroy call\n%s", tail(string(logs), 60))
	}
	c.kill("a host is being destroyed")
	c.proxy.letGo()

	// 5. The last run finishes everything.
	c.start()
	for _, id := range jobs {
		c.waitFor(fmt.Sprintf("job %d completed", id), func() bool {
			j, _ := c.gh.Job(id)
			return j.Status == githubtest.StatusCompleted
		})
	}
	c.waitFor("every host destroyed, runner removed, lease released", func() bool {
		if len(c.vast.Live()) != 0 || len(c.gh.Runners()) != 0 {
			return false
		}
		for _, l := range c.leases() {
			if l.State != provisioner.StateReleased {
				return false
			}
		}
		return true
	})
	c.cmd.Process.Signal(syscall.SIGTERM)
	if err := c.cmd.Wait(); err != nil {
		t.Errorf("serve did not exit cleanly on SIGTERM: %v", err)
	}

	for _, id := range jobs {
		if j, _ := c.gh.Job(id); j.Conclusion != "success" {
			t.Errorf("job %d: %s", id, j.Conclusion)
		}
	}
	// One instance per lease, and one lease per job: nothing was created
	// twice for a job, whatever was killed when.
	perLease := map[string]int{}
	for _, in := range c.vast.Instances() {
		m, ok := provisioner.ParseMarker(in.Label)
		if !ok {
			t.Errorf("instance %d without our label: %q", in.ID, in.Label)
			continue
		}
		perLease[m.LeaseID]++
	}
	leases := c.leases()
	if len(leases) != len(jobs) {
		t.Errorf("%d leases for %d jobs", len(leases), len(jobs))
	}
	for _, l := range leases {
		if perLease[l.ID] != 1 {
			t.Errorf("lease %s (job %d): %d instances created", l.ID, l.BoundJobID, perLease[l.ID])
		}
	}
	t.Logf("%d serve runs, %d instances created in all", c.runs, len(c.vast.Instances()))
}

func httpTestServer(t *testing.T, h http.Handler) string {
	t.Helper()
	srv := &http.Server{Handler: h}
	ln := listenLoopback(t)
	go srv.Serve(ln)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		srv.Shutdown(ctx)
	})
	return "http://" + ln.Addr().String()
}

func listenLoopback(t *testing.T) net.Listener {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	return ln
}
