package main

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/crabbox/crabbox-runner/github/githubtest"
	"github.com/crabbox/crabbox-runner/providers/vast/vasttest"
	"github.com/crabbox/crabbox-runner/provisioner"
	"github.com/crabbox/crabbox-runner/store"
	"github.com/crabbox/crabbox-runner/store/postgres/pgtest"
)

// roundRobin is the load balancer in front of the replicas: each delivery
// goes to the next replica, or the one after if that one is down.
type roundRobin struct {
	addrs []string
	next  atomic.Int64
	mu    sync.Mutex
	hits  map[string]int
}

func (rr *roundRobin) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	start := rr.next.Add(1)
	for i := range len(rr.addrs) {
		addr := rr.addrs[(int(start)+i)%len(rr.addrs)]
		req, _ := http.NewRequestWithContext(r.Context(), r.Method, "http://"+addr+r.URL.Path, bytes.NewReader(body))
		req.Header = r.Header.Clone()
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			continue // down: try the next replica
		}
		rr.mu.Lock()
		rr.hits[addr]++
		rr.mu.Unlock()
		defer resp.Body.Close()
		w.WriteHeader(resp.StatusCode)
		io.Copy(w, resp.Body)
		return
	}
	http.Error(w, "no replica", http.StatusBadGateway)
}

