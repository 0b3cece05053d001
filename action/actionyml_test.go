package action_test

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/crabbox/crabbox-runner/action"
	"github.com/crabbox/crabbox-runner/action/actiontest"
)

// requireTool fails in CI and skips elsewhere when a tool is missing:
// CI must never pass a test it did not run.
func requireTool(t *testing.T, name string) string {
	t.Helper()
	path, err := exec.LookPath(name)
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("%s is missing and CI is set: install it (Debian: apt-get install %s)", name, name)
		}
		t.Skipf("%s is missing: install it to run this test", name)
	}
	return path
}

// TestActionYAMLWiring checks what no linter checks: that the composite
// step hands every input to the binary under the name go-githubactions
// reads, that every output comes from that step, and that action.yml's
// defaults are the binary's.
func TestActionYAMLWiring(t *testing.T) {
	m, err := actiontest.Load()
	if err != nil {
		t.Fatal(err)
	}
	if m.Runs.Using != "composite" {
		t.Fatalf("runs.using = %q", m.Runs.Using)
	}
	st, err := m.Step("run")
	if err != nil {
		t.Fatal(err)
	}
	if st.Shell != "bash" {
		t.Errorf("the run step's shell is %q: only bash passes INPUT_ names with hyphens on", st.Shell)
	}
	if strings.TrimSpace(st.Run) != `"$CRABBOX_BIN" action` || st.Env["CRABBOX_BIN"] != "${{ steps.binary.outputs.path }}" {
		t.Errorf("the run step runs %q with CRABBOX_BIN %q", st.Run, st.Env["CRABBOX_BIN"])
	}
	for name := range m.Inputs {
		envName := actiontest.InputEnvName(name)
		if got, want := st.Env[envName], "${{ inputs."+name+" }}"; got != want {
			t.Errorf("input %s: env %s = %q, want %q", name, envName, got, want)
		}
	}
	for k := range st.Env {
		if strings.HasPrefix(k, "INPUT_") {
			if _, ok := m.Inputs[strings.ToLower(strings.TrimPrefix(k, "INPUT_"))]; !ok {
				t.Errorf("env %s passes an input action.yml does not declare", k)
			}
		}
	}
	for name, out := range m.Outputs {
		if want := "${{ steps.run.outputs." + name + " }}"; out.Value != want {
			t.Errorf("output %s: value %q, want %q", name, out.Value, want)
		}
	}
	for _, want := range []string{"label", "lease-id", "runner-name", "provider", "price-per-hour"} {
		if _, ok := m.Outputs[want]; !ok {
			t.Errorf("action.yml lacks output %s", want)
		}
	}

	defaults := map[string]string{
		"deployment":      action.DefaultDeployment,
		"timeout":         "10m",
		"max-lifetime":    "6h",
		"gpu-count":       fmt.Sprint(action.DefaultGPUCount),
		"check-gpu":       "true",
		"scope":           "repo",
		"runner-group-id": "1",
		"dry-run":         "false",
	}
	if action.DefaultTimeout.String() != "10m0s" || action.DefaultMaxLifetime.String() != "6h0m0s" {
		t.Errorf("the Go defaults changed: %s, %s; change action.yml and this test", action.DefaultTimeout, action.DefaultMaxLifetime)
	}
	for name, spec := range m.Inputs {
		if spec.Description == "" {
			t.Errorf("input %s has no description", name)
		}
		want, ok := defaults[name]
		if ok && spec.Default != want {
			t.Errorf("input %s: default %q, the binary's is %q", name, spec.Default, want)
		}
		if !ok && spec.Default != "" {
			t.Errorf("input %s: default %q in action.yml only", name, spec.Default)
		}
		if spec.Required != (name == "mode") {
			t.Errorf("input %s: required = %t", name, spec.Required)
		}
	}
}

func TestParseOutputs(t *testing.T) {
	tests := []struct {
		name    string
		data    string
		want    map[string]string
		wantErr string
	}{
		{"heredoc as go-githubactions writes it", "label<<_GitHubActionsFileCommandDelimeter_\ncrabbox-1-1-labc\n_GitHubActionsFileCommandDelimeter_\n",
			map[string]string{"label": "crabbox-1-1-labc"}, ""},
		{"name=value and multi-line", "a=1\nb<<EOF\nx\ny=z\nEOF\na=2\n", map[string]string{"a": "2", "b": "x\ny=z"}, ""},
		{"empty value", "a<<D\nD\nc=\n", map[string]string{"a": "", "c": ""}, ""},
		{"unclosed", "a<<D\nvalue\n", nil, "never closes"},
		{"garbage", "just text\n", nil, "neither name=value"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := actiontest.ParseOutputs(tt.data)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want %q", err, tt.wantErr)
				}
				return
			}
			if err != nil || !reflect.DeepEqual(got, tt.want) {
				t.Fatalf("got %v, %v; want %v", got, err, tt.want)
			}
		})
	}
}

