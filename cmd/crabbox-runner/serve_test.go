package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/crabbox/crabbox-runner/github"
	"github.com/crabbox/crabbox-runner/github/githubtest"
	"github.com/crabbox/crabbox-runner/providers/local"
	"github.com/crabbox/crabbox-runner/provisioner"
	"github.com/crabbox/crabbox-runner/store/sqlite"
	"github.com/crabbox/crabbox-runner/webhook"
)

// secretSpy wraps the GitHub client and the bootstrapper of a running serve
// to learn the secrets it makes (JIT configs, private keys), so the test can
// check that none of them reached the logs.
type secretSpy struct {
	mu      sync.Mutex
	secrets []string
}

func (s *secretSpy) add(vals ...string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, v := range vals {
		if v != "" {
			s.secrets = append(s.secrets, v)
		}
	}
}

func (s *secretSpy) all() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.secrets...)
}

type spyGitHub struct {
	provisioner.GitHub
	spy *secretSpy
}

func (g spyGitHub) GenerateJITConfig(ctx context.Context, s provisioner.Scope, name string, labels []string) (*provisioner.JITConfig, error) {
	j, err := g.GitHub.GenerateJITConfig(ctx, s, name, labels)
	if err == nil {
		g.spy.add(j.Encoded)
	}
	return j, err
}

// RegistrationWait passes the GitHub client's budget on: the wrapper must
// not hide it from the provisioner.
func (g spyGitHub) RegistrationWait(ctx context.Context, s provisioner.Scope) time.Duration {
	if rb, ok := g.GitHub.(provisioner.RegistrationBudget); ok {
		return rb.RegistrationWait(ctx, s)
	}
	return 0
}

type spyBootstrapper struct {
	provisioner.Bootstrapper
	spy *secretSpy
}

func (b spyBootstrapper) NewCredentials(seed []byte, withHostKey bool) (*provisioner.Credentials, error) {
	c, err := b.Bootstrapper.NewCredentials(seed, withHostKey)
	if err == nil {
		b.spy.add(pemBody(c.ClientPrivatePEM))
		if c.HostKey != nil {
			b.spy.add(pemBody(c.HostKey.PrivatePEM))
		}
	}
	return c, err
}

// pemBody is the base64 middle of a PEM block: what would show if a key
// were printed, whatever the framing.
func pemBody(pem []byte) string {
	var body []string
	for _, line := range strings.Split(string(pem), "\n") {
		if line != "" && !strings.HasPrefix(line, "-----") {
			body = append(body, line)
		}
	}
	if len(body) == 0 {
		return ""
	}
	return body[0]
}

// syncBuffer is a log sink written by serve and read by the test.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

type e2e struct {
	t       *testing.T
	cfgPath string
	env     map[string]string
	gh      *githubtest.Server
	hosts   *local.Provider
	url     string
	dbPath  string
	logs    *syncBuffer
	spy     *secretSpy
	token   string
	secret  string
	cancel  context.CancelFunc
	exit    chan int
	// groups is what serve gave the provisioner as RunnerGroups.
	groups provisioner.RunnerGroups
	// stateKey is the key serve derives lease SSH keys from: the one it
	// was given, or the one it made beside the database (runServe).
	stateKey string
}

// What a test may change of startServe's configuration (serve_policy_test.go):
// the class's idle timeout, YAML appended to the file (keys of the class,
// then top-level ones) and a tweak of the provisioner's configuration.
var (
	e2eIdleTimeout = "5m"
	e2eExtraYAML   string
	e2eTune        func(*provisioner.Config)
)

const (
	testToken  = "ghp_e2eTokenThatMustNeverBeLogged0001"
	testSecret = "e2e-webhook-secret-never-logged"
	// testStateKey is given where serve cannot make its own (PostgreSQL).
	testStateKey = "e2e-state-key-never-logged-0123456789"
)

// startServe runs the real `crabbox-runner serve` in-process, with a config
// file and environment as an operator would write them, against the fake
// GitHub and the loopback sshd provider.
func startServe(t *testing.T, bootTimeout string, behave func(seq int, req provisioner.CreateRequest) local.Behavior) *e2e {
	t.Helper()
	return startServeWith(t, serveSetup{bootTimeout: bootTimeout, behave: behave})
}