// Two serve replicas on one PostgreSQL behind a load balancer: jobs are
// spread over both, one replica is killed with SIGKILL while hosts boot,
// and the other finishes everything: one lease and one host per job,
// nothing left running.
func TestReplicasOnPostgres(t *testing.T) {
	if testing.Short() {
		t.Skip("starts two serve processes")
	}
	dbURL := pgtest.NewDatabase(t) // skips without PostgreSQL, fails in CI
	dir := t.TempDir()
	me, err := user.Current()
	if err != nil {
		t.Fatal(err)
	}
	gh := githubtest.New(githubtest.Options{Tokens: []string{testToken}, OnlineTimeout: 5 * time.Second})
	t.Cleanup(gh.Close)
	var offers []vasttest.Offer
	for i := int64(0); i < 10; i++ {
		offers = append(offers, vasttest.Offer{ID: 8000100 + i, MachineID: 800 + i, HostID: 80 + i, GPUName: "RTX 4090", NumGPUs: 1,
			GPURAM: 24564, DphBase: 0.30 + float64(i)/100, StorageCost: 0.15, Reliability: 0.995, Geolocation: "Texas, US",
			DirectPortCount: 100, DiskSpace: 500, CUDAMaxGood: 12.8})
	}
	vfake := vasttest.New(vasttest.Options{Dir: filepath.Join(dir, "vast"), Offers: offers,
		LoadingAfter: 300 * time.Millisecond, RunningAfter: 2 * time.Second})
	t.Cleanup(vfake.Close)
	_, sum, err := githubtest.RunnerTarball("2.330.0")
	if err != nil {
		t.Fatal(err)
	}
	cfg := filepath.Join(dir, "crabbox-runner.yaml")
	os.WriteFile(cfg, []byte(fmt.Sprintf(`deployment: replicas
log: {level: debug, format: json}
runner: {version: "2.330.0", url: %q, sha256: %q}
providers:
  vast: {ssh_user: %s, min_request_interval: 1ms, allow_private_endpoints: true}
reconcile: {interval: 2s, gc_interval: 5s}
work: {job_timeout: 25s, rescue_after: 30s}
classes:
  - name: gpu
    labels: [self-hosted, linux, x64, crabbox, gpu]
    gpu: {name: RTX 4090, count: 1}
    providers: [vast]
    max_price_per_hour: 5
    boot_timeout: 2m
    idle_timeout: 5m
    max_lifetime: 30m
`, gh.TarballURLTemplate(), sum, me.Username)), 0o600)
	env := []string{"CRABBOX_TEST_MAIN=1", "CRABBOX_CONFIG=" + cfg, "CRABBOX_DATABASE_URL=" + dbURL,
		"CRABBOX_WEBHOOK_SECRET=" + testSecret, "CRABBOX_GITHUB_TOKEN=" + testToken, "CRABBOX_GITHUB_API_URL=" + gh.URL(),
		"VAST_API_KEY=" + vasttest.DefaultAPIKey, "CRABBOX_VAST_API_URL=" + vfake.URL(),
		// One key for both replicas (PostgreSQL refuses to start without
		// one): either reaches the hosts the other is bootstrapping.
		"CRABBOX_STATE_KEY=" + testStateKey}

	addrs := []string{freeAddr(t), freeAddr(t)}
	procs := make([]*exec.Cmd, len(addrs))
	logPath := filepath.Join(dir, "serve.log")
	for i, addr := range addrs {
		logf, _ := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
		cmd := exec.Command(os.Args[0], "serve", "--listen", addr)
		cmd.Env = append(os.Environ(), env...)
		cmd.Stdout, cmd.Stderr = logf, logf
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		logf.Close()
		procs[i] = cmd
		t.Cleanup(func() { cmd.Process.Signal(syscall.SIGKILL); cmd.Wait() })
	}
	rig := &crashRig{t: t, logPath: logPath}
	for _, addr := range addrs {
		rig.waitFor("replica ready", func() bool {
			resp, err := http.Get("http://" + addr + "/readyz")
			if err != nil {
				return false
			}
			resp.Body.Close()
			return resp.StatusCode == 200
		})
	}
	lb := &roundRobin{addrs: addrs, hits: map[string]int{}}
	gh.SetWebhook(httpTestServer(t, lb)+"/webhook", []byte(testSecret))

	st, err := store.Open(t.Context(), dbURL)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	leases := func() []*provisioner.Lease {
		ls, err := st.Leases(t.Context(), provisioner.LeaseFilter{})
		if err != nil {
			t.Fatal(err)
		}
		return ls
	}

	var jobs []int64
	for i := 0; i < 6; i++ {
		jobs = append(jobs, gh.QueueJob(githubtest.JobSpec{Repo: "acme/vision", Org: "acme",
			Labels: []string{"self-hosted", "crabbox", "gpu"}, Name: fmt.Sprintf("shard-%d", i), Script: "sleep 1; echo ok"}))
	}
	rig.waitFor("hosts booting", func() bool {
		for _, l := range leases() {
			if l.State == provisioner.StateBooting {
				return true
			}
		}
		return false
	})
	t.Log("SIGKILL replica 0 while hosts boot")
	procs[0].Process.Signal(syscall.SIGKILL)
	procs[0].Wait()

	for _, id := range jobs {
		rig.waitFor(fmt.Sprintf("job %d completed", id), func() bool {
			j, _ := gh.Job(id)
			return j.Status == githubtest.StatusCompleted
		})
	}
	rig.waitFor("nothing left running", func() bool {
		if len(vfake.Live()) != 0 || len(gh.Runners()) != 0 {
			return false
		}
		for _, l := range leases() {
			if l.State != provisioner.StateReleased {
				return false
			}
		}
		return true
	})
	for _, id := range jobs {
		if j, _ := gh.Job(id); j.Conclusion != "success" {
			t.Errorf("job %d: %s", id, j.Conclusion)
		}
	}
	ls := leases()
	if len(ls) != len(jobs) {
		t.Errorf("%d leases for %d jobs", len(ls), len(jobs))
	}
	perLease := map[string]int{}
	for _, in := range vfake.Instances() {
		if m, ok := provisioner.ParseMarker(in.Label); ok {
			perLease[m.LeaseID]++
		}
	}
	for _, l := range ls {
		if perLease[l.ID] != 1 {
			t.Errorf("lease %s: %d instances", l.ID, perLease[l.ID])
		}
	}
	lb.mu.Lock()
	t.Logf("deliveries per replica: %v", lb.hits)
	lb.mu.Unlock()
}
