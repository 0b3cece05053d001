package main

import (
	"bytes"
	"cmp"
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/crabbox/crabbox-runner/action"
	"github.com/crabbox/crabbox-runner/action/actiontest"
	"github.com/crabbox/crabbox-runner/github/githubtest"
	"github.com/crabbox/crabbox-runner/providers/local"
	"github.com/crabbox/crabbox-runner/provisioner"
)

const (
	actionToken     = "ghp_actionTokenThatMustNeverBeShown0001"
	actionVastKey   = "vast-key-that-must-never-be-shown-0001"
	actionLambdaKey = "lambda-key-that-must-never-be-shown-01"
	actionRunID     = 4242
	actionRepo      = "acme/ml"
)

// actionSpy learns the secrets the Action makes (JIT configs, private keys)
// by wrapping what it wraps, so the test can look for them in what it wrote.
type actionSpy struct {
	mu      sync.Mutex
	secrets []string
}

func (s *actionSpy) add(v string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.secrets = append(s.secrets, v)
}

func (s *actionSpy) all() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.secrets)
}

type jitSpy struct {
	provisioner.GitHub
	spy *actionSpy
}

func (g jitSpy) GenerateJITConfig(ctx context.Context, s provisioner.Scope, name string, labels []string) (*provisioner.JITConfig, error) {
	j, err := g.GitHub.GenerateJITConfig(ctx, s, name, labels)
	if err == nil {
		g.spy.add(j.Encoded)
	}
	return j, err
}

type keySpy struct {
	provisioner.Bootstrapper
	spy *actionSpy
}

func (b keySpy) NewCredentials(seed []byte, withHostKey bool) (*provisioner.Credentials, error) {
	c, err := b.Bootstrapper.NewCredentials(seed, withHostKey)
	if err == nil {
		b.spy.add(string(c.ClientPrivatePEM))
		if c.HostKey != nil {
			b.spy.add(string(c.HostKey.PrivatePEM))
		}
	}
	return c, err
}

// actionWorld is one workflow run's world: a fake GitHub, loopback hosts
// that outlive each step (as cloud hosts outlive the runner's processes),
// and the secrets everyone must keep.
type actionWorld struct {
	t        *testing.T
	dir      string
	meta     *actiontest.Metadata
	gh       *githubtest.Server
	hosts    *local.Provider
	spy      *actionSpy
	auth     map[string]string // the `with:` entries that authenticate
	offset   time.Duration     // added to the Action's clock, to reach expiries
	given    []string          // secrets given as inputs
	attempts int64
	provider string            // the provider input; local unless set
	env      map[string]string // added to every step's environment
}

func newActionWorld(t *testing.T, app bool, offers []provisioner.Offer, behave func(int, provisioner.CreateRequest) local.Behavior) *actionWorld {
	t.Helper()
	requireSSHD(t)
	meta, err := actiontest.Load()
	if err != nil {
		t.Fatal(err)
	}
	w := &actionWorld{t: t, dir: t.TempDir(), meta: meta, spy: &actionSpy{}, attempts: 1}
	opts := githubtest.Options{Tokens: []string{actionToken}, OnlineTimeout: 5 * time.Second,
		OnEvent: func(ev githubtest.Event) { t.Logf("github: %s", ev) }}
	w.auth = map[string]string{"github-token": actionToken}
	w.given = []string{actionToken, actionVastKey, actionLambdaKey}
	if app {
		key, err := rsa.GenerateKey(rand.Reader, 2048)
		if err != nil {
			t.Fatal(err)
		}
		keyPEM := string(pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(key)}))
		opts = githubtest.Options{AppID: 77, AppPublicKey: &key.PublicKey, Installations: map[string]int64{"acme": 9},
			OnlineTimeout: 5 * time.Second, OnEvent: opts.OnEvent}
		w.auth = map[string]string{"github-app-id": "77", "github-app-private-key": keyPEM, "scope": "org"}
		w.given = []string{keyPEM, actionVastKey, actionLambdaKey}
	}
	if actionGitHubTune != nil {
		actionGitHubTune(&opts)
	}
	w.gh = githubtest.New(opts)
	t.Cleanup(w.gh.Close)
	w.hosts, err = local.New(local.Options{Dir: filepath.Join(w.dir, "hosts"), Offers: offers, Behavior: behave})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { w.hosts.Close() })

	actionHook = func(env *action.Env) {
		env.NewProvider = func(name string, keys action.Keys, _ *slog.Logger) (provisioner.Provider, error) {
			if name != "local" || keys.Vast != actionVastKey || keys.Lambda != actionLambdaKey {
				return nil, fmt.Errorf("unexpected provider %s or keys", name)
			}
			return w.hosts, nil
		}
		env.Now = func() time.Time { return time.Now().Add(w.offset) }
		env.Tune = func(c *provisioner.Config) {
			c.PollInterval = 100 * time.Millisecond
			c.GitHub = jitSpy{c.GitHub, w.spy}
			c.Bootstrapper = keySpy{c.Bootstrapper, w.spy}
		}
	}
	t.Cleanup(func() { actionHook = nil })
	return w
}

