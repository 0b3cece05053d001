package main

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/crabbox/crabbox-runner/github/githubtest"
	"github.com/crabbox/crabbox-runner/providers/lambda"
	"github.com/crabbox/crabbox-runner/providers/lambda/lambdatest"
	"github.com/crabbox/crabbox-runner/providers/vast/vasttest"
	"github.com/crabbox/crabbox-runner/provisioner"
)

const (
	smokeVastKey   = "vast-smoke-key-that-must-never-be-printed-0001"
	smokeLambdaKey = "secret_lambdaSmokeKeyThatMustNeverBePrinted01"
)

// smokeMarket has one A100 at $0.70/h and one 4090 at $0.30/h.
var smokeMarket = []vasttest.Offer{
	{ID: 9200001, MachineID: 921, GPUName: "A100 PCIE", NumGPUs: 1, GPURAM: 40960, DphBase: 0.70, StorageCost: 0.2, Reliability: 0.99, Geolocation: "Texas, US", DirectPortCount: 20, DiskSpace: 500, CUDAMaxGood: 12.6},
	{ID: 9200002, MachineID: 922, GPUName: "RTX 4090", NumGPUs: 1, GPURAM: 24564, DphBase: 0.30, StorageCost: 0.1, Reliability: 0.99, Geolocation: "Texas, US", DirectPortCount: 20, DiskSpace: 500, CUDAMaxGood: 12.8},
}

// smokeRig is the world a smoke runs in: fake GitHub (which also serves
// the runner tarball), fake Vast and fake Lambda whose hosts are sshd on
// loopback, and a config file as a user would write it.
type smokeRig struct {
	t      *testing.T
	dir    string
	cfg    string
	env    map[string]string
	gh     *githubtest.Server
	vast   *vasttest.Server
	lambda *lambdatest.Server
	spy    *secretSpy
}

type smokeRigOptions struct {
	vastBehavior   func(seq int, o vasttest.Offer, label string) vasttest.Behavior
	lambdaBehavior func(seq int, req lambdatest.LaunchRequest) lambdatest.Behavior
	github         bool   // give GitHub credentials and a scope
	sha256         string // the runner checksum in the config; the tarball's when empty
}

func newSmokeRig(t *testing.T, o smokeRigOptions) *smokeRig {
	t.Helper()
	if _, err := os.Stat("/usr/sbin/sshd"); err != nil {
		if os.Getenv("CI") != "" {
			t.Fatal("/usr/sbin/sshd missing in CI: install openssh-server")
		}
		t.Skip("/usr/sbin/sshd missing: install openssh-server")
	}
	r := &smokeRig{t: t, dir: t.TempDir(), spy: &secretSpy{}}
	r.gh = githubtest.New(githubtest.Options{Tokens: []string{testToken}, OnlineTimeout: 5 * time.Second})
	t.Cleanup(r.gh.Close)
	r.vast = vasttest.New(vasttest.Options{APIKey: smokeVastKey, Dir: filepath.Join(r.dir, "vast"), Offers: smokeMarket, Behavior: o.vastBehavior})
	t.Cleanup(r.vast.Close)
	r.lambda = lambdatest.New(t, lambdatest.Options{APIKey: smokeLambdaKey, BootDelay: 100 * time.Millisecond, Behavior: o.lambdaBehavior})
	_, sum, err := githubtest.RunnerTarball("2.330.0")
	if err != nil {
		t.Fatal(err)
	}
	if o.sha256 != "" {
		sum = o.sha256
	}
	r.cfg = filepath.Join(r.dir, "crabbox-runner.yaml")
	user := lambdatest.CurrentUser()
	yaml := fmt.Sprintf(`deployment: smk
runner:
  version: "2.330.0"
  url: %s
  sha256: %q
providers:
  vast: {ssh_user: %s, min_request_interval: 2ms, allow_private_endpoints: true}
  lambda: {ssh_user: %s, min_request_interval: 5ms, allow_private_endpoints: true}
classes:
  - name: a100
    labels: [self-hosted, linux, crabbox, a100]
    gpu: {name: A100, count: 1}
    providers: [vast, lambda]
    max_price_per_hour: 2.50
`, r.gh.TarballURLTemplate(), sum, user, user)
	if err := os.WriteFile(r.cfg, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	r.env = map[string]string{
		"CRABBOX_CONFIG":         r.cfg,
		"VAST_API_KEY":           smokeVastKey,
		"CRABBOX_VAST_API_URL":   r.vast.URL(),
		"LAMBDA_API_KEY":         smokeLambdaKey,
		"CRABBOX_LAMBDA_API_URL": r.lambda.URL(),
	}
	if o.github {
		r.env["CRABBOX_GITHUB_TOKEN"] = testToken
		r.env["CRABBOX_GITHUB_API_URL"] = r.gh.URL()
	}
	lambdaHook = func(lo *lambda.Options) {
		lo.SSHAddress = r.lambda.SSHAddress
		lo.LaunchInterval = 50 * time.Millisecond
		lo.KeyRetryInterval = 100 * time.Millisecond
		lo.Retry = lambda.RetryPolicy{InitialInterval: 10 * time.Millisecond, MaxInterval: 100 * time.Millisecond}
	}
	smokeHook = func(c *provisioner.Config, s *smoke) {
		c.PollInterval = 100 * time.Millisecond
		if c.GitHub != nil {
			c.GitHub = spyGitHub{c.GitHub, r.spy}
		}
		c.Bootstrapper = spyBootstrapper{c.Bootstrapper, r.spy}
		s.poll = 50 * time.Millisecond
		s.cleanupBudget = 30 * time.Second
	}
	t.Cleanup(func() { lambdaHook, smokeHook = nil, nil })
	return r
}

// smoke runs `crabbox-runner smoke` in-process; ctx stands for the
// signals main turns into a cancelled context.
func (r *smokeRig) smoke(ctx context.Context, args ...string) (code int, out, errs string) {
	var o, e syncBuffer
	code = run(ctx, append([]string{"smoke"}, args...), &o, &e, func(k string) string { return r.env[k] })
	return code, o.String(), e.String()
}

func lastLine(s string) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	return lines[len(lines)-1]
}

