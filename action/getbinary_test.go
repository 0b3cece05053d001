package action_test

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/crabbox/crabbox-runner/action/actiontest"
	"github.com/crabbox/crabbox-runner/github/githubtest"
)

// githubContext stands in for the ${{ github.* }} expressions of the
// binary steps' env.
type githubContext struct{ ref, repo string }

func (g githubContext) eval(v string) string {
	return strings.NewReplacer("${{ github.action_ref }}", g.ref, "${{ github.action_repository }}", g.repo).Replace(v)
}

// stepRun runs one composite run: step of action.yml as the runner does:
// its script in a file, `bash --noprofile --norc -e -o pipefail FILE`,
// with the step's env on top of the runner's.
func stepRun(t *testing.T, st *actiontest.Step, env map[string]string) (stdout string, outputs map[string]string, err error) {
	t.Helper()
	dir := t.TempDir()
	script := filepath.Join(dir, "step.sh")
	if err := os.WriteFile(script, []byte(st.Run), 0o644); err != nil {
		t.Fatal(err)
	}
	outFile := filepath.Join(dir, "output")
	if err := os.WriteFile(outFile, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("bash", "--noprofile", "--norc", "-e", "-o", "pipefail", script)
	cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "HOME=" + os.Getenv("HOME"), "GITHUB_OUTPUT=" + outFile}
	for _, k := range []string{"GOCACHE", "GOMODCACHE", "GOPATH", "GOFLAGS", "GOPROXY", "GOTOOLCHAIN"} {
		if v, ok := os.LookupEnv(k); ok {
			cmd.Env = append(cmd.Env, k+"="+v)
		}
	}
	for k, v := range env {
		cmd.Env = append(cmd.Env, k+"="+v)
	}
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err = cmd.Run()
	data, rerr := os.ReadFile(outFile)
	if rerr != nil {
		t.Fatal(rerr)
	}
	if outputs, rerr = actiontest.ParseOutputs(string(data)); rerr != nil {
		t.Fatal(rerr)
	}
	return out.String(), outputs, err
}