// serveSetup is what startServeWith may change: the fake GitHub's rate
// limits and event hook, config appended, and the hosts.
type serveSetup struct {
	ghOpts      githubtest.Options
	extraConfig string
	bootTimeout string
	behave      func(seq int, req provisioner.CreateRequest) local.Behavior
	// hosts, when set, is serve's "local" provider, and bootstrapper its
	// Bootstrapper (wrapping the real one), instead of sshd hosts.
	hosts        provisioner.Provider
	bootstrapper func(real provisioner.Bootstrapper) provisioner.Bootstrapper
	// tuneGitHub adjusts serve's GitHub client config (cache times).
	tuneGitHub func(*github.Config)
	// listen, when set, turns the free loopback address the test reaches
	// serve at into the one serve listens on (0.0.0.0:PORT).
	listen func(loopback string) string
	// env is added to serve's environment.
	env map[string]string
	// app runs serve as the GitHub App doctorAppID installed on acme (11),
	// with ghOpts' InstallationPermissions, instead of with a token.
	app bool
	// provisioner is given serve's provisioner once built.
	provisioner func(*provisioner.Provisioner)
}

func startServeWith(t *testing.T, setup serveSetup) *e2e {
	t.Helper()
	ghOpts, extraConfig, bootTimeout, behave := setup.ghOpts, setup.extraConfig, setup.bootTimeout, setup.behave
	dir := t.TempDir()
	e := &e2e{t: t, logs: &syncBuffer{}, spy: &secretSpy{}, token: testToken, secret: testSecret, exit: make(chan int, 1)}
	onEvent := ghOpts.OnEvent
	if onEvent == nil {
		onEvent = func(ev githubtest.Event) { t.Logf("github: %s", ev) }
	}
	fakeOpts := githubtest.Options{Tokens: []string{testToken}, OnlineTimeout: 5 * time.Second,
		OnEvent: onEvent, RateLimits: ghOpts.RateLimits, LostRunnerTimeout: ghOpts.LostRunnerTimeout}
	var appKeyPEM string
	if setup.app {
		key, keyPEM := doctorAppKey(t)
		fakeOpts.AppID, fakeOpts.AppPublicKey, fakeOpts.Installations = doctorAppID, &key.PublicKey, map[string]int64{"acme": 11}
		fakeOpts.AppPermissions, fakeOpts.InstallationPermissions = ghOpts.AppPermissions, ghOpts.InstallationPermissions
		appKeyPEM = keyPEM
	}
	e.gh = githubtest.New(fakeOpts)
	t.Cleanup(e.gh.Close)
	hosts, err := local.New(local.Options{Dir: filepath.Join(dir, "hosts"), Behavior: behave})
	if err != nil {
		t.Fatal(err)
	}
	e.hosts = hosts
	t.Cleanup(func() { hosts.Close() })
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
  local: {dir: %s}
classes:
  - name: a100
    labels: [self-hosted, linux, x64, crabbox, a100]
    gpu: {name: A100, count: 1, min_memory_gb: 40}
    providers: [local]
    max_price_per_hour: 2.50
    boot_timeout: %s
    idle_timeout: %s
    max_lifetime: 30m
%s`, e.dbPath, e.gh.TarballURLTemplate(), sum, filepath.Join(dir, "hosts"), bootTimeout, e2eIdleTimeout, e2eExtraYAML+extraConfig)
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	env := map[string]string{
		"CRABBOX_CONFIG":         cfgPath,
		"CRABBOX_WEBHOOK_SECRET": testSecret,
		"CRABBOX_GITHUB_TOKEN":   testToken,
		"CRABBOX_GITHUB_API_URL": e.gh.URL(),
	}
	if setup.app {
		delete(env, "CRABBOX_GITHUB_TOKEN")
		env["CRABBOX_GITHUB_APP_ID"], env["CRABBOX_GITHUB_APP_PRIVATE_KEY"] = fmt.Sprint(doctorAppID), appKeyPEM
	}
	for k, v := range setup.env {
		env[k] = v
	}
	e.cfgPath, e.env = cfgPath, env
	addr := freeAddr(t)
	e.url = "http://" + addr
	listen := addr
	if setup.listen != nil {
		listen = setup.listen(addr)
	}
	serveHook = func(o *appOptions) {
		o.Providers = map[string]provisioner.Provider{"local": hosts}
		if setup.hosts != nil {
			o.Providers = map[string]provisioner.Provider{"local": setup.hosts}
		}
		o.TuneGitHub = setup.tuneGitHub
		o.Provisioner = setup.provisioner
		o.Tune = func(c *provisioner.Config) {
			c.PollInterval = 100 * time.Millisecond
			c.QueuePollInterval = 50 * time.Millisecond
			c.GitHub = spyGitHub{c.GitHub, e.spy}
			e.groups = c.RunnerGroups
			c.Bootstrapper = spyBootstrapper{c.Bootstrapper, e.spy}
			if setup.bootstrapper != nil {
				c.Bootstrapper = setup.bootstrapper(c.Bootstrapper)
			}
			if e2eTune != nil {
				e2eTune(c)
			}
		}
	}
	t.Cleanup(func() { serveHook = nil })
	e.runServe(listen, env)
	return e
}

// runServe runs `crabbox-runner serve` in-process on addr with the given
// environment, as main would, stops it when the test ends, waits until it
// is ready and points the fake GitHub's webhook at it.
func (e *e2e) runServe(addr string, env map[string]string) {
	e.t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	e.cancel = cancel
	go func() {
		e.exit <- run(ctx, []string{"serve", "--listen", addr}, e.logs, e.logs, func(k string) string { return env[k] })
	}()
	e.t.Cleanup(func() {
		cancel()
		select {
		case <-e.exit:
		case <-time.After(30 * time.Second):
			e.t.Error("serve did not stop")
		}
	})
	e.waitFor("serve ready", 20*time.Second, func() bool {
		resp, err := http.Get(e.url + "/readyz")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == 200
	})
	e.gh.SetWebhook(e.url+"/webhook", []byte(testSecret))
	e.stateKey = env["CRABBOX_STATE_KEY"]
	if b, err := os.ReadFile(e.dbPath + ".state-key"); e.stateKey == "" && err == nil {
		e.stateKey = strings.TrimSpace(string(b))
	}
}

func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

func (e *e2e) waitFor(what string, within time.Duration, cond func() bool) {
	e.t.Helper()
	deadline := time.Now().Add(within)
	for !cond() {
		if time.Now().After(deadline) {
			e.t.Fatalf("timed out waiting for %s\nserve log:\n%s", what, tail(e.logs.String(), 40))
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

func (e *e2e) get(path string) string {
	e.t.Helper()
	resp, err := http.Get(e.url + path)
	if err != nil {
		e.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 {
		e.t.Fatalf("GET %s: %d", path, resp.StatusCode)
	}
	return string(b)
}

// stop stops serve like SIGTERM does and checks it exits cleanly.
func (e *e2e) stop() {
	e.t.Helper()
	e.cancel()
	select {
	case code := <-e.exit:
		if code != 0 {
			e.t.Fatalf("serve exited %d\n%s", code, tail(e.logs.String(), 30))
		}
		e.exit <- code // for the cleanup
	case <-time.After(30 * time.Second):
		e.t.Fatal("serve did not stop")
	}
}

// leases reads the lease table the way an operator's tool would, with its
// own connection.
func (e *e2e) leases() []*provisioner.Lease {
	e.t.Helper()
	st, err := sqlite.Open(context.Background(), e.dbPath)
	if err != nil {
		e.t.Fatal(err)
	}
	defer st.Close()
	ls, err := st.Leases(context.Background(), provisioner.LeaseFilter{})
	if err != nil {
		e.t.Fatal(err)
	}
	return ls
}

// leasesQuiet is leases for a goroutine other than the test's: an error
// reads as none.
func (e *e2e) leasesQuiet() []*provisioner.Lease {
	st, err := sqlite.Open(context.Background(), e.dbPath)
	if err != nil {
		return nil
	}
	defer st.Close()
	ls, _ := st.Leases(context.Background(), provisioner.LeaseFilter{})
	return ls
}

func (e *e2e) queue(name string) int64 {
	return e.gh.QueueJob(githubtest.JobSpec{Repo: "acme/vision", Org: "acme", Labels: []string{"self-hosted", "crabbox", "A100"},
		Name: name, Script: `nvidia-smi --query-gpu=name --format=csv,noheader; echo trained`})
}

func (e *e2e) waitJob(id int64) githubtest.Job {
	e.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	j, err := e.gh.WaitJob(ctx, id, githubtest.StatusCompleted)
	if err != nil {
		e.t.Fatalf("job %d: %v\nserve log:\n%s", id, err, tail(e.logs.String(), 40))
	}
	return j
}

// waitReleased waits until the one lease serve made is released, and
// returns it.
func (e *e2e) waitReleased() *provisioner.Lease {
	e.t.Helper()
	var l *provisioner.Lease
	e.waitFor("lease released", 30*time.Second, func() bool {
		ls := e.leases()
		if len(ls) == 1 && ls[0].State == provisioner.StateReleased {
			l = ls[0]
			return true
		}
		return false
	})
	return l
}

// waitClean waits until no host runs and no runner is registered.
func (e *e2e) waitClean() {
	e.t.Helper()
	e.waitFor("every host destroyed and runner removed", 60*time.Second, func() bool {
		return len(e.hosts.Live()) == 0 && len(e.gh.Runners()) == 0
	})
}

func TestServeEndToEnd(t *testing.T) {
	e := startServe(t, "60s", nil)
	id := e.queue("train")
	job := e.waitJob(id)
	if job.Conclusion != "success" || !strings.HasPrefix(job.RunnerName, "crabbox-e2e-") {
		t.Fatalf("job: conclusion %q runner %q", job.Conclusion, job.RunnerName)
	}
	e.waitClean()
	e.waitReleased()
	// Spend is counted just after the lease is marked released.
	var metrics string
	e.waitFor("spend in /metrics", 10*time.Second, func() bool {
		metrics = e.get("/metrics")
		return strings.Contains(metrics, "crabbox_spent_dollars_total{")
	})
	for _, want := range []string{
		`crabbox_webhook_deliveries_total{action="queued",event="workflow_job",result="accepted"} 1`,
		`crabbox_webhook_deliveries_total{action="completed",event="workflow_job",result="accepted"} 1`,
		`crabbox_lease_phase_seconds_count{class="a100",phase="queued_to_create",provider="local"} 1`,
		`crabbox_lease_phase_seconds_count{class="a100",phase="completed_to_destroyed",provider="local"} 1`,
		`crabbox_provider_calls_total{operation="create",provider="local",status="ok"} 1`,
		`crabbox_provider_calls_total{operation="destroy",provider="local",status="ok"} 1`,
		`crabbox_spent_dollars_total{class="a100",provider="local"}`,
		`crabbox_store_up 1`,
	} {
		if !strings.Contains(metrics, want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
	e.stop()

	l := e.leases()[0]
	if l.BoundJobID != id || l.RunnerName != job.RunnerName || l.GPU != "A100 PCIE" || l.PricePerHour != 0.89 {
		t.Fatalf("lease %+v", l)
	}
	if e.hosts.Created() != 1 || e.hosts.Destroyed() != 1 {
		t.Fatalf("hosts created %d destroyed %d", e.hosts.Created(), e.hosts.Destroyed())
	}
	for _, d := range e.gh.Deliveries() {
		if d.StatusCode != http.StatusAccepted {
			t.Errorf("delivery %s %s answered %d, want 202", d.Event, d.Action, d.StatusCode)
		}
	}

	// Nothing secret reached the logs: not the webhook secret, not the
	// token, not a JIT config, not a private key.
	logs := e.logs.String()
	secrets := append(e.spy.all(), testSecret, testToken, e.stateKey)
	if len(secrets) < 6 || e.stateKey == "" {
		t.Fatalf("the spy saw only %d secrets; the check below would prove little", len(secrets))
	}
	for _, s := range secrets {
		if strings.Contains(logs, s) {
			t.Errorf("a secret (%.6s…) appears in serve's logs", s)
		}
	}
	for _, must := range []string{`"lease_id":"` + l.ID, `"msg":"creating host"`, `"msg":"lease released"`} {
		if !strings.Contains(logs, must) {
			t.Errorf("logs lack %s", must)
		}
	}
}

