package bootstrap_test

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/crabbox/crabbox-runner/bootstrap"
	"github.com/crabbox/crabbox-runner/providers/local"
	"github.com/crabbox/crabbox-runner/provisioner"
)

// gatedTarball serves body to every request once gate is closed, counting
// requests; started tells of each request's arrival.
type gatedTarball struct {
	*httptest.Server
	requests atomic.Int32
	started  chan struct{}
	gate     chan struct{}
}

func serveGated(t *testing.T, body []byte, open bool) *gatedTarball {
	t.Helper()
	g := &gatedTarball{started: make(chan struct{}, 100), gate: make(chan struct{})}
	if open {
		close(g.gate)
	}
	g.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		g.requests.Add(1)
		g.started <- struct{}{}
		select {
		case <-g.gate:
		case <-r.Context().Done():
			return
		}
		_, _ = w.Write(body)
	}))
	t.Cleanup(g.Close)
	return g
}

func (g *gatedTarball) urlTemplate() string {
	return g.URL + "/v{version}/actions-runner-linux-{arch}-{version}.tar.gz"
}

// bootHost creates a local host that runs the bootstrapper's onstart (the
// prefetch) once its SSH is up, as Vast does, and waits until it runs.
func (e *env) bootHost(t *testing.T, b *bootstrap.Bootstrapper, creds *provisioner.Credentials) *provisioner.Instance {
	t.Helper()
	return e.hostWith(t, creds, b.OnStart(creds))
}

func prefetchLog(e *env, inst *provisioner.Instance) string {
	b, _ := os.ReadFile(filepath.Join(e.p.HostRoot(inst.ID), "crabbox", ".crabbox", "prefetch.log"))
	return string(b)
}