// actionGitHubTune, when set, adjusts the fake GitHub of the next
// actionWorld (the Action's time-to-runner benchmark hears its events).
var actionGitHubTune func(*githubtest.Options)

// stepResult is what one step of the Action left.
type stepResult struct {
	code           int
	stdout, stderr string
	outputs        map[string]string
	summary        string
	outputFile     string
}

// step runs the Action as the composite step of action.yml runs it, with
// these `with:` inputs (plus the credentials and keys).
func (w *actionWorld) step(with map[string]string) stepResult {
	w.t.Helper()
	env, re, err := w.stepEnv(with)
	if err != nil {
		w.t.Fatal(err)
	}
	madeBefore := len(w.spy.all())
	var stdout, stderr bytes.Buffer
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	code := run(ctx, []string{"action"}, &stdout, &stderr, func(k string) string { return env[k] })
	res := stepResult{code: code, stdout: stdout.String(), stderr: stderr.String()}
	w.t.Logf("action %s: exit %d\nstdout:\n%s\nstderr:\n%s", with["mode"], code, res.stdout, res.stderr)
	if res.outputs, err = re.Outputs(); err != nil {
		w.t.Fatalf("GITHUB_OUTPUT: %v", err)
	}
	data, _ := os.ReadFile(re.OutputFile)
	res.outputFile = string(data)
	if res.summary, err = re.Summary(); err != nil {
		w.t.Fatal(err)
	}
	for name := range res.outputs {
		if _, ok := w.meta.Outputs[name]; !ok {
			w.t.Errorf("the binary writes output %q, which action.yml does not declare", name)
		}
	}
	w.checkSecrets(res, madeBefore)
	return res
}

// stepEnv is the environment of one step with these `with:` inputs (plus
// the credentials and keys), and the step's files.
func (w *actionWorld) stepEnv(with map[string]string) (map[string]string, *actiontest.RunnerEnv, error) {
	all := map[string]string{"provider": cmp.Or(w.provider, "local"), "vast-api-key": actionVastKey, "lambda-api-key": actionLambdaKey}
	for k, v := range w.auth {
		all[k] = v
	}
	for k, v := range with {
		all[k] = v
	}
	env, err := w.meta.StepEnv("run", all)
	if err != nil {
		return nil, nil, err
	}
	re, err := actiontest.NewStep(w.dir, actionRunID, w.attempts, actionRepo, w.gh.URL())
	if err != nil {
		return nil, nil, err
	}
	for k, v := range re.Vars() {
		env[k] = v
	}
	for k, v := range w.env {
		env[k] = v
	}
	return env, re, nil
}

// secretPieces are what would show if a secret were printed: the whole
// value, or each line of a multi-line one (the runner masks line by line).
func secretPieces(secrets []string) []string {
	var out []string
	for _, s := range secrets {
		for _, line := range strings.Split(strings.TrimSpace(s), "\n") {
			line = strings.TrimSpace(line)
			if len(line) >= 8 && !strings.HasPrefix(line, "-----") {
				out = append(out, line)
			}
		}
	}
	return out
}

var minted = regexp.MustCompile(`ghs_[A-Za-z0-9]{20,}|eyJ[A-Za-z0-9_-]{10,}\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+`)