// noSecrets fails the test when any secret the run had, given or made,
// shows in what it printed.
func (r *smokeRig) noSecrets(text string, wantMade int) {
	r.t.Helper()
	made := r.spy.all()
	if len(made) < wantMade {
		r.t.Fatalf("the spy saw %d secrets made by the run, want at least %d: the check would prove little", len(made), wantMade)
	}
	for _, s := range append(made, smokeVastKey, smokeLambdaKey, testToken) {
		if strings.Contains(text, s) {
			r.t.Errorf("a secret (%.8s…) appears in the smoke's output", s)
		}
	}
}

// nothingLeft checks the fakes hold no instance, no Lambda key and no runner.
func (r *smokeRig) nothingLeft() {
	r.t.Helper()
	if live := r.vast.Live(); len(live) != 0 {
		r.t.Errorf("vast instances left: %+v", live)
	}
	if live := r.lambda.Live(); len(live) != 0 {
		r.t.Errorf("lambda instances left: %v", live)
	}
	if keys := r.lambda.Keys(); len(keys) != 0 {
		r.t.Errorf("lambda SSH keys left: %v", keys)
	}
	if rs := r.gh.Runners(); len(rs) != 0 {
		r.t.Errorf("runners left: %+v", rs)
	}
}

// Plan mode makes read-only calls only: the fakes' request logs show no
// call that changes anything (Vast's offer search is a POST that reads:
// POST /api/v0/bundles/, vasttest.OpSearch).
func TestSmokePlanReadsOnly(t *testing.T) {
	r := newSmokeRig(t, smokeRigOptions{})
	for _, provider := range []string{"vast", "lambda"} {
		code, out, errs := r.smoke(context.Background(), "--provider", provider, "--gpu", "A100", "--max-price", "2", "--max-minutes", "10")
		if code != 0 || lastLine(out) != "classification=planned" || !strings.Contains(out, "at most $") {
			t.Fatalf("%s plan: exit %d\n%s\n%s", provider, code, out, errs)
		}
		t.Logf("%s plan:\n%s", provider, out)
		r.noSecrets(out+errs, 0)
	}
	// $0.70/h (Vast's A100) for 10 minutes.
	for _, req := range r.vast.Requests() {
		if req.Method != http.MethodGet && req.Op != vasttest.OpSearch {
			t.Errorf("plan mode sent %s %s to Vast", req.Method, req.Path)
		}
	}
	for _, req := range r.lambda.Requests() {
		if req.Method != http.MethodGet {
			t.Errorf("plan mode sent %s %s to Lambda", req.Method, req.Path)
		}
	}
	if len(r.vast.Requests()) == 0 || len(r.lambda.Requests()) == 0 {
		t.Fatal("plan mode asked neither fake anything")
	}

	// A class of the config file that names both providers, with the
	// key of the smoke's provider only: the other key is not needed.
	r.env["LAMBDA_API_KEY"] = ""
	code, out, errs := r.smoke(context.Background(), "--provider", "vast", "--class", "a100")
	if code != 0 || lastLine(out) != "classification=planned" || !strings.Contains(out, "class a100, at most $1.00/h") {
		t.Fatalf("plan of class a100 with VAST_API_KEY alone: exit %d\n%s\n%s", code, out, errs)
	}
}

