// Package actiontest runs the Action's steps the way a GitHub runner does, for
// tests: it reads action.yml, builds the environment its composite step sets
// from a workflow's `with:` (the INPUT_* variables, evaluated from the
// action's own ${{ inputs.* }} expressions and defaults), adds what every
// runner sets (GITHUB_OUTPUT, GITHUB_STEP_SUMMARY, GITHUB_RUN_ID, …), and
// reads the GITHUB_OUTPUT file format back. Tests that go through it check
// action.yml's wiring as well as the binary.
package actiontest

import (
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strings"

	"gopkg.in/yaml.v3"
)

// Metadata is the part of action.yml the tests read.
type Metadata struct {
	Name    string                `yaml:"name"`
	Inputs  map[string]InputSpec  `yaml:"inputs"`
	Outputs map[string]OutputSpec `yaml:"outputs"`
	Runs    struct {
		Using string `yaml:"using"`
		Steps []Step `yaml:"steps"`
	} `yaml:"runs"`
}

// InputSpec is one input.
type InputSpec struct {
	Description string `yaml:"description"`
	Required    bool   `yaml:"required"`
	Default     string `yaml:"default"`
}

// OutputSpec is one output of a composite action.
type OutputSpec struct {
	Description string `yaml:"description"`
	Value       string `yaml:"value"`
}

// Step is one composite step.
type Step struct {
	ID    string            `yaml:"id"`
	Name  string            `yaml:"name"`
	If    string            `yaml:"if"`
	Shell string            `yaml:"shell"`
	Run   string            `yaml:"run"`
	Uses  string            `yaml:"uses"`
	With  map[string]string `yaml:"with"`
	Env   map[string]string `yaml:"env"`
}

// RepoRoot is the repository's root, where action.yml is.
func RepoRoot() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Clean(filepath.Join(filepath.Dir(file), "..", ".."))
}

// Load reads action.yml at the repository root.
func Load() (*Metadata, error) {
	data, err := os.ReadFile(filepath.Join(RepoRoot(), "action.yml"))
	if err != nil {
		return nil, err
	}
	m := &Metadata{}
	if err := yaml.Unmarshal(data, m); err != nil {
		return nil, fmt.Errorf("action.yml: %w", err)
	}
	return m, nil
}

// Step returns the step with the id.
func (m *Metadata) Step(id string) (*Step, error) {
	for i := range m.Runs.Steps {
		if m.Runs.Steps[i].ID == id {
			return &m.Runs.Steps[i], nil
		}
	}
	return nil, fmt.Errorf("action.yml has no step with id %q", id)
}

var inputExpr = regexp.MustCompile(`^\$\{\{\s*inputs\.([A-Za-z0-9_-]+)\s*\}\}$`)

// StepEnv is the environment the step with the id gets for a `with:` map,
// as the runner computes it: every env value that is ${{ inputs.NAME }}
// becomes the given value or the input's default. Other expressions are
// left out; the caller sets what they stand for. An input that action.yml
// does not declare, or a required one missing, is an error, as on a runner.
func (m *Metadata) StepEnv(id string, with map[string]string) (map[string]string, error) {
	for name := range with {
		if _, ok := m.Inputs[strings.ToLower(name)]; !ok {
			return nil, fmt.Errorf("unexpected input %q: action.yml declares %s", name, strings.Join(slices.Sorted(maps.Keys(m.Inputs)), ", "))
		}
	}
	for name, in := range m.Inputs {
		if in.Required && with[name] == "" {
			return nil, fmt.Errorf("input %q is required", name)
		}
	}
	st, err := m.Step(id)
	if err != nil {
		return nil, err
	}
	env := map[string]string{}
	for k, v := range st.Env {
		sub := inputExpr.FindStringSubmatch(strings.TrimSpace(v))
		if sub == nil {
			continue
		}
		in, ok := m.Inputs[sub[1]]
		if !ok {
			return nil, fmt.Errorf("step %s: env %s reads undeclared input %q", id, k, sub[1])
		}
		val, given := with[sub[1]]
		if !given {
			val = in.Default
		}
		env[k] = val
	}
	return env, nil
}