// checkSecrets: secrets appear in stdout only inside ::add-mask:: lines,
// and nowhere else; the given ones are masked before anything else is
// printed, and those this step made (after madeBefore) as they are made.
func (w *actionWorld) checkSecrets(res stepResult, madeBefore int) {
	w.t.Helper()
	all := w.spy.all()
	given, made, madeHere := secretPieces(w.given), secretPieces(all), secretPieces(all[madeBefore:])
	masked := map[string]bool{}
	firstOther := -1
	for i, line := range strings.Split(res.stdout, "\n") {
		if v, ok := strings.CutPrefix(line, "::add-mask::"); ok {
			masked[v] = true
			continue
		}
		if firstOther < 0 && line != "" {
			firstOther = i
		}
		for _, s := range append(given, made...) {
			if strings.Contains(line, s) {
				w.t.Errorf("stdout line %d shows a secret outside ::add-mask::: %.60q", i+1, line)
			}
		}
		if m := minted.FindString(line); m != "" {
			w.t.Errorf("stdout line %d shows a token or JWT: %.40q", i+1, m)
		}
	}
	for _, s := range given {
		if !masked[s] {
			w.t.Errorf("a given secret was not masked (%.6s…)", s)
		}
	}
	for _, s := range madeHere {
		if !masked[s] {
			w.t.Errorf("a secret the Action made was not masked (%.6s…)", s)
		}
	}
	if firstOther >= 0 {
		for i, line := range strings.Split(res.stdout, "\n")[firstOther:] {
			for _, s := range given {
				if line == "::add-mask::"+s {
					w.t.Errorf("given secret masked on line %d, after other output", firstOther+i+1)
				}
			}
		}
	}
	for where, text := range map[string]string{"stderr": res.stderr, "GITHUB_OUTPUT": res.outputFile, "the summary": res.summary} {
		for _, s := range append(given, made...) {
			if strings.Contains(text, s) {
				w.t.Errorf("%s shows a secret (%.6s…)", where, s)
			}
		}
		if m := minted.FindString(text); m != "" {
			w.t.Errorf("%s shows a token or JWT: %.12q", where, m)
		}
	}
}

var labelRE = regexp.MustCompile(fmt.Sprintf(`^crabbox-%d-1-(l[a-z2-9]{10})$`, actionRunID))

func requireSSHD(t *testing.T) {
	t.Helper()
	if _, err := os.Stat("/usr/sbin/sshd"); err != nil {
		if os.Getenv("CI") != "" {
			t.Fatal("/usr/sbin/sshd missing: install openssh-server (scripts/test.sh does)")
		}
		t.Skip("/usr/sbin/sshd missing: install openssh-server")
	}
}