// The whole lifecycle passes on Vast and on Lambda, with GitHub (JIT runner
// registered, online, removed) and without (runner installed only); the
// host is destroyed, verified gone, and nothing secret is printed.
func TestSmokePassed(t *testing.T) {
	for _, tc := range []struct {
		provider string
		github   bool
	}{{"vast", true}, {"lambda", true}, {"vast", false}} {
		t.Run(fmt.Sprintf("%s/github=%v", tc.provider, tc.github), func(t *testing.T) {
			r := newSmokeRig(t, smokeRigOptions{github: tc.github})
			recDir := t.TempDir()
			args := []string{"--provider", tc.provider, "--gpu", "A100", "--max-price", "2", "--yes", "--record", recDir}
			if tc.github {
				args = append(args, "--scope", actionRepo)
			}
			code, out, errs := r.smoke(context.Background(), args...)
			t.Logf("transcript:\n%s", out)
			if code != 0 || lastLine(out) != "classification=passed" {
				t.Fatalf("exit %d\n%s", code, errs)
			}
			want := []string{"stage key", "stage offer", "stage create", "stage boot", "stage bootstrap", "stage destroy", "stage verify",
				"sha256 verified", "GPU: ", "cost so far: about $",
				// The host's timing of the tarball's download (docs/live-smoke.md,
				// "What a run tells about time to runner").
				"runner tarball fetched by the ", " MB/s), ", "of it after"}
			if tc.github {
				want = append(want, "stage register", "stage online", "GitHub no longer lists the runner")
			}
			for _, w := range want {
				if !strings.Contains(out, w) {
					t.Errorf("transcript lacks %q", w)
				}
			}
			// The host carried the smoke mark: in Vast's label, in
			// Lambda's name and tags.
			switch tc.provider {
			case "vast":
				insts := r.vast.Instances()
				if len(insts) != 1 || !strings.HasSuffix(insts[0].Label, ":smoke") {
					t.Errorf("vast instances %+v", insts)
				}
			case "lambda":
				ls := r.lambda.Launches()
				m, ok := provisioner.ParseMarker(ls[len(ls)-1].Name)
				var tagged bool
				for _, tag := range ls[len(ls)-1].Tags {
					tagged = tagged || (tag.Key == lambda.TagSmoke && tag.Value == "true")
				}
				if !ok || !m.Smoke || !tagged {
					t.Errorf("lambda launch %q, tags %+v", ls[len(ls)-1].Name, ls[len(ls)-1].Tags)
				}
			}
			r.nothingLeft()
			made := 1 // the lease's SSH private key
			if tc.github {
				made = 2 // and the JIT config
			}
			r.noSecrets(out+errs, made)
			// --record: every provider exchange, from the key check to
			// the verification that the host is gone, and no secret of
			// the run in the file.
			files, _ := filepath.Glob(filepath.Join(recDir, tc.provider+"-*.jsonl"))
			if len(files) != 1 {
				t.Fatalf("recordings in %s: %v, want one", recDir, files)
			}
			rec, err := os.ReadFile(files[0])
			if err != nil {
				t.Fatal(err)
			}
			wantCalls := map[string][]string{
				"vast":   {`"method":"PUT","path":"/api/v0/asks/`, `"method":"DELETE","path":"/api/v0/instances/`},
				"lambda": {`"method":"POST","path":"/api/v1/instance-operations/launch"`, `"path":"/api/v1/instance-operations/terminate"`},
			}[tc.provider]
			for _, w := range append(wantCalls, `"source":"real"`, `"tool":"crabbox-runner `) {
				if !bytes.Contains(rec, []byte(w)) {
					t.Errorf("the recording lacks %s", w)
				}
			}
			r.noSecrets(string(rec), made)
		})
	}
}