// workflowFiles are the workflows actionlint must pass.
func workflowFiles(t *testing.T) []string {
	t.Helper()
	root := actiontest.RepoRoot()
	var files []string
	for _, pattern := range []string{"examples/workflows/*.yml", ".github/workflows/*.yml"} {
		m, err := filepath.Glob(filepath.Join(root, pattern))
		if err != nil {
			t.Fatal(err)
		}
		if len(m) == 0 {
			t.Fatalf("no %s", pattern)
		}
		files = append(files, m...)
	}
	return files
}

func actionlint(t *testing.T, files ...string) (string, error) {
	t.Helper()
	args := []string{"tool", "actionlint", "-no-color"}
	if _, err := exec.LookPath("shellcheck"); err != nil {
		// actionlint would quietly leave the run: scripts unchecked.
		if os.Getenv("CI") != "" {
			t.Fatal("shellcheck is missing and CI is set: install it (Debian: apt-get install shellcheck) so actionlint checks the run: scripts")
		}
		t.Log("shellcheck is missing: the run: scripts are not checked")
		args = append(args, "-shellcheck=")
	}
	cmd := exec.Command("go", append(args, files...)...)
	cmd.Dir = actiontest.RepoRoot()
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// TestActionlint runs rhysd/actionlint (a tool of this module) on every
// workflow, and shows that it checks the `uses: ./` workflow's inputs
// against action.yml: a misspelt or missing input fails it.
func TestActionlint(t *testing.T) {
	requireTool(t, "go")
	files := workflowFiles(t)
	if out, err := actionlint(t, files...); err != nil {
		t.Fatalf("actionlint: %v\n%s", err, out)
	}

	self := filepath.Join(actiontest.RepoRoot(), ".github", "workflows", "action-smoke.yml")
	data, err := os.ReadFile(self)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(data), "uses: ./\n") {
		t.Fatal("action-smoke.yml no longer uses the Action from its checkout")
	}
	action, err := os.ReadFile(filepath.Join(actiontest.RepoRoot(), "action.yml"))
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name, from, to, want string
	}{
		{"a misspelt input", "          gpu-count: 1\n", "          gpu-cuont: 1\n", `input "gpu-cuont" is not defined in action "crabbox GPU runner"`},
		{"a missing required input", "          mode: stop\n", "", `missing input "mode" which is required by action "crabbox GPU runner"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if !strings.Contains(string(data), tt.from) {
				t.Fatalf("action-smoke.yml lacks %q", tt.from)
			}
			// actionlint resolves ./ from the project root, which it finds
			// by its .git.
			proj := t.TempDir()
			for _, d := range []string{".git", ".github/workflows"} {
				if err := os.MkdirAll(filepath.Join(proj, d), 0o755); err != nil {
					t.Fatal(err)
				}
			}
			bad := filepath.Join(proj, ".github", "workflows", "action-smoke.yml")
			if err := os.WriteFile(filepath.Join(proj, "action.yml"), action, 0o644); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(bad, []byte(strings.Replace(string(data), tt.from, tt.to, 1)), 0o644); err != nil {
				t.Fatal(err)
			}
			out, err := actionlint(t, bad)
			if err == nil || !strings.Contains(out, tt.want) {
				t.Fatalf("actionlint passed or said something else (%v):\n%s", err, out)
			}
		})
	}
}

// TestExamplesUseTheAction: the examples are ready to copy, so they must
// name every mode's essentials and pass only inputs action.yml declares.
func TestExamplesUseTheAction(t *testing.T) {
	m, err := actiontest.Load()
	if err != nil {
		t.Fatal(err)
	}
	files, _ := filepath.Glob(filepath.Join(actiontest.RepoRoot(), "examples", "workflows", "*.yml"))
	var modes []string
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		text := string(data)
		if !strings.Contains(text, "uses: crabbox/crabbox-runner@v1") {
			t.Errorf("%s does not use the published Action", filepath.Base(f))
		}
		for _, line := range strings.Split(text, "\n") {
			if v, ok := strings.CutPrefix(strings.TrimSpace(line), "mode: "); ok {
				modes = append(modes, v)
			}
		}
		if strings.Contains(text, "mode: start") && !strings.Contains(text, "runs-on: ${{ needs.start.outputs.label }}") {
			t.Errorf("%s starts a runner but no job runs on its label", filepath.Base(f))
		}
		if strings.Contains(text, "mode: stop") && !strings.Contains(text, "if: always()") {
			t.Errorf("%s stops without if: always()", filepath.Base(f))
		}
	}
	for _, want := range []string{"start", "stop", "gc"} {
		if !slices.Contains(modes, want) {
			t.Errorf("no example uses mode %s", want)
		}
	}
	if len(m.Inputs) == 0 {
		t.Fatal("no inputs")
	}
}