// TestActionStartJobStop is the three-job workflow: start leases a host and
// leaves an online runner with the unique label; a job queued with that
// label runs on it (or none does); stop removes the runner and the host;
// stop again finds nothing and succeeds.
func TestActionStartJobStop(t *testing.T) {
	_, tarballSum, err := githubtest.RunnerTarball("2.329.0")
	if err != nil {
		t.Fatal(err)
	}
	const (
		jobRuns    = "runs"
		jobNever   = "never"
		jobRunning = "still running"
	)
	tests := []struct {
		name string
		app  bool
		job  string
		// pinRunner gives the runner release as inputs instead of asking GitHub.
		pinRunner bool
	}{
		{"token, repo scope, a job runs", false, jobRuns, false},
		{"App, org scope, a job runs", true, jobRuns, false},
		{"token, the job never came, runner pinned", false, jobNever, true},
		{"token, stop while the job still runs", false, jobRunning, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			w := newActionWorld(t, tt.app, nil, nil)
			with := map[string]string{
				"mode": "start", "gpu": "A100", "min-gpu-memory": "40", "max-price": "2.50",
				"labels": "extra-one", "timeout": "2m", "max-lifetime": "1h",
			}
			if tt.pinRunner {
				with["runner-version"], with["runner-sha256"], with["runner-url"] = "2.329.0", tarballSum, w.gh.TarballURLTemplate()
			}
			start := w.step(with)
			if start.code != 0 {
				t.Fatalf("start failed: %d", start.code)
			}
			out := start.outputs
			m := labelRE.FindStringSubmatch(out["label"])
			if m == nil || out["lease-id"] != m[1] || out["runner-name"] != "crabbox-action-"+m[1] {
				t.Fatalf("outputs %v", out)
			}
			// The cheapest A100 with 40 GB under $2.50 of the local offers.
			if out["provider"] != "local" || out["price-per-hour"] != "0.890" || out["gpu"] != "A100 PCIE" || out["instance-id"] == "" {
				t.Fatalf("outputs %v", out)
			}
			for _, want := range []string{"::group::Leasing a GPU host", "::endgroup::", "GPU: NVIDIA", "online after"} {
				if !strings.Contains(start.stdout, want) {
					t.Errorf("start's log lacks %q", want)
				}
			}
			if !strings.Contains(start.summary, "| local | A100 PCIE | $0.89 |") {
				t.Errorf("summary:\n%s", start.summary)
			}

			runners := w.gh.Runners()
			if len(runners) != 1 || runners[0].Name != out["runner-name"] || runners[0].Status != "online" ||
				!slices.Equal(runners[0].Labels, []string{out["label"], "extra-one"}) {
				t.Fatalf("runners %+v", runners)
			}
			if tt.app != (runners[0].Org == "acme") || !tt.app && runners[0].Repo != actionRepo {
				t.Fatalf("runner registered in the wrong scope: %+v", runners[0])
			}
			live := w.hosts.Live()
			if len(live) != 1 || live[0].Marker.LeaseID != out["lease-id"] || live[0].Marker.Deployment != "action" ||
				live[0].Marker.Expires.Before(time.Now().Add(50*time.Minute)) || live[0].Marker.Expires.After(time.Now().Add(61*time.Minute)) {
				t.Fatalf("hosts %+v", live)
			}

			if tt.pinRunner == strings.Contains(start.stdout, "from GitHub's runners/downloads") {
				t.Errorf("runner release from the wrong place (pinned: %t)", tt.pinRunner)
			}
			switch tt.job {
			case jobRuns, jobRunning:
				script := "nvidia-smi --query-gpu=name --format=csv,noheader"
				want := githubtest.StatusCompleted
				if tt.job == jobRunning {
					script, want = "sleep 600", githubtest.StatusInProgress
				}
				id := w.gh.QueueJob(githubtest.JobSpec{Repo: actionRepo, Org: "acme", Labels: []string{out["label"]}, Script: script})
				ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
				job, err := w.gh.WaitJob(ctx, id, want)
				cancel()
				if err != nil {
					t.Fatal(err)
				}
				if job.RunnerName != out["runner-name"] || tt.job == jobRuns && job.Conclusion != "success" {
					t.Fatalf("job %+v", job)
				}
			}

			stop := w.step(map[string]string{"mode": "stop", "label": out["label"]})
			if stop.code != 0 {
				t.Fatalf("stop failed: %d", stop.code)
			}
			if rs := w.gh.Runners(); tt.job != jobRunning && len(rs) != 0 {
				t.Errorf("runners left: %+v", rs)
			}
			if tt.job == jobRunning && !strings.Contains(stop.stdout, "::warning::runner "+out["runner-name"]+" is still running a job") {
				t.Error("stop during a job does not warn that GitHub kept the busy runner")
			}
			if live := w.hosts.Live(); len(live) != 0 {
				t.Errorf("hosts left: %+v", live)
			}
			so := stop.outputs
			if so["lease-id"] != out["lease-id"] || so["provider"] != "local" || so["cost"] == "" || so["run-time"] == "" {
				t.Errorf("stop outputs %v", so)
			}
			if !strings.Contains(stop.summary, "| run time | cost |") || !strings.Contains(stop.summary, "| local | A100 PCIE | $0.89 |") {
				t.Errorf("stop summary:\n%s", stop.summary)
			}

			// From the lease id alone, and again: nothing to do, no failure.
			again := w.step(map[string]string{"mode": "stop", "lease-id": out["lease-id"]})
			wantAgain := "already released"
			if tt.job == jobRunning {
				// The busy runner is still registered: stop tries it again.
				wantAgain = "its host was already gone"
			}
			if again.code != 0 || !strings.Contains(again.stdout, wantAgain) {
				t.Errorf("second stop: exit %d, want %q", again.code, wantAgain)
			}
		})
	}
}