// Each way a smoke can go wrong gives its classification and exit code,
// and leaves nothing behind.
func TestSmokeClassifications(t *testing.T) {
	neverBoots := func(int, vasttest.Offer, string) vasttest.Behavior { return vasttest.Behavior{NeverBoot: true} }
	brokenGPU := func(int, vasttest.Offer, string) vasttest.Behavior { return vasttest.Behavior{BrokenGPU: true} }
	for _, tc := range []struct {
		name     string
		provider string // vast when empty
		rig      smokeRigOptions
		env      map[string]string // over the rig's; "" unsets
		setup    func(r *smokeRig)
		args     []string
		want     string
		code     int
	}{
		{name: "no key", env: map[string]string{"VAST_API_KEY": ""},
			want: "classification=environment_blocked reason=VAST_API_KEY_missing", code: 3},
		{name: "key rejected", env: map[string]string{"VAST_API_KEY": "vast-a-key-that-vast-does-not-know-0002"},
			want: "classification=environment_blocked reason=key_rejected", code: 3},
		{name: "lambda key rejected", provider: "lambda", env: map[string]string{"LAMBDA_API_KEY": "secret_aLambdaKeyLambdaDoesNotKnow0003"},
			want: "classification=environment_blocked reason=key_rejected", code: 3},
		// The provider's answers echo the key: the transcript must not.
		{name: "create refused, echoing the key", setup: func(r *smokeRig) {
			r.vast.FailNext(vasttest.OpCreate, vasttest.Fault{Status: 400, ContentType: "application/json",
				Body: `{"success": false, "error": "invalid_args", "msg": "bad request from key ` + smokeVastKey + `"}`})
		}, want: "classification=failed stage=create reason=provider_error", code: 1},
		// No GitHub and no runner release in the config: told after the
		// read-only stages, and nothing is rented.
		{name: "no runner release", setup: func(r *smokeRig) {
			data, err := os.ReadFile(r.cfg)
			if err != nil {
				r.t.Fatal(err)
			}
			text := string(data)
			text = text[:strings.Index(text, "runner:")] + text[strings.Index(text, "providers:"):]
			if err := os.WriteFile(r.cfg, []byte(text), 0o600); err != nil {
				r.t.Fatal(err)
			}
		}, want: "classification=environment_blocked reason=runner_release_missing", code: 3},
		{name: "no offer under the price", args: []string{"--max-price", "0.10"},
			want: "classification=environment_blocked reason=no_offer_under_max_price", code: 3},
		{name: "host never boots", rig: smokeRigOptions{vastBehavior: neverBoots}, args: []string{"--max-minutes", "0.08"},
			want: "classification=failed stage=boot reason=boot_timeout", code: 1},
		{name: "GPU check fails", rig: smokeRigOptions{vastBehavior: brokenGPU},
			want: "classification=failed stage=bootstrap reason=gpu_check_failed", code: 1},
		{name: "runner checksum wrong", rig: smokeRigOptions{sha256: strings.Repeat("ab", 32)},
			want: "classification=failed stage=bootstrap reason=runner_checksum_mismatch", code: 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := newSmokeRig(t, tc.rig)
			for k, v := range tc.env {
				r.env[k] = v
			}
			if tc.setup != nil {
				tc.setup(r)
			}
			provider := tc.provider
			if provider == "" {
				provider = "vast"
			}
			args := append([]string{"--provider", provider, "--gpu", "A100", "--max-price", "2", "--yes"}, tc.args...)
			code, out, errs := r.smoke(context.Background(), args...)
			t.Logf("transcript:\n%s", out)
			if code != tc.code || lastLine(out) != tc.want {
				t.Fatalf("exit %d, last line %q; want %d, %q\n%s", code, lastLine(out), tc.code, tc.want, errs)
			}
			r.nothingLeft()
			if tc.code == 3 {
				for _, req := range r.vast.Requests() {
					if req.Op == vasttest.OpCreate {
						t.Errorf("blocked, yet it sent %s %s", req.Method, req.Path)
					}
				}
			}
			r.noSecrets(out+errs, 0)
			for _, k := range tc.env {
				if k != "" && strings.Contains(out+errs, k) {
					t.Errorf("the rejected key appears in the output")
				}
			}
		})
	}
}

// smokeChild runs `crabbox-runner smoke` as a child process (the test
// binary as crabbox-runner, see TestMain), so it can be signalled.
func (r *smokeRig) smokeChild(args ...string) (*exec.Cmd, *syncBuffer) {
	r.t.Helper()
	cmd := exec.Command(os.Args[0], append([]string{"smoke"}, args...)...)
	cmd.Env = append(os.Environ(), "CRABBOX_TEST_MAIN=1")
	for k, v := range r.env {
		cmd.Env = append(cmd.Env, k+"="+v)
	}
	out := &syncBuffer{}
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		r.t.Fatal(err)
	}
	r.t.Cleanup(func() {
		if cmd.ProcessState == nil {
			cmd.Process.Kill()
			cmd.Wait()
		}
	})
	return cmd, out
}

