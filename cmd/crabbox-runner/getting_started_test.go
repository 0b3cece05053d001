package main

import (
	"bufio"
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/crabbox/crabbox-runner/action/actiontest"
	"github.com/crabbox/crabbox-runner/github/githubtest"
	"github.com/crabbox/crabbox-runner/internal/config"
	"github.com/crabbox/crabbox-runner/providers/vast/vasttest"
	"github.com/crabbox/crabbox-runner/provisioner"
)

// The blocks of docs/getting-started.md the test does not run, by their
// first line, and why. A block marked {test-skip: …} that is not here, or
// an entry here that matches no block, fails the test: substitutions stay
// few and explicit.
var gettingStartedSkips = map[string]string{
	`arch=$(uname -m | sed 's/x86_64/amd64/; s/aarch64/arm64/')`: "downloads the release from github.com; " +
		"the binary built from this checkout with the Dockerfile's build command is on PATH instead",
	`sudo install -d -m 755 /etc/crabbox-runner`: "needs root and a running systemd; " +
		"TestExamplesSystemd checks the unit with systemd-analyze",
	`docker run -d --name crabbox-runner --restart unless-stopped \`: "needs a Docker engine; " +
		"TestDockerfile checks the Dockerfile and the binary it builds",
}

// What the fake world is, as the page tells the reader to set it up.
const (
	gsAppID          = 123456
	gsAppSlug        = "acme-gpu-runners"
	gsOrg            = "acme"
	gsRepo           = "acme/ml"
	gsInstallationID = 4242
	gsVastKey        = "vast_gettingStartedKeyNeverLogged0001"
	// gsListen is the address the page uses; the test's serve listens on
	// a free port instead, written in its place in every block.
	gsListen = "127.0.0.1:8080"
)

// fence is a fenced code block of a Markdown file.
type fence struct {
	Line  int
	Lang  string // sh, yaml, caddyfile, …
	Attrs string // what is inside {…} after the language
	Text  string
}

func (f fence) firstLine() string {
	first, _, _ := strings.Cut(f.Text, "\n")
	return first
}

// hookFor finds the entry of hooks keyed by one of the block's lines; the
// test's actions are keyed by the command they go with.
func hookFor[V any](hooks map[string]V, text string) (string, V, bool) {
	for _, line := range strings.Split(text, "\n") {
		if v, ok := hooks[line]; ok {
			return line, v, true
		}
	}
	var zero V
	return "", zero, false
}

var fenceOpen = regexp.MustCompile("^( *)```([A-Za-z0-9_-]*)\\s*(?:\\{([^}]*)\\})?\\s*$")

// parseFences returns the fenced code blocks of a Markdown file, with the
// indentation of their fence (list items) removed from every line.
func parseFences(t *testing.T, path string) []fence {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []fence
	var cur *fence
	indent := ""
	var body []string
	sc := bufio.NewScanner(f)
	n := 0
	for sc.Scan() {
		n++
		line := sc.Text()
		if cur == nil {
			if m := fenceOpen.FindStringSubmatch(line); m != nil {
				cur = &fence{Line: n, Lang: m[2], Attrs: strings.TrimSpace(m[3])}
				indent, body = m[1], nil
			}
			continue
		}
		if strings.TrimSpace(line) == "```" {
			cur.Text = strings.Join(body, "\n") + "\n"
			out = append(out, *cur)
			cur = nil
			continue
		}
		body = append(body, strings.TrimPrefix(line, indent))
	}
	if cur != nil {
		t.Fatalf("%s:%d: unclosed code block", path, cur.Line)
	}
	return out
}

// shellSession runs the page's blocks one bash process at a time, but
// keeps what a terminal keeps between commands: the working directory,
// the exported variables and the umask.
type shellSession struct {
	t     *testing.T
	state string // where the session's state is kept between blocks
	home  string
	env   []string
	n     int
}