func TestServeHostThatNeverBoots(t *testing.T) {
	e := startServe(t, "3s", func(seq int, req provisioner.CreateRequest) local.Behavior {
		return local.Behavior{NeverBoot: seq == 1}
	})
	id := e.queue("train")
	e.waitJob(id)
	e.waitClean()
	e.waitFor("both leases released", 30*time.Second, func() bool {
		ls := e.leases()
		return len(ls) == 2 && ls[0].State == provisioner.StateReleased && ls[1].State == provisioner.StateReleased
	})
	e.stop()
	ls := e.leases()
	if len(ls) != 2 {
		t.Fatalf("%d leases, want 2 (the dead host's and its replacement)", len(ls))
	}
	if !strings.Contains(ls[0].Error, "boot timeout") || ls[1].BoundJobID != id {
		t.Fatalf("leases: %+v\n%+v", ls[0], ls[1])
	}
	for _, l := range ls {
		if l.State != provisioner.StateReleased {
			t.Fatalf("lease %s is %s", l.ID, l.State)
		}
	}
	if e.hosts.Created() != 2 || e.hosts.Destroyed() != 2 {
		t.Fatalf("hosts created %d destroyed %d", e.hosts.Created(), e.hosts.Destroyed())
	}
}

// Deliveries arrive late, twice and out of order; every job still gets
// exactly one lease and every host is destroyed.
func TestServeDuplicateAndReorderedDeliveries(t *testing.T) {
	e := startServe(t, "60s", nil)
	e.gh.HoldDeliveries(true)
	id := e.queue("train")
	// The queued delivery three times over (a redelivery, a second hook).
	e.gh.ReleaseDeliveries(func(ds []githubtest.Delivery) []githubtest.Delivery { return append(ds, ds[0], ds[0]) })
	e.waitFor("job completed", 60*time.Second, func() bool {
		j, _ := e.gh.Job(id)
		return j.Status == githubtest.StatusCompleted
	})
	// in_progress and completed are held; deliver them backwards, twice.
	e.gh.ReleaseDeliveries(func(ds []githubtest.Delivery) []githubtest.Delivery {
		var out []githubtest.Delivery
		for i := len(ds) - 1; i >= 0; i-- {
			out = append(out, ds[i])
		}
		return append(out, out...)
	})
	e.gh.HoldDeliveries(false)
	e.waitClean()
	e.waitReleased()
	e.stop()
	if n := len(e.leases()); n != 1 {
		t.Fatalf("%d leases for one job", n)
	}
	codes := map[int]int{}
	for _, d := range e.gh.Deliveries() {
		codes[d.StatusCode]++
	}
	if codes[http.StatusAccepted] != 3 || codes[http.StatusOK] < 4 {
		t.Fatalf("answers %v: want 3 accepted (queued, completed, in_progress) and the repeats ignored", codes)
	}
}