// waitPrefetch waits for the prefetch to say it is done with the
// dependencies, its last step.
func waitPrefetch(t *testing.T, e *env, inst *provisioner.Instance) string {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for {
		if log := prefetchLog(e, inst); strings.Contains(log, "crabbox prefetch: dependencies") {
			return log
		}
		if time.Now().After(deadline) {
			t.Fatalf("prefetch not done: %q", prefetchLog(e, inst))
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func depsRuns(e *env, inst *provisioner.Instance) int {
	b, _ := os.ReadFile(filepath.Join(e.p.HostRoot(inst.ID), "installdependencies.runs"))
	return strings.Count(string(b), "ran")
}

// TestPrefetchedRunnerIsNotDownloadedAgain: a prefetch that finished at
// boot leaves the runner and its dependencies ready; the install phase
// downloads nothing and says so.
func TestPrefetchedRunnerIsNotDownloadedAgain(t *testing.T) {
	e := newEnv(t, nil)
	body, sum := tarball(t, fakeRunSh)
	srv := serveGated(t, body, true)
	b := e.bootstrapper(t, srv.urlTemplate(), sum)
	creds := newCreds(t, b)
	inst := e.bootHost(t, b, creds)
	log := waitPrefetch(t, e, inst)
	if !strings.Contains(log, "ready") {
		t.Fatalf("prefetch log: %q", log)
	}
	started := time.Now()
	res, err := b.Bootstrap(context.Background(), request(inst, creds, newJIT(t, "crabbox-p1"), false))
	if err != nil {
		t.Fatal(err)
	}
	if n := srv.requests.Load(); n != 1 {
		t.Errorf("tarball downloaded %d times, want once (by the prefetch)", n)
	}
	if res.RunnerGot != provisioner.RunnerPrefetched || res.Deps != provisioner.DepsPrefetched {
		t.Errorf("runner %q, deps %q; want prefetched, prefetched", res.RunnerGot, res.Deps)
	}
	// The prefetch timed its download, all of it before SSH (here: the
	// bootstrap's start) since it was done by then; within what the
	// timing resolves (/proc/uptime's 10 ms, and the install's output on
	// its way back, which makes the start look later).
	checkFetch(t, res.Fetch, provisioner.FetchByPrefetch, len(body))
	if after := res.Fetch.AfterSSH(started.Add(fetchResolution)); after != 0 {
		t.Errorf("a prefetch done before the bootstrap left %s after SSH", res.Fetch.AfterSSH(started))
	}
	if n := depsRuns(e, inst); n != 1 {
		t.Errorf("installdependencies.sh ran %d times, want once", n)
	}
	var names []string
	for _, ph := range res.Phases {
		names = append(names, ph.Name)
	}
	if got := strings.Join(names, " "); !strings.HasPrefix(got, "upload arch install install.lock install.copy install.deps start") {
		t.Errorf("phases %q", got)
	}
	waitFile(t, filepath.Join(e.runnerDir(inst, "crabbox-p1"), "jit.sha256"))
	// A second runner on the host downloaded nothing: no fetch to tell.
	again, err := b.Bootstrap(context.Background(), request(inst, creds, newJIT(t, "crabbox-p2"), false))
	if err != nil {
		t.Fatal(err)
	}
	if again.Fetch != nil {
		t.Errorf("the second install told of a fetch: %+v", *again.Fetch)
	}
}

// fetchResolution bounds how far a fetch's timing may be off here: the
// host times it on /proc/uptime (10 ms steps) and tells its age, which
// the Go side counts back from when the output arrived (later than it was
// printed, more so under load).
const fetchResolution = 250 * time.Millisecond

// checkFetch: the host told of one download of the tarball, by whom,
// of its size, timed consistently.
func checkFetch(t *testing.T, f *provisioner.RunnerFetch, by string, size int) {
	t.Helper()
	switch {
	case f == nil:
		t.Fatalf("no fetch told; want one by the %s", by)
	case f.By != by || f.Bytes != int64(size):
		t.Errorf("fetch by %q of %d bytes; want by %q, %d bytes", f.By, f.Bytes, by, size)
	case f.Download < 0 || f.Download > f.Total || f.Began.IsZero() || f.Began.After(time.Now()):
		t.Errorf("fetch timed badly: %+v", *f)
	}
}

// TestInstallWaitsForThePrefetchUnderWay: SSH comes up while the prefetch
// is still downloading; the install waits for it instead of downloading a
// second copy.
func TestInstallWaitsForThePrefetchUnderWay(t *testing.T) {
	e := newEnv(t, func(int, provisioner.CreateRequest) local.Behavior { return local.Behavior{RunnerDeps: true} })
	body, sum := tarball(t, fakeRunSh)
	srv := serveGated(t, body, false)
	b := e.bootstrapper(t, srv.urlTemplate(), sum)
	creds := newCreds(t, b)
	inst := e.bootHost(t, b, creds)
	select {
	case <-srv.started: // the prefetch's download, held
	case <-time.After(30 * time.Second):
		t.Fatalf("no prefetch download: %q", prefetchLog(e, inst))
	}
	type result struct {
		res *provisioner.BootstrapResult
		err error
	}
	done := make(chan result, 1)
	go func() {
		res, err := b.Bootstrap(context.Background(), request(inst, creds, newJIT(t, "crabbox-w1"), false))
		done <- result{res, err}
	}()
	// The install is waiting on the lock once a flock -w of this host runs.
	root := e.p.HostRoot(inst.ID)
	deadline := time.Now().Add(30 * time.Second)
	for !waitingFlock(root) {
		select {
		case r := <-done:
			t.Fatalf("bootstrap ended while the prefetch held the lock: %+v %v", r.res, r.err)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatal("the install never waited for the lock")
		}
		time.Sleep(20 * time.Millisecond)
	}
	// "SSH up" for the fetch's account: any moment after the download
	// began and before it ended; this one is well inside (the bootstrap
	// ran its first phases since), so the timing's resolution cannot
	// blur which side of it the download began.
	sshUp := time.Now()
	time.Sleep(100 * time.Millisecond)
	held := time.Since(sshUp)
	close(srv.gate)
	r := <-done
	if r.err != nil {
		t.Fatal(r.err)
	}
	// The download began before SSH came up and ended after: what was
	// left of it then is on the way to the runner online, and the metric
	// of that part must see it.
	checkFetch(t, r.res.Fetch, provisioner.FetchByPrefetch, len(body))
	if f := r.res.Fetch; f != nil {
		if !f.Began.Before(sshUp) {
			t.Errorf("the download began %s after SSH came up; it was under way before", f.Began.Sub(sshUp))
		}
		if after := f.AfterSSH(sshUp); after < held-fetchResolution/5 || after > f.Total {
			t.Errorf("%s of the fetch after SSH; the download was held %s past it (total %s)", after, held, f.Total)
		}
	}
	if n := srv.requests.Load(); n != 1 {
		t.Errorf("the server saw %d downloads, want one", n)
	}
	if r.res.RunnerGot != provisioner.RunnerWaited || r.res.Deps != provisioner.DepsSkipped {
		t.Errorf("runner %q, deps %q; want waited, skipped", r.res.RunnerGot, r.res.Deps)
	}
	if n := depsRuns(e, inst); n != 0 {
		t.Errorf("installdependencies.sh ran %d times on an image with the libraries", n)
	}
}

// waitingFlock: a `flock -w` runs with this host's root in its
// environment (host.sh install waiting for the cache lock).
func waitingFlock(root string) bool {
	entries, _ := os.ReadDir("/proc")
	for _, d := range entries {
		if _, err := strconv.Atoi(d.Name()); err != nil {
			continue
		}
		cmd, _ := os.ReadFile("/proc/" + d.Name() + "/cmdline")
		if !strings.HasPrefix(string(cmd), "flock\x00-w\x00") {
			continue
		}
		env, _ := os.ReadFile("/proc/" + d.Name() + "/environ")
		if strings.Contains(string(env), "CRABBOX_HOST_ROOT="+root+"\x00") {
			return true
		}
	}
	return false
}

// TestCorruptPrefetchLeavesNoCache: a prefetch that got a corrupted
// tarball leaves no cache; the install downloads itself and reports the
// checksum error as without a prefetch.
func TestCorruptPrefetchLeavesNoCache(t *testing.T) {
	e := newEnv(t, nil)
	body, sum := tarball(t, fakeRunSh)
	bad := append([]byte(nil), body...)
	bad[len(bad)/2] ^= 0xff
	srv := serveGated(t, bad, true)
	b := e.bootstrapper(t, srv.urlTemplate(), sum)
	creds := newCreds(t, b)
	inst := e.bootHost(t, b, creds)
	log := waitPrefetch(t, e, inst)
	if !strings.Contains(log, "failed") {
		t.Fatalf("prefetch log: %q", log)
	}
	cache, _ := filepath.Glob(filepath.Join(e.p.HostRoot(inst.ID), "crabbox", "cache", "runner-*"))
	if len(cache) != 0 {
		t.Fatalf("a failed prefetch left %v", cache)
	}
	_, err := b.Bootstrap(context.Background(), request(inst, creds, newJIT(t, "crabbox-c1"), false))
	if !errors.Is(err, bootstrap.ErrRunnerChecksum) {
		t.Fatalf("err = %v, want ErrRunnerChecksum", err)
	}
	if n := srv.requests.Load(); n != 2 {
		t.Errorf("the server saw %d downloads, want 2 (the prefetch's, the install's)", n)
	}
	if n := depsRuns(e, inst); n != 0 {
		t.Errorf("installdependencies.sh ran %d times from no runner", n)
	}
}

// TestDependenciesSkippedWhenPresent: without a prefetch, the install
// skips installdependencies.sh when the image's linker cache has the
// runner's libraries, and runs it once otherwise.
func TestDependenciesSkippedWhenPresent(t *testing.T) {
	for _, has := range []bool{true, false} {
		e := newEnv(t, func(int, provisioner.CreateRequest) local.Behavior { return local.Behavior{RunnerDeps: has} })
		body, sum := tarball(t, fakeRunSh)
		srv := serveGated(t, body, true)
		b := e.bootstrapper(t, srv.urlTemplate(), sum)
		creds := newCreds(t, b)
		inst := e.host(t, creds) // no onstart: no prefetch
		started := time.Now()
		res, err := b.Bootstrap(context.Background(), request(inst, creds, newJIT(t, "crabbox-d1"), false))
		if err != nil {
			t.Fatal(err)
		}
		checkFetch(t, res.Fetch, provisioner.FetchByInstall, len(body))
		// All of the install's own download is after SSH (the
		// bootstrap's start); host and test share a clock, to the ms.
		if f := res.Fetch; f != nil && (f.Began.Before(started.Add(-fetchResolution/5)) || f.AfterSSH(started) < f.Total-fetchResolution/5) {
			t.Errorf("the install's download began %s after the bootstrap, %s of %s after SSH", f.Began.Sub(started), f.AfterSSH(started), f.Total)
		}
		wantDeps, wantRuns := provisioner.DepsInstalled, 1
		if has {
			wantDeps, wantRuns = provisioner.DepsSkipped, 0
		}
		if res.RunnerGot != provisioner.RunnerDownloaded || res.Deps != wantDeps {
			t.Errorf("libraries %v: runner %q, deps %q; want downloaded, %s", has, res.RunnerGot, res.Deps, wantDeps)
		}
		if n := depsRuns(e, inst); n != wantRuns {
			t.Errorf("libraries %v: installdependencies.sh ran %d times, want %d", has, n, wantRuns)
		}
	}
}