func newShellSession(t *testing.T, home string, env []string) *shellSession {
	t.Helper()
	s := &shellSession{t: t, state: t.TempDir(), home: home, env: env}
	os.WriteFile(filepath.Join(s.state, "pwd"), []byte(home), 0o600)
	os.WriteFile(filepath.Join(s.state, "umask"), []byte("0022"), 0o600)
	return s
}

// script is a block with the session's state restored before it and,
// when save is set, recorded after it, however it ends.
func (s *shellSession) script(block string, save bool) string {
	s.n++
	var b strings.Builder
	fmt.Fprintf(&b, "__state=%q\n", s.state)
	b.WriteString(`if [ -f "$__state/env" ]; then . "$__state/env"; fi
cd "$(cat "$__state/pwd")"
umask "$(cat "$__state/umask")"
`)
	if save {
		b.WriteString(`trap '__rc=$?; pwd > "$__state/pwd"; export -p > "$__state/env"; umask > "$__state/umask"; exit $__rc' EXIT
`)
	}
	b.WriteString("set -e -o pipefail\n")
	b.WriteString(block)
	path := filepath.Join(s.state, fmt.Sprintf("block-%02d.sh", s.n))
	if err := os.WriteFile(path, []byte(b.String()), 0o600); err != nil {
		s.t.Fatal(err)
	}
	return path
}

// run runs a block to its end and returns its output.
func (s *shellSession) run(block, stdin string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "bash", s.script(block, true))
	cmd.Env, cmd.Dir = s.env, s.home
	cmd.Stdin = strings.NewReader(stdin)
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// start runs a block that runs until stopped, in its own process group
// (as a terminal's foreground job), its output to logPath.
func (s *shellSession) start(block, logPath string) *exec.Cmd {
	logf, err := os.Create(logPath)
	if err != nil {
		s.t.Fatal(err)
	}
	cmd := exec.Command("bash", s.script(block, false))
	cmd.Env, cmd.Dir = s.env, s.home
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		s.t.Fatal(err)
	}
	logf.Close()
	return cmd
}

// setYAML sets dotted keys of a YAML file to string values, adding the
// mappings that are missing.
func setYAML(t *testing.T, path string, values map[string]string) {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil {
		t.Fatal(err)
	}
	for key, value := range values {
		node := doc.Content[0]
		parts := strings.Split(key, ".")
		for i, p := range parts {
			var next *yaml.Node
			for j := 0; j+1 < len(node.Content); j += 2 {
				if node.Content[j].Value == p {
					next = node.Content[j+1]
				}
			}
			if next == nil {
				next = &yaml.Node{Kind: yaml.MappingNode, Tag: "!!map"}
				node.Content = append(node.Content, &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!str", Value: p}, next)
			}
			if i == len(parts)-1 {
				tag := "!!str"
				if value == "true" || value == "false" {
					tag = "!!bool"
				}
				*next = yaml.Node{Kind: yaml.ScalarNode, Tag: tag, Value: value}
			}
			node = next
		}
	}
	out, err := yaml.Marshal(&doc)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, out, 0o600); err != nil {
		t.Fatal(err)
	}
}

// envFile reads KEY=VALUE lines, as `set -a; . file` and systemd's
// EnvironmentFile= read the page's crabbox.env.
func envFile(t *testing.T, path string) map[string]string {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	env := map[string]string{}
	for _, l := range strings.Split(string(data), "\n") {
		if k, v, ok := strings.Cut(l, "="); ok && !strings.HasPrefix(l, "#") {
			env[k] = v
		}
	}
	return env
}

// gsWorkflow is the page's example workflow, as much as the test needs.
type gsWorkflow struct {
	Name string `yaml:"name"`
	Jobs map[string]struct {
		RunsOn []string `yaml:"runs-on"`
		Steps  []struct {
			Run string `yaml:"run"`
		} `yaml:"steps"`
	} `yaml:"jobs"`
}