func TestServeRefusesBadDeliveries(t *testing.T) {
	e := startServe(t, "60s", nil)
	body := []byte(`{"action":"queued"}`)
	cases := []struct {
		name string
		sig  string
		body []byte
		want int
	}{
		{"unsigned", "", body, 401},
		{"wrong secret", webhook.Sign([]byte("nope"), body), body, 401},
		{"malformed", webhook.Sign([]byte(testSecret), body), body, 400},
		// Signed, or the missing signature would be refused first (401).
		{"too large", webhook.Sign([]byte(testSecret), bytes.Repeat([]byte("x"), 2<<20)), bytes.Repeat([]byte("x"), 2<<20), 413},
	}
	for _, tc := range cases {
		req, _ := http.NewRequest(http.MethodPost, e.url+"/webhook", bytes.NewReader(tc.body))
		req.Header.Set("X-GitHub-Event", "workflow_job")
		req.Header.Set("X-GitHub-Delivery", "bad-"+tc.name)
		if tc.sig != "" {
			req.Header.Set("X-Hub-Signature-256", tc.sig)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != tc.want {
			t.Errorf("%s: %d, want %d", tc.name, resp.StatusCode, tc.want)
		}
	}
	e.stop()
	if n := len(e.leases()); n != 0 {
		t.Fatalf("%d leases from refused deliveries", n)
	}
}

// newServeE2E is the harness of the serve tests that need nothing special
// of the fake GitHub: a token, runners online within 5 s, events logged.
// e2eLostRunnerTimeout, when set, is the fake GitHub's lost-runner timeout
// in the harnesses built on newServeE2E (the Vast and Lambda ones).
var e2eLostRunnerTimeout time.Duration

func newServeE2E(t *testing.T) *e2e {
	e := &e2e{t: t, logs: &syncBuffer{}, spy: &secretSpy{}, token: testToken, secret: testSecret, exit: make(chan int, 1)}
	opts := githubtest.Options{Tokens: []string{testToken}, OnlineTimeout: 5 * time.Second,
		LostRunnerTimeout: e2eLostRunnerTimeout,
		OnEvent: func(ev githubtest.Event) {
			t.Logf("github: %s", ev)
			if e2eOnEvent != nil {
				e2eOnEvent(ev)
			}
		}}
	if e2eGitHubTune != nil {
		e2eGitHubTune(&opts)
	}
	e.gh = githubtest.New(opts)
	t.Cleanup(e.gh.Close)
	return e
}

// e2eGitHubTune, when set, changes the fake GitHub's options in the
// harnesses built on newServeE2E (the time-to-runner benchmark's realistic
// tarball and its event record).
var e2eGitHubTune func(*githubtest.Options)

// e2eOnEvent, when set, also gets the fake GitHub's events in the
// harnesses built on newServeE2E (serve_warm_test.go times assignments).
var e2eOnEvent func(githubtest.Event)