// TestGetBinary drives action.yml's binary steps: the build from source
// (timed), then the release download against a local server that serves
// the built binary as a release asset (timed), each way the download can
// go, and the step that runs the binary, through bash.
func TestGetBinary(t *testing.T) {
	for _, tool := range []string{"bash", "curl", "sha256sum", "go"} {
		requireTool(t, tool)
	}
	m, err := actiontest.Load()
	if err != nil {
		t.Fatal(err)
	}
	fetchStep, err := m.Step("binary")
	if err != nil {
		t.Fatal(err)
	}
	buildStep, err := m.Step("build")
	if err != nil {
		t.Fatal(err)
	}
	root := actiontest.RepoRoot()

	stepEnv := func(st *actiontest.Step, g githubContext, actionPath string, extra map[string]string) map[string]string {
		env := map[string]string{
			"GITHUB_ACTION_PATH": actionPath, "RUNNER_TEMP": t.TempDir(), "RUNNER_OS": "Linux", "RUNNER_ARCH": "X64",
			"GITHUB_SERVER_URL": "http://127.0.0.1:1", // never reached: tests set CRABBOX_RELEASE_BASE_URL
		}
		for k, v := range st.Env {
			env[k] = g.eval(v)
		}
		for k, v := range extra {
			env[k] = v
		}
		return env
	}

	// The checkout path: no release, a build.
	env := stepEnv(fetchStep, githubContext{}, root, nil)
	out, outputs, err := stepRun(t, fetchStep, env)
	if err != nil || outputs["build"] != "true" || outputs["have-go"] != "true" || outputs["path"] == "" || len(outputs["source-hash"]) != 16 {
		t.Fatalf("fetch from a checkout: %v %v\n%s", err, outputs, out)
	}
	bin := outputs["path"]
	start := time.Now()
	out, _, err = stepRun(t, buildStep, env)
	if err != nil {
		t.Fatalf("build: %v\n%s", err, out)
	}
	t.Logf("build from source: %s\n%s", time.Since(start).Round(10*time.Millisecond), out)
	if v, err := exec.Command(bin, "version").Output(); err != nil || !strings.HasPrefix(string(v), "crabbox-runner dev") {
		t.Fatalf("built binary: %v %q", err, v)
	}

	asset, err := os.ReadFile(bin)
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(asset)
	good := hex.EncodeToString(sum[:])
	t.Logf("release binary: %.1f MB", float64(len(asset))/1e6)

	tests := []struct {
		name       string
		g          githubContext
		actionPath string // relative to a temp dir; the repo root when empty
		checksums  string // served as checksums.txt; 404 when empty
		wantBuild  bool
		wantErr    string
		wantOut    string
	}{
		{"a release: downloaded and verified", githubContext{"v1.2.3", "acme/crabbox-action"}, "",
			good + "  crabbox-runner-linux-amd64\n" + strings.Repeat("0", 64) + "  crabbox-runner-linux-arm64\n", false, "", "verified its sha256"},
		{"the ref from the action's path when the context is empty", githubContext{}, "_actions/acme/crabbox-action/v1.2.3",
			good + " *crabbox-runner-linux-amd64\n", false, "", "crabbox-runner-linux-amd64 of acme/crabbox-action@v1.2.3"},
		{"a branch without a release", githubContext{"main", "acme/crabbox-action"}, "", "", true, "", "no release main of acme/crabbox-action (checksums.txt: HTTP 404)"},
		{"a commit", githubContext{strings.Repeat("ab", 20), "acme/crabbox-action"}, "", good + "  crabbox-runner-linux-amd64\n", true, "", "is a commit"},
		{"a release without this platform", githubContext{"v1.2.3", "acme/crabbox-action"}, "",
			good + "  crabbox-runner-linux-arm64\n", true, "", "has no crabbox-runner-linux-amd64"},
		{"a checksum that does not match", githubContext{"v1.2.3", "acme/crabbox-action"}, "",
			strings.Repeat("0", 64) + "  crabbox-runner-linux-amd64\n", false, "exit status 1", "::error::checksum mismatch"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				base := "/acme/crabbox-action/releases/download/v1.2.3/"
				switch {
				case r.URL.Path == base+"checksums.txt" && tt.checksums != "":
					fmt.Fprint(w, tt.checksums)
				case r.URL.Path == base+"crabbox-runner-linux-amd64":
					// As GitHub does: the asset is on another URL.
					http.Redirect(w, r, "/assets/amd64", http.StatusFound)
				case r.URL.Path == "/assets/amd64":
					w.Write(asset)
				default:
					http.NotFound(w, r)
				}
			}))
			defer srv.Close()
			actionPath := root
			if tt.actionPath != "" {
				actionPath = filepath.Join(t.TempDir(), tt.actionPath)
				if err := os.MkdirAll(filepath.Dir(actionPath), 0o755); err != nil {
					t.Fatal(err)
				}
				if err := os.Symlink(root, actionPath); err != nil {
					t.Fatal(err)
				}
			}
			env := stepEnv(fetchStep, tt.g, actionPath, map[string]string{
				"CRABBOX_RELEASE_BASE_URL": srv.URL, "CRABBOX_RELEASE_RETRY_DELAY": "0",
			})
			start := time.Now()
			out, outputs, err := stepRun(t, fetchStep, env)
			took := time.Since(start)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want %q\n%s", err, tt.wantErr, out)
				}
			} else if err != nil {
				t.Fatalf("%v\n%s", err, out)
			}
			if !strings.Contains(out, tt.wantOut) {
				t.Errorf("output lacks %q:\n%s", tt.wantOut, out)
			}
			if tt.wantErr != "" {
				if _, statErr := os.Stat(filepath.Join(env["RUNNER_TEMP"], "crabbox-runner", tt.g.ref, "crabbox-runner")); statErr == nil {
					t.Error("a binary that failed its checksum was kept")
				}
				return
			}
			if got := outputs["build"] == "true"; got != tt.wantBuild {
				t.Fatalf("build = %q, want %t\n%s", outputs["build"], tt.wantBuild, out)
			}
			if tt.wantBuild {
				return
			}
			t.Logf("download and verify %.1f MB from loopback: %s", float64(len(asset))/1e6, took.Round(time.Millisecond))
			if v, err := exec.Command(outputs["path"], "version").Output(); err != nil || !strings.HasPrefix(string(v), "crabbox-runner ") {
				t.Fatalf("downloaded binary: %v %q", err, v)
			}
			// A second use in the same job reuses it.
			out, again, err := stepRun(t, fetchStep, env)
			if err != nil || again["path"] != outputs["path"] || !strings.Contains(out, "already here") {
				t.Errorf("second fetch: %v %v\n%s", err, again, out)
			}
		})
	}

	t.Run("the action step runs the binary through bash", func(t *testing.T) {
		testRunStepThroughBash(t, m, bin)
	})
}

// testRunStepThroughBash runs action.yml's last step as a runner would,
// through bash with its INPUT_* names (hyphens and all) and the real
// binary: a stop of a lease that does not exist succeeds and says so.
func testRunStepThroughBash(t *testing.T, m *actiontest.Metadata, bin string) {
	const token = "ghp_bashStepTokenNeverShown01"
	gh := githubtest.New(githubtest.Options{Tokens: []string{token}})
	defer gh.Close()
	env, err := m.StepEnv("run", map[string]string{
		"mode": "stop", "lease-id": "labcdefghjk", "provider": "local", "github-token": token,
	})
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := env["INPUT_GITHUB-TOKEN"]; !ok {
		t.Fatal("the step does not set INPUT_GITHUB-TOKEN")
	}
	re, err := actiontest.NewStep(t.TempDir(), 7, 1, "acme/ml", gh.URL())
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range re.Vars() {
		env[k] = v
	}
	env["CRABBOX_BIN"] = bin
	env["CRABBOX_ACTION_LOCAL_DIR"] = t.TempDir()
	st, err := m.Step("run")
	if err != nil {
		t.Fatal(err)
	}
	out, _, err := stepRun(t, st, env)
	if err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	outputs, err := re.Outputs()
	if err != nil {
		t.Fatal(err)
	}
	if outputs["lease-id"] != "labcdefghjk" || !strings.Contains(out, "::add-mask::"+token) || !strings.Contains(out, "already released") {
		t.Errorf("outputs %v\n%s", outputs, out)
	}
	if strings.Count(out, token) != 1 {
		t.Errorf("the token shows outside its ::add-mask:: line:\n%s", out)
	}
}