// InputEnvName is the variable the runner would set for an input of a
// JavaScript action, and what go-githubactions reads: INPUT_ and the name
// upper-cased, spaces to underscores, hyphens kept.
func InputEnvName(input string) string {
	return "INPUT_" + strings.ToUpper(strings.ReplaceAll(input, " ", "_"))
}

// RunnerEnv is what a runner sets for every step of a job, with fresh
// GITHUB_OUTPUT and GITHUB_STEP_SUMMARY files in dir.
type RunnerEnv struct {
	Dir         string
	RunID       int64
	RunAttempt  int64
	Repository  string // owner/name
	APIURL      string
	OutputFile  string
	SummaryFile string
}

// NewStep makes the files of one step under dir and returns its runner env.
func NewStep(dir string, runID, attempt int64, repo, apiURL string) (*RunnerEnv, error) {
	d, err := os.MkdirTemp(dir, "step-")
	if err != nil {
		return nil, err
	}
	r := &RunnerEnv{Dir: d, RunID: runID, RunAttempt: attempt, Repository: repo, APIURL: apiURL,
		OutputFile: filepath.Join(d, "output"), SummaryFile: filepath.Join(d, "summary")}
	for _, f := range []string{r.OutputFile, r.SummaryFile} {
		if err := os.WriteFile(f, nil, 0o644); err != nil {
			return nil, err
		}
	}
	return r, nil
}

// Vars are the variables.
func (r *RunnerEnv) Vars() map[string]string {
	owner, _, _ := strings.Cut(r.Repository, "/")
	return map[string]string{
		"CI":                      "true",
		"GITHUB_ACTIONS":          "true",
		"GITHUB_OUTPUT":           r.OutputFile,
		"GITHUB_STEP_SUMMARY":     r.SummaryFile,
		"GITHUB_RUN_ID":           fmt.Sprint(r.RunID),
		"GITHUB_RUN_ATTEMPT":      fmt.Sprint(r.RunAttempt),
		"GITHUB_REPOSITORY":       r.Repository,
		"GITHUB_REPOSITORY_OWNER": owner,
		"GITHUB_API_URL":          r.APIURL,
		"RUNNER_TEMP":             r.Dir,
		"RUNNER_OS":               "Linux",
	}
}

// Outputs reads the step's GITHUB_OUTPUT file.
func (r *RunnerEnv) Outputs() (map[string]string, error) {
	data, err := os.ReadFile(r.OutputFile)
	if err != nil {
		return nil, err
	}
	return ParseOutputs(string(data))
}

// Summary reads the step's job summary.
func (r *RunnerEnv) Summary() (string, error) {
	data, err := os.ReadFile(r.SummaryFile)
	return string(data), err
}

// ParseOutputs reads the GITHUB_OUTPUT file format: `name=value` lines and
// `name<<DELIMITER` … `DELIMITER` blocks for multi-line values. A later
// value replaces an earlier one, as on a runner.
func ParseOutputs(data string) (map[string]string, error) {
	out := map[string]string{}
	lines := strings.Split(strings.ReplaceAll(data, "\r\n", "\n"), "\n")
	for i := 0; i < len(lines); i++ {
		line := lines[i]
		if line == "" {
			continue
		}
		eq, heredoc := strings.Index(line, "="), strings.Index(line, "<<")
		if heredoc > 0 && (eq < 0 || heredoc < eq) {
			name, delim := line[:heredoc], line[heredoc+2:]
			if delim == "" {
				return nil, fmt.Errorf("line %d: empty delimiter", i+1)
			}
			var val []string
			for i++; i < len(lines) && lines[i] != delim; i++ {
				val = append(val, lines[i])
			}
			if i == len(lines) {
				return nil, fmt.Errorf("output %s: delimiter %q never closes", name, delim)
			}
			out[name] = strings.Join(val, "\n")
			continue
		}
		if eq <= 0 {
			return nil, fmt.Errorf("line %d: %q is neither name=value nor name<<DELIMITER", i+1, line)
		}
		out[line[:eq]] = line[eq+1:]
	}
	return out, nil
}