// TestActionStartFails: a start that cannot get a runner online fails the
// step with one clear ::error::, leaves no host and no runner, and still
// writes the label and lease id, so the stop step succeeds on them.
func TestActionStartFails(t *testing.T) {
	twoMachines := []provisioner.Offer{
		{ID: "a100-m1", GPU: "A100 SXM4", GPUCount: 1, GPUMemoryGB: 80, PricePerHour: 1.10, Region: "local", MachineID: "m1"},
		{ID: "a100-m2", GPU: "A100 SXM4", GPUCount: 1, GPUMemoryGB: 80, PricePerHour: 1.20, Region: "local", MachineID: "m2"},
	}
	tests := []struct {
		name    string
		offers  []provisioner.Offer
		behave  local.Behavior
		timeout string
		want    []string
	}{
		{"every host fails its GPU check", twoMachines, local.Behavior{BrokenGPU: true}, "2m",
			[]string{"no GPU runner started, and nothing was left behind", "no fitting offer", "a100-m1", "a100-m2", "GPU check failed"}},
		{"no host boots within the timeout", nil, local.Behavior{NeverBoot: true}, "4s",
			[]string{"no GPU runner started, and nothing was left behind", "no runner online within the timeout"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			w := newActionWorld(t, false, tt.offers, func(int, provisioner.CreateRequest) local.Behavior { return tt.behave })
			start := w.step(map[string]string{"mode": "start", "gpu": "A100", "timeout": tt.timeout})
			if start.code != 1 {
				t.Fatalf("start exit %d, want 1", start.code)
			}
			var errLines []string
			for _, line := range strings.Split(start.stdout, "\n") {
				if strings.HasPrefix(line, "::error::") {
					errLines = append(errLines, line)
				}
			}
			if len(errLines) != 1 {
				t.Fatalf("want one ::error:: line, got %q", errLines)
			}
			for _, want := range tt.want {
				if !strings.Contains(errLines[0], want) {
					t.Errorf("error %q lacks %q", errLines[0], want)
				}
			}
			if w.hosts.Created() == 0 {
				t.Fatal("no host was even tried")
			}
			if live := w.hosts.Live(); len(live) != 0 {
				t.Errorf("hosts left: %+v", live)
			}
			if rs := w.gh.Runners(); len(rs) != 0 {
				t.Errorf("runners left: %+v", rs)
			}
			if _, ok := start.outputs["provider"]; ok || labelRE.FindString(start.outputs["label"]) == "" || start.outputs["lease-id"] == "" {
				t.Errorf("outputs of a failed start: %v", start.outputs)
			}
			stop := w.step(map[string]string{"mode": "stop", "label": start.outputs["label"], "lease-id": start.outputs["lease-id"]})
			if stop.code != 0 || !strings.Contains(stop.stdout, "already released") {
				t.Errorf("stop after a failed start: exit %d", stop.code)
			}
		})
	}
}

// TestActionBadInputs: a mistake in the inputs fails before anything is
// leased, with a message that names the input and never a secret's value.
func TestActionBadInputs(t *testing.T) {
	tests := []struct {
		name string
		with map[string]string
		want string
	}{
		{"no mode", map[string]string{"mode": "restart"}, "input mode: \"restart\" is not start, stop or gc"},
		{"stop without a lease", map[string]string{"mode": "stop"}, "input lease-id: stop needs lease-id or label"},
		{"stop with a foreign label", map[string]string{"mode": "stop", "label": "gpu"}, "input label: \"gpu\" is not a label written by start"},
		{"timeout longer than the lifetime", map[string]string{"mode": "start", "timeout": "2h", "max-lifetime": "1h"}, "input timeout: 2h0m0s is not shorter than max-lifetime 1h0m0s"},
		{"half a runner release", map[string]string{"mode": "start", "runner-version": "2.330.0"}, "input runner-version: give runner-version and runner-sha256"},
		{"unknown provider", map[string]string{"mode": "start", "provider": "aws"}, "input provider: unknown provider \"aws\""},
		{"gc with a bad deployment", map[string]string{"mode": "gc", "deployment": "Not/Ours"}, "input deployment"},
	}
	w := newActionWorld(t, false, nil, nil)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res := w.step(tt.with)
			if res.code != 1 || !strings.Contains(res.stdout, "::error::"+tt.want) {
				t.Errorf("exit %d, want 1 and ::error::%s", res.code, tt.want)
			}
			if !strings.Contains(res.stderr, tt.want) {
				t.Errorf("stderr lacks %q", tt.want)
			}
			if w.hosts.Created() != 0 || len(w.gh.Runners()) != 0 {
				t.Error("something was leased")
			}
		})
	}
}
