package main

import (
	"fmt"
	"os"
	"os/user"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/crabbox/crabbox-runner/github/githubtest"
	"github.com/crabbox/crabbox-runner/providers/lambda"
	"github.com/crabbox/crabbox-runner/providers/lambda/lambdatest"
	"github.com/crabbox/crabbox-runner/providers/vast/vasttest"
	"github.com/crabbox/crabbox-runner/provisioner"
)

// readmeClass is the first class of the README's example configuration,
// as YAML: the class a reader copies.
func readmeClass(t *testing.T) map[string]any {
	t.Helper()
	data, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	_, rest, ok := strings.Cut(string(data), "## Configuration")
	if !ok {
		t.Fatal("README has no Configuration section")
	}
	_, rest, _ = strings.Cut(rest, "```yaml\n")
	block, _, _ := strings.Cut(rest, "```")
	var doc struct {
		Classes []map[string]any `yaml:"classes"`
	}
	if err := yaml.Unmarshal([]byte(block), &doc); err != nil || len(doc.Classes) == 0 {
		t.Fatalf("README's example configuration: %v", err)
	}
	return doc.Classes[0]
}

// TestServeReadmeClassOnVastAndLambda: the README's example class, which
// names both providers and a container image, serves one job on a Vast
// host and one on a Lambda host (GitHub decides which job goes to which
// runner). The market has one Vast offer that fits,
// cheaper than Lambda: the first job's lease rents it, and the second,
// queued while the first holds it, goes to Lambda. Vast runs the
// container image; Lambda boots the GPU Base image of its region, by id,
// and never sees the container image. Both hosts are destroyed after, and
// Lambda's SSH key is deleted once its instance is gone.
func TestServeReadmeClassOnVastAndLambda(t *testing.T) {
	if _, err := os.Stat("/usr/sbin/sshd"); err != nil {
		if os.Getenv("CI") != "" {
			t.Fatal("/usr/sbin/sshd missing in CI: install openssh-server")
		}
		t.Skip("/usr/sbin/sshd missing: install openssh-server")
	}
	class := readmeClass(t)
	if class["image"] != "nvidia/cuda:12.4.1-devel-ubuntu22.04" || fmt.Sprint(class["providers"]) != "[vast lambda]" {
		t.Fatalf("the README's class is not the one this test is about: %v", class)
	}
	class["boot_timeout"], class["idle_timeout"], class["max_lifetime"] = "60s", "5m", "30m"
	classYAML, err := yaml.Marshal([]map[string]any{class})
	if err != nil {
		t.Fatal(err)
	}

	dir := t.TempDir()
	me, err := user.Current()
	if err != nil {
		t.Fatal(err)
	}
	// One Vast offer fits (A100 40 GB, verified, direct ports, ≤ $2.50);
	// with 80 GB of disk it costs about $0.57/h, under Lambda's $1.29.
	vfake := vasttest.New(vasttest.Options{APIKey: testVastKey, Dir: filepath.Join(dir, "vast"), Logf: t.Logf,
		RelistAfter: time.Hour, Offers: []vasttest.Offer{{ID: 8100001, MachineID: 811, GPUName: "A100 PCIE", NumGPUs: 1, GPURAM: 40960,
			DphBase: 0.55, StorageCost: 0.2, Reliability: 0.99, Geolocation: "Texas, US", DirectPortCount: 20, DiskSpace: 500, CUDAMaxGood: 12.6}}})
	t.Cleanup(vfake.Close)
	lfake := lambdatest.New(t, lambdatest.Options{APIKey: testLambdaKey, BootDelay: 200 * time.Millisecond})

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
  vast: {ssh_user: %s, min_request_interval: 2ms, allow_private_endpoints: true}
  lambda: {ssh_user: %s, min_request_interval: 5ms, allow_private_endpoints: true}
classes:
%s`, e.dbPath, e.gh.TarballURLTemplate(), sum, me.Username, lambdatest.CurrentUser(), indent(string(classYAML), "  "))
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Logf("config:\n%s", cfg)
	env := map[string]string{
		"CRABBOX_CONFIG":         cfgPath,
		"CRABBOX_WEBHOOK_SECRET": testSecret,
		"CRABBOX_GITHUB_TOKEN":   testToken,
		"CRABBOX_GITHUB_API_URL": e.gh.URL(),
		"VAST_API_KEY":           testVastKey,
		"CRABBOX_VAST_API_URL":   vfake.URL(),
		"LAMBDA_API_KEY":         lfake.APIKey(),
		"CRABBOX_LAMBDA_API_URL": lfake.URL(),
	}
	addr := freeAddr(t)
	e.url = "http://" + addr
	lambdaHook = func(o *lambda.Options) {
		o.SSHAddress = lfake.SSHAddress
		o.LaunchInterval = 50 * time.Millisecond
		o.KeyRetryInterval = 100 * time.Millisecond
		o.Retry = lambda.RetryPolicy{InitialInterval: 10 * time.Millisecond, MaxInterval: 100 * time.Millisecond}
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

	first := e.queue("on-vast")
	e.waitFor("the first lease holds the Vast host", 60*time.Second, func() bool {
		ls := e.leases()
		return len(ls) == 1 && ls[0].Provider == "vast" && ls[0].InstanceID != ""
	})
	second := e.queue("on-lambda")
	jobs := map[string]githubtest.Job{}
	for _, id := range []int64{first, second} {
		job := e.waitJob(id)
		if job.Conclusion != "success" {
			t.Fatalf("job %d: conclusion %q\n%s", id, job.Conclusion, tail(e.logs.String(), 40))
		}
		jobs[job.Name] = job
	}
	e.waitFor("both hosts destroyed, the Lambda key deleted, runners removed", 60*time.Second, func() bool {
		return len(lfake.Live()) == 0 && len(lfake.Keys()) == 0 && len(vfake.Live()) == 0 && len(e.gh.Runners()) == 0
	})
	e.waitFor("both leases released", 30*time.Second, func() bool {
		ls := e.leases()
		return len(ls) == 2 && ls[0].State == provisioner.StateReleased && ls[1].State == provisioner.StateReleased
	})
	byProvider := map[string]*provisioner.Lease{}
	for _, l := range e.leases() {
		byProvider[l.Provider] = l
	}
	// GitHub gives a queued job whichever fitting runner comes online
	// first, so either job may have run on either host: each host ran one.
	ran := map[string]bool{jobs["on-vast"].RunnerName: true, jobs["on-lambda"].RunnerName: true}
	if v, l := byProvider["vast"], byProvider["lambda"]; v == nil || l == nil || !ran[v.RunnerName] || !ran[l.RunnerName] || len(ran) != 2 {
		t.Fatalf("leases %+v %+v, jobs %+v", v, l, jobs)
	}
	metrics := e.get("/metrics")
	e.stop()

	// Vast ran the container image.
	vins := vfake.Instances()
	if len(vins) != 1 || vins[0].Image != "nvidia/cuda:12.4.1-devel-ubuntu22.04" || !vins[0].Destroyed {
		t.Fatalf("Vast instances %+v", vins)
	}
	// Lambda booted GPU Base 24.04, by its id in the region, and never saw
	// the container image.
	ls := lfake.Launches()
	if len(ls) != 1 || ls[0].Image == nil || ls[0].Image.ID == "" || ls[0].Image.Family != "" {
		t.Fatalf("Lambda launches %+v", ls)
	}
	var want string
	for _, im := range lambdatest.DefaultImages() {
		if im.Region == ls[0].RegionName && im.Family == "gpu-base-24-04" {
			want = im.ID()
		}
	}
	if ls[0].Image.ID != want {
		t.Fatalf("Lambda launched image %s in %s, want GPU Base 24.04's id %s", ls[0].Image.ID, ls[0].RegionName, want)
	}
	for _, r := range lfake.Requests() {
		if strings.Contains(string(r.Body), "nvidia/cuda") {
			t.Fatalf("the container image reached Lambda: %s %s", r.Path, r.Body)
		}
	}
	if v := lfake.Violations(); len(v) != 0 {
		t.Fatalf("requests or answers outside Lambda's OpenAPI document: %q", v)
	}
	// Lambda's HTTP attempts are counted by endpoint template.
	for _, must := range []string{
		`crabbox_provider_requests_total{endpoint="POST /api/v1/instance-operations/launch",provider="lambda",status="200"} 1`,
		`crabbox_provider_requests_total{endpoint="GET /api/v1/images",provider="lambda",status="200"}`,
	} {
		if !strings.Contains(metrics, must) {
			t.Errorf("/metrics lacks %s", must)
		}
	}
	var counted []string
	for _, line := range strings.Split(metrics, "\n") {
		if strings.HasPrefix(line, "crabbox_provider_requests_total{") && strings.Contains(line, `provider="lambda"`) {
			counted = append(counted, line)
		}
	}
	t.Logf("Lambda requests for one host:\n%s", strings.Join(counted, "\n"))
	for _, p := range []string{"vast", "lambda"} {
		l := byProvider[p]
		t.Logf("%s lease: queued→busy %s, busy→released %s, offer %s at $%.3f/h", p,
			l.BusySince.Sub(l.QueuedAt).Round(10*time.Millisecond), l.ReleasedAt.Sub(l.BusySince).Round(10*time.Millisecond), l.OfferID, l.PricePerHour)
	}
}

func indent(s, prefix string) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	for i, l := range lines {
		lines[i] = prefix + l
	}
	return strings.Join(lines, "\n") + "\n"
}