// waitVastLive waits for n live instances and for the smoke to have its
// create call's answer: the fake lists an instance before it answers the
// call, and a signal in between interrupts the create, not the boot.
func (r *smokeRig) waitVastLive(n int, out *syncBuffer) []vasttest.Instance {
	r.t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	created := regexp.MustCompile(`stage create +ok`)
	for {
		if live := r.vast.Live(); len(live) == n && created.MatchString(out.String()) {
			return live
		}
		if time.Now().After(deadline) {
			r.t.Fatalf("no %d live Vast instance(s) within a minute; the smoke printed:\n%s", n, out.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// SIGINT after the create: the host is destroyed before the smoke exits.
// SIGKILL after the create: the host stays, carrying the smoke mark; gc
// sees it as the deployment's, and the next smoke destroys it first.
func TestSmokeSignals(t *testing.T) {
	// The first two hosts never boot: each smoke is signalled while it
	// waits for SSH, after its create.
	r := newSmokeRig(t, smokeRigOptions{vastBehavior: func(seq int, _ vasttest.Offer, _ string) vasttest.Behavior {
		return vasttest.Behavior{NeverBoot: seq <= 2}
	}})
	// The class of the config file (gc below covers the providers the
	// classes name), under the smoke's cap: min(2.50, --max-price 2).
	args := []string{"--provider", "vast", "--class", "a100", "--max-price", "2", "--yes"}

	cmd, out := r.smokeChild(args...)
	r.waitVastLive(1, out)
	if err := cmd.Process.Signal(syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	cmd.Wait()
	left := r.vast.Live() // at once: destroyed before exit, not after
	t.Logf("SIGINT transcript:\n%s", out.String())
	if code := cmd.ProcessState.ExitCode(); code != 1 || lastLine(out.String()) != "classification=failed stage=boot reason=interrupted" {
		t.Fatalf("after SIGINT: exit %d, last line %q", code, lastLine(out.String()))
	}
	if len(left) != 0 {
		t.Fatalf("after SIGINT the smoke exited leaving %+v", left)
	}
	r.noSecrets(out.String(), 0)

	// Killed: nothing runs its cleanup. Its marker expires at its
	// --max-minutes (6 s here), after which gc destroys it.
	cmd, out = r.smokeChild(append(args, "--max-minutes", "0.1")...)
	live := r.waitVastLive(1, out)
	cmd.Process.Signal(syscall.SIGKILL)
	cmd.Wait()
	m, ok := provisioner.ParseMarker(live[0].Label)
	if !ok || !m.Smoke || m.Deployment != "smk" || !strings.HasSuffix(live[0].Label, ":smoke") {
		t.Fatalf("the killed smoke's host carries label %q", live[0].Label)
	}
	time.Sleep(time.Until(m.Expires.Add(time.Second)))
	gcEnv := map[string]string{"CRABBOX_GITHUB_TOKEN": testToken, "CRABBOX_GITHUB_API_URL": r.gh.URL(), "CRABBOX_DATABASE_URL": "sqlite:" + filepath.Join(r.dir, "none.db")}
	for k, v := range r.env {
		gcEnv[k] = v
	}
	code, gcOut, gcErr := runCLI(t, gcEnv, "gc", "--no-store")
	if code != 0 || !strings.Contains(gcOut, fmt.Sprint(live[0].ID)) {
		t.Fatalf("gc (dry run) does not list the killed smoke's host %d: exit %d\n%s\n%s", live[0].ID, code, gcOut, gcErr)
	}

	code, text, errs := r.smoke(context.Background(), args...)
	t.Logf("next smoke:\n%s", text)
	if code != 0 || lastLine(text) != "classification=passed" {
		t.Fatalf("next smoke: exit %d\n%s", code, errs)
	}
	if !strings.Contains(text, fmt.Sprintf("found instance %d of lease %s, left by an earlier smoke", live[0].ID, m.LeaseID)) ||
		!strings.Contains(text, "stage leftovers") {
		t.Errorf("the next smoke does not say it destroyed the leftover host first")
	}
	r.nothingLeft()
}