// TestGettingStarted follows docs/getting-started.md on a fresh home
// directory: every sh block, in order, with bash, as a newcomer types
// them, against a fake GitHub App and a fake Vast.ai on 127.0.0.1, with the
// binary built from this checkout on PATH. Where the page has the reader
// act on GitHub (create the App, push a workflow) the test acts on the
// fake; where it would reach the internet or need root, the block is
// skipped and listed above with why. At the end the first GPU job has run
// on a rented host, nothing is left running, and no secret is in serve's
// log.
func TestGettingStarted(t *testing.T) {
	if testing.Short() {
		t.Skip("runs serve and a job on a fake Vast host")
	}
	for _, tool := range []string{"bash", "curl", "od"} {
		needTool(t, tool)
	}
	if _, err := os.Stat("/usr/sbin/sshd"); err != nil {
		if os.Getenv("CI") != "" {
			t.Fatal("/usr/sbin/sshd missing in CI: install openssh-server")
		}
		t.Skip("/usr/sbin/sshd missing: install openssh-server (the fake Vast's hosts are SSH servers)")
	}
	me, err := user.Current()
	if err != nil {
		t.Fatal(err)
	}
	bin := builtBinary(t)
	doc := filepath.Join(actiontest.RepoRoot(), "docs", "getting-started.md")
	fences := parseFences(t, doc)

	// The world the page assumes: a machine with a home directory, an App
	// whose private key the browser downloaded, a Vast account.
	root := t.TempDir()
	home := filepath.Join(root, "home")
	binDir := filepath.Join(root, "bin")
	for _, d := range []string{filepath.Join(home, "Downloads"), binDir} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Symlink(bin, filepath.Join(binDir, "crabbox-runner")); err != nil {
		t.Fatal(err)
	}
	appKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	appPEM := pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(appKey)})
	if err := os.WriteFile(filepath.Join(home, "Downloads", gsAppSlug+".2026-01-15.private-key.pem"), appPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	gh := githubtest.New(githubtest.Options{AppID: gsAppID, AppPublicKey: &appKey.PublicKey, AppSlug: gsAppSlug,
		Installations: map[string]int64{gsOrg: gsInstallationID}, OnlineTimeout: 5 * time.Second,
		OnEvent: func(ev githubtest.Event) { t.Logf("github: %s", ev) }})
	t.Cleanup(gh.Close)
	gh.AddRepos(gsRepo)
	vast := vasttest.New(vasttest.Options{APIKey: gsVastKey, Dir: filepath.Join(root, "vast"), Logf: t.Logf})
	t.Cleanup(vast.Close)
	_, tarballSum, err := githubtest.RunnerTarball("2.330.0")
	if err != nil {
		t.Fatal(err)
	}

	addr := freeAddr(t)
	env := []string{
		"HOME=" + home, "USER=" + me.Username, "LOGNAME=" + me.Username,
		"PATH=" + binDir + ":/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
		"LANG=C.UTF-8", "TERM=dumb", "TMPDIR=" + t.TempDir(),
		// Where a real service would be: the fakes, on loopback.
		"CRABBOX_GITHUB_API_URL=" + gh.URL(),
		"CRABBOX_VAST_API_URL=" + vast.URL(),
	}
	sh := newShellSession(t, home, env)
	// The page's database, read with a connection of its own, as
	// `crabbox-runner leases` does.
	store := &e2e{t: t, dbPath: filepath.Join(home, "crabbox", "crabbox-runner.db")}

	var serve *exec.Cmd
	serveLog := filepath.Join(root, "serve.log")
	serveLogText := func() string { b, _ := os.ReadFile(serveLog); return string(b) }
	waitFor := func(what string, within time.Duration, cond func() bool) {
		t.Helper()
		deadline := time.Now().Add(within)
		for !cond() {
			if time.Now().After(deadline) {
				t.Fatalf("timed out waiting for %s\nserve log:\n%s", what, tail(serveLogText(), 40))
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	stopServe := func() int {
		if serve == nil || serve.ProcessState != nil {
			return -1
		}
		// Ctrl-C in serve's terminal: SIGINT to its foreground process group.
		syscall.Kill(-serve.Process.Pid, syscall.SIGINT)
		done := make(chan struct{})
		go func() { serve.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(45 * time.Second):
			syscall.Kill(-serve.Process.Pid, syscall.SIGKILL)
			<-done
			t.Error("serve did not stop within 45 s of Ctrl-C")
		}
		return serve.ProcessState.ExitCode()
	}
	t.Cleanup(func() { stopServe() })

	var (
		webhookSecret string
		jobID         int64
		skipsSeen     = map[string]bool{}
		hooksFired    = map[string]bool{}
	)
	secrets := func() []string {
		ws := webhookSecret
		if ws == "" { // generated by the page, not yet learned
			b, _ := os.ReadFile(filepath.Join(home, "crabbox", "secrets", "webhook-secret"))
			ws = strings.TrimSpace(string(b))
		}
		return []string{ws, gsVastKey, pemBody(appPEM)}
	}
	redact := func(s string) string {
		for _, v := range secrets() {
			if v != "" {
				s = strings.ReplaceAll(s, v, "[secret]")
			}
		}
		return s
	}

	// What the test does around a block, by a command of the block.
	stdin := map[string]string{
		// The reader pastes the Vast key.
		`read -rsp 'Vast API key: ' key && printf '%s\n' "$key" > secrets/vast-api-key && unset key`: gsVastKey + "\n",
	}
	before := map[string]func(){
		// The reader waits until the workflow run is done.
		"crabbox-runner leases --all": func() {
			ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
			defer cancel()
			job, err := gh.WaitJob(ctx, jobID, githubtest.StatusCompleted)
			if err != nil {
				t.Fatalf("the first GPU job: %v\nserve log:\n%s", err, tail(serveLogText(), 60))
			}
			if job.Conclusion != "success" || job.RunnerName == "" {
				t.Fatalf("the first GPU job: conclusion %q on runner %q\nserve log:\n%s", job.Conclusion, job.RunnerName, tail(serveLogText(), 60))
			}
			waitFor("the host destroyed, the runner removed and the lease released", 90*time.Second, func() bool {
				if len(vast.Live()) != 0 || len(gh.Runners()) != 0 {
					return false
				}
				ls := store.leases()
				return len(ls) == 1 && ls[0].State == provisioner.StateReleased
			})
		},
	}
	after := map[string]func(out string){
		"crabbox-runner version": func(out string) {
			if !strings.Contains(out, "crabbox-runner "+dockerTestVersion) {
				t.Errorf("version printed %q", out)
			}
		},
		// The config as the page writes it is valid for serve; then the
		// test points the runner download and the SSH user at the fakes.
		"cat > crabbox-runner.yaml <<EOF": func(string) {
			envs := envFile(t, filepath.Join(home, "crabbox", "crabbox.env"))
			cfg, err := config.Load(config.Overrides{}, func(k string) string { return envs[k] })
			if err != nil {
				t.Fatalf("the page's config: %v", err)
			}
			if err := cfg.Validate(serveNeeds); err != nil {
				t.Fatalf("the page's config: %v", err)
			}
			if cfg.GitHub.AppID != gsAppID || cfg.Source != envs["CRABBOX_CONFIG"] {
				t.Fatalf("the page's config: app id %d from %s", cfg.GitHub.AppID, cfg.Source)
			}
			data, err := os.ReadFile(envs["CRABBOX_WEBHOOK_SECRET_FILE"])
			if err != nil {
				t.Fatal(err)
			}
			webhookSecret = strings.TrimSpace(string(data))
			setYAML(t, cfg.Source, map[string]string{
				"runner.url":              gh.TarballURLTemplate(),
				"runner.sha256":           tarballSum,
				"providers.vast.ssh_user": me.Username,
				// The fake's hosts are on loopback.
				"providers.vast.allow_private_endpoints": "true",
			})
		},
		"crabbox-runner serve": func(string) {
			waitFor("serve ready", 60*time.Second, func() bool {
				if serve.ProcessState != nil {
					t.Fatalf("serve exited\n%s", tail(serveLogText(), 40))
				}
				resp, err := http.Get("http://" + addr + "/readyz")
				if err != nil {
					return false
				}
				resp.Body.Close()
				return resp.StatusCode == http.StatusOK
			})
			// GitHub redelivers the App's ping, then sends its events there.
			body := []byte(`{"zen":"Design for failure.","hook_id":1,"hook":{"type":"App","id":1,"events":["workflow_job"]}}`)
			mac := hmac.New(sha256.New, []byte(webhookSecret))
			mac.Write(body)
			req, _ := http.NewRequest(http.MethodPost, "http://"+addr+"/webhook", strings.NewReader(string(body)))
			req.Header.Set("Content-Type", "application/json")
			req.Header.Set("X-GitHub-Event", "ping")
			req.Header.Set("X-GitHub-Delivery", "5f0d6c1e-0000-4000-8000-000000000001")
			req.Header.Set("X-Hub-Signature-256", "sha256="+hex.EncodeToString(mac.Sum(nil)))
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				t.Fatalf("the App's ping: %d, want 200", resp.StatusCode)
			}
			gh.SetWebhook("http://"+addr+"/webhook", []byte(webhookSecret))
		},
		"crabbox-runner doctor": func(out string) {
			if strings.Contains(out, "FAIL") {
				t.Errorf("doctor reported a failure:\n%s", out)
			}
		},
		"curl -fsS http://" + gsListen + "/healthz": func(out string) {
			if !strings.Contains(out, "ok") || !strings.Contains(out, "ready") {
				t.Errorf("healthz and readyz said %q", out)
			}
		},
		"crabbox-runner gc": func(out string) {
			if !regexp.MustCompile(`\b0 actions\b`).MatchString(out) {
				t.Errorf("gc after the job planned something:\n%s", out)
			}
		},
	}

	for _, f := range fences {
		where := fmt.Sprintf("getting-started.md:%d", f.Line)
		switch f.Lang {
		case "sh":
		case "bash", "shell", "console", "shell-session", "zsh":
			t.Fatalf("%s: a %s block: write commands in ```sh blocks so that this test runs them", where, f.Lang)
		case "yaml":
			var wf gsWorkflow
			if err := yaml.Unmarshal([]byte(f.Text), &wf); err != nil || len(wf.Jobs) == 0 {
				continue // not a workflow
			}
			if len(wf.Jobs) != 1 || jobID != 0 {
				t.Fatalf("%s: the test expects one example workflow with one job", where)
			}
			// The reader runs the workflow: GitHub queues its job.
			for name, job := range wf.Jobs {
				var script []string
				for _, st := range job.Steps {
					script = append(script, st.Run)
				}
				jobID = gh.QueueJob(githubtest.JobSpec{Repo: gsRepo, Org: gsOrg, Labels: job.RunsOn, Name: name,
					WorkflowName: wf.Name, Script: strings.Join(script, "\n")})
				t.Logf("%s: queued job %d (%s) with runs-on %v", where, jobID, name, job.RunsOn)
			}
			hooksFired["workflow"] = true
			continue
		default:
			continue
		}

		first := f.firstLine()
		if reason, ok := strings.CutPrefix(f.Attrs, "test-skip:"); ok {
			if strings.TrimSpace(reason) == "" {
				t.Errorf("%s: test-skip without a reason", where)
			}
			if _, listed := gettingStartedSkips[first]; !listed {
				t.Fatalf("%s: a skipped block the test does not list: %q", where, first)
			}
			skipsSeen[first] = true
			t.Logf("%s: skipped (%s): %s", where, strings.TrimSpace(reason), gettingStartedSkips[first])
			continue
		}
		if f.Attrs != "" && f.Attrs != "runs-until-stopped" {
			t.Fatalf("%s: unknown block attributes {%s}", where, f.Attrs)
		}
		text := strings.ReplaceAll(f.Text, gsListen, addr)
		if key, fn, ok := hookFor(before, f.Text); ok {
			if hooksFired["before "+key] {
				t.Fatalf("%s: a second block with %q", where, key)
			}
			fn()
			hooksFired["before "+key] = true
		}
		out := ""
		if f.Attrs == "runs-until-stopped" {
			if serve != nil {
				t.Fatalf("%s: a second block that runs until stopped", where)
			}
			t.Logf("%s: started:\n%s", where, text)
			serve = sh.start(text, serveLog)
		} else {
			var err error
			key, input, hasInput := hookFor(stdin, f.Text)
			out, err = sh.run(text, input)
			t.Logf("%s:\n$ %s%s", where, strings.ReplaceAll(strings.TrimSuffix(text, "\n"), "\n", "\n$ ")+"\n", redact(out))
			if err != nil {
				t.Fatalf("%s: %v\nserve log:\n%s", where, err, tail(serveLogText(), 30))
			}
			if hasInput {
				hooksFired["stdin "+key] = true
			}
		}
		if key, fn, ok := hookFor(after, f.Text); ok {
			if hooksFired["after "+key] {
				t.Fatalf("%s: a second block with %q", where, key)
			}
			fn(out)
			hooksFired["after "+key] = true
		}
	}

	// Every skip and every action of the test met its block: the page has
	// not drifted away from what is tested.
	for first := range gettingStartedSkips {
		if !skipsSeen[first] {
			t.Errorf("the test lists a skipped block that the page does not have: %q", first)
		}
	}
	var missing []string
	for first := range stdin {
		if !hooksFired["stdin "+first] {
			missing = append(missing, first)
		}
	}
	for first := range before {
		if !hooksFired["before "+first] {
			missing = append(missing, first)
		}
	}
	for first := range after {
		if !hooksFired["after "+first] {
			missing = append(missing, first)
		}
	}
	if !hooksFired["workflow"] {
		missing = append(missing, "the example workflow")
	}
	if len(missing) > 0 {
		slices.Sort(missing)
		t.Fatalf("the page lacks blocks the test expects: %q", missing)
	}

	// Ctrl-C: serve stops cleanly, with nothing left running and no
	// secret in what it logged.
	if code := stopServe(); code != 0 {
		t.Errorf("serve exited %d after Ctrl-C\n%s", code, tail(serveLogText(), 30))
	}
	if live, runners := vast.Live(), gh.Runners(); len(live) != 0 || len(runners) != 0 {
		t.Errorf("left running: instances %v, runners %v", live, runners)
	}
	if len(vast.Instances()) != 1 {
		t.Errorf("instances created: %d, want 1", len(vast.Instances()))
	}
	if ls := store.leases(); len(ls) != 1 || ls[0].State != provisioner.StateReleased || ls[0].BoundJobID != jobID || ls[0].Provider != "vast" {
		t.Errorf("leases: %+v", ls)
	}
	logs := serveLogText()
	for _, s := range secrets() {
		if s == "" || strings.Contains(logs, s) {
			t.Errorf("a secret (%.6s…) is in serve's log, or was never learned", s)
		}
	}
	if strings.Contains(logs, "[REDACTED]") {
		t.Errorf("something tried to log a secret:\n%s", grepLines(logs, "[REDACTED]"))
	}
	if !strings.Contains(logs, `"msg":"serving"`) {
		t.Errorf("serve never said it was serving:\n%s", tail(logs, 20))
	}
}
