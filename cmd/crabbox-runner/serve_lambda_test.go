package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/crabbox/crabbox-runner/github/githubtest"
	"github.com/crabbox/crabbox-runner/providers/lambda"
	"github.com/crabbox/crabbox-runner/providers/lambda/lambdatest"
	"github.com/crabbox/crabbox-runner/provisioner"
)

// e2eLambdaTune, when set, changes the Lambda provider's options after
// startServeLambda's (the benchmark's scaled launch spacing).
var e2eLambdaTune func(*lambda.Options)

const testLambdaKey = "secret_lambdaE2EKeyThatMustNeverBeLogged01"

// lambdaE2E is a serve run whose class rents from the fake Lambda through
// the real provider factory; the e2e helpers of serve_test.go drive it.
type lambdaE2E struct {
	*e2e
	lambda *lambdatest.Server
}

// startServeLambda runs the real `crabbox-runner serve` with a class whose
// providers is [lambda]: LAMBDA_API_KEY and CRABBOX_LAMBDA_API_URL point at
// the fake, providers.lambda.ssh_user is the current user (the fake's sshd
// runs as it), and the provider is built by its factory from the config.
// lambdaHook only maps the fake's IPs to its loopback sshd ports and
// shortens the 12 s launch spacing. classLines are added to the class.
func startServeLambda(t *testing.T, fake *lambdatest.Server, classLines ...string) *lambdaE2E {
	t.Helper()
	if _, err := os.Stat("/usr/sbin/sshd"); err != nil {
		if os.Getenv("CI") != "" {
			t.Fatal("/usr/sbin/sshd missing in CI: install openssh-server")
		}
		t.Skip("/usr/sbin/sshd missing: install openssh-server")
	}
	dir := t.TempDir()
	e := newServeE2E(t)
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
  lambda: {ssh_user: %s, min_request_interval: 5ms, allow_private_endpoints: true}
classes:
  - name: a100
    labels: [self-hosted, linux, x64, crabbox, a100]
    gpu: {name: A100, count: 1, min_memory_gb: 40}
    providers: [lambda]
    max_price_per_hour: 2.50
    boot_timeout: 60s
    idle_timeout: 5m
    max_lifetime: 30m
`, e.dbPath, e.gh.TarballURLTemplate(), sum, lambdatest.CurrentUser()) + strings.Join(append(classLines, ""), "\n")
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
		"LAMBDA_API_KEY":         fake.APIKey(),
		"CRABBOX_LAMBDA_API_URL": fake.URL(),
	}
	addr := freeAddr(t)
	e.url = "http://" + addr
	lambdaHook = func(o *lambda.Options) {
		o.SSHAddress = fake.SSHAddress
		o.LaunchInterval = 50 * time.Millisecond
		o.KeyRetryInterval = 100 * time.Millisecond // the key goes once Lambda no longer lists the instance
		o.Retry = lambda.RetryPolicy{InitialInterval: 10 * time.Millisecond, MaxInterval: 100 * time.Millisecond}
		if e2eLambdaTune != nil {
			e2eLambdaTune(o)
		}
	}
	serveHook = func(o *appOptions) {
		o.Tune = func(c *provisioner.Config) {
			c.PollInterval = 100 * time.Millisecond
			c.QueuePollInterval = 50 * time.Millisecond
			c.GitHub = spyGitHub{c.GitHub, e.spy}
			c.Bootstrapper = spyBootstrapper{c.Bootstrapper, e.spy}
		}
	}
	t.Cleanup(func() { serveHook, lambdaHook = nil, nil })
	e.runServe(addr, env)
	return &lambdaE2E{e2e: e, lambda: fake}
}

// The story of one job on Lambda: queued → the launch in the cheapest
// region finds no capacity although instance-types lists it → the next
// region launches → the host presents the host key crabbox-runner put in
// its user-data, so the first connection is verified, not trusted →
// bootstrapped → the job runs → completed → the instance is terminated and
// the lease's SSH key deleted; nothing is left, and every request to Lambda
// matched its OpenAPI document.
func TestServeLambdaEndToEnd(t *testing.T) {
	fake := lambdatest.New(t, lambdatest.Options{APIKey: testLambdaKey, BootDelay: 200 * time.Millisecond})
	// The three A100 regions cost the same; offers are then in id order,
	// so us-east-1 is tried first.
	fake.NoCapacity("gpu_1x_a100_sxm4", "us-east-1")
	e := startServeLambda(t, fake)

	id := e.queue("train")
	job := e.waitJob(id)
	if job.Conclusion != "success" || !strings.HasPrefix(job.RunnerName, "crabbox-e2e-") {
		t.Fatalf("job: conclusion %q runner %q\n%s", job.Conclusion, job.RunnerName, tail(e.logs.String(), 40))
	}
	e.waitFor("instance terminated, key deleted, runner removed", 60*time.Second, func() bool {
		return len(fake.Live()) == 0 && len(fake.Keys()) == 0 && len(e.gh.Runners()) == 0
	})
	e.waitReleased()
	metrics := e.get("/metrics")
	for _, want := range []string{
		`crabbox_provider_calls_total{operation="create",provider="lambda",status="unavailable"} 1`,
		`crabbox_provider_calls_total{operation="create",provider="lambda",status="ok"} 1`,
		`crabbox_provider_calls_total{operation="destroy",provider="lambda",status="ok"} 1`,
	} {
		if !strings.Contains(metrics, want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
	e.stop()

	// Two launches: us-east-1 refused for capacity, us-south-1 launched.
	var launches []string
	for _, r := range fake.Requests() {
		if r.Path == "/api/v1/instance-operations/launch" {
			launches = append(launches, fmt.Sprintf("%d %s", r.Status, r.Code))
		}
	}
	ls := fake.Launches()
	if len(launches) != 2 || launches[0] != "400 "+lambda.CodeInsufficientCapacity || launches[1] != "200 " ||
		ls[0].RegionName != "us-east-1" || ls[1].RegionName != "us-south-1" {
		t.Fatalf("launches %v in %s, %s", launches, ls[0].RegionName, ls[len(ls)-1].RegionName)
	}
	l := e.leases()[0]
	if l.BoundJobID != id || l.RunnerName != job.RunnerName || l.Provider != "lambda" || l.OfferID != "gpu_1x_a100_sxm4@us-south-1" ||
		l.GPU != "A100 SXM4" || l.PricePerHour != 1.29 || l.Region != "us-south-1" {
		t.Fatalf("lease %+v", l)
	}
	// The host key the lease expected is the one the launch's user-data
	// installed: Probe checked it instead of trusting the first key seen.
	var ud struct {
		SSHKeys map[string]string `yaml:"ssh_keys"`
	}
	if err := yaml.Unmarshal([]byte(ls[1].UserData), &ud); err != nil {
		t.Fatal(err)
	}
	if l.HostKey == "" || !sameKeyMaterial(l.HostKey, ud.SSHKeys["ed25519_public"]) {
		t.Fatalf("lease host key %q, user-data installed %q", l.HostKey, ud.SSHKeys["ed25519_public"])
	}
	// The launch carried the lease's marker, in the name and the tags.
	if m, ok := provisioner.ParseMarker(ls[1].Name); !ok || m.Deployment != "e2e" || m.LeaseID != l.ID {
		t.Fatalf("launch name %q", ls[1].Name)
	}
	if v := fake.Violations(); len(v) != 0 {
		t.Fatalf("requests or answers outside Lambda's OpenAPI document: %q", v)
	}

	logs := e.logs.String()
	secrets := append(e.spy.all(), testSecret, testToken, testLambdaKey, e.stateKey)
	if len(secrets) < 7 || e.stateKey == "" {
		t.Fatalf("the spy saw only %d secrets; the check below would prove little", len(secrets))
	}
	for _, s := range secrets {
		if strings.Contains(logs, s) {
			t.Errorf("a secret (%.6s…) appears in serve's logs", s)
		}
	}
	for _, must := range []string{`"msg":"lambda: instance launched"`, `"msg":"lambda: instance terminated"`, `"lease_id":"` + l.ID} {
		if !strings.Contains(logs, must) {
			t.Errorf("logs lack %s", must)
		}
	}
	t.Logf("requests to Lambda: %d; launches %v", len(fake.Requests()), launches)
}

// sameKeyMaterial compares two authorized_keys lines without comments.
func sameKeyMaterial(a, b string) bool {
	fa, fb := strings.Fields(a), strings.Fields(b)
	return len(fa) >= 2 && len(fb) >= 2 && fa[0] == fb[0] && fa[1] == fb[1]
}
