package action

import (
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/sethvargo/go-githubactions"
)

// Modes of the Action.
const (
	ModeStart = "start"
	ModeStop  = "stop"
	ModeGC    = "gc"
)

// Defaults of the inputs, also written in action.yml (a test checks they agree).
const (
	DefaultDeployment  = "action"
	DefaultTimeout     = 10 * time.Minute
	DefaultMaxLifetime = 6 * time.Hour
	DefaultGPUCount    = 1
)

// KnownProviders are the providers an input may name. local (loopback sshd)
// is for tests and the demo only, and is left out of the docs.
var KnownProviders = []string{"vast", "lambda", "local"}

// Inputs are the Action's inputs, parsed and checked.
type Inputs struct {
	Mode string

	// Providers are the candidates; empty means every provider whose API
	// key was given.
	Providers    []string
	GPU          string
	GPUCount     int
	MinGPUMemory float64 // GB per GPU
	MaxPrice     float64 // USD per hour, 0 for no cap
	DiskGB       int
	Image        string
	Region       string
	CheckGPU     bool

	GitHubToken         string
	GitHubAppID         int64
	GitHubAppPrivateKey string
	VastAPIKey          string
	LambdaAPIKey        string

	// Labels are extra runner labels besides the unique one.
	Labels  []string
	Timeout time.Duration
	// BootTimeout bounds one host's part of Timeout, from its creation
	// to its runner online; a host past it is destroyed and the next offer
	// tried. Half of Timeout unless given.
	BootTimeout time.Duration
	MaxLifetime time.Duration
	// HedgeAfter, when positive, races a second host against a first
	// whose runner is not online that long after its create call.
	HedgeAfter time.Duration
	Deployment string
	// OrgScope registers the runner with the organization instead of the
	// repository.
	OrgScope      bool
	RunnerGroupID int64

	// RunnerVersion and RunnerSHA256 (x64) or RunnerSHA256Arm64 pin the
	// actions/runner release; when empty, GitHub's runners/downloads
	// endpoint says which to install. A host of an architecture without a
	// checksum takes GitHub's, for RunnerVersion.
	RunnerVersion     string
	RunnerSHA256      string
	RunnerSHA256Arm64 string
	RunnerURL         string

	// Label and LeaseID say which lease stop releases.
	Label   string
	LeaseID string

	// DryRun makes gc print its plan only.
	DryRun bool
}

// secretInputs are the inputs that hold secrets; they are masked before any
// other input is read.
var secretInputs = []string{"github-token", "github-app-private-key", "vast-api-key", "lambda-api-key"}

var (
	deploymentRE = regexp.MustCompile(`^[a-z0-9][a-z0-9-]{0,23}$`)
	leaseIDRE    = regexp.MustCompile(`^l[a-z2-9]{10}$`)
	// labelRE is the label start writes: crabbox-<run id>-<attempt>-<lease id>.
	labelRE      = regexp.MustCompile(`^crabbox-[0-9]+-[0-9]+-(l[a-z2-9]{10})$`)
	versionRE    = regexp.MustCompile(`^[0-9]+(\.[0-9]+){1,3}$`)
	sha256RE     = regexp.MustCompile(`^[0-9a-f]{64}$`)
	extraLabelRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$`)
)

// inputError names the input at fault.
func inputError(name, format string, args ...any) error {
	return fmt.Errorf("input %s: %s", name, fmt.Sprintf(format, args...))
}

// ParseInputs reads and checks the inputs. Errors name the input, never its
// value when the input is a secret.
func ParseInputs(a *githubactions.Action) (*Inputs, error) {
	get := a.GetInput
	in := &Inputs{Mode: strings.ToLower(get("mode"))}
	switch in.Mode {
	case ModeStart, ModeStop, ModeGC:
	case "":
		return nil, inputError("mode", "required: start, stop or gc")
	default:
		return nil, inputError("mode", "%q is not start, stop or gc", in.Mode)
	}

	in.GitHubToken = get("github-token")
	in.GitHubAppPrivateKey = get("github-app-private-key")
	in.VastAPIKey = get("vast-api-key")
	in.LambdaAPIKey = get("lambda-api-key")
	if v := get("github-app-id"); v != "" {
		id, err := strconv.ParseInt(v, 10, 64)
		if err != nil || id <= 0 {
			return nil, inputError("github-app-id", "%q is not a positive integer", v)
		}
		in.GitHubAppID = id
	}
	hasApp := in.GitHubAppID != 0 || in.GitHubAppPrivateKey != ""
	switch {
	case in.GitHubToken != "" && hasApp:
		return nil, inputError("github-token", "give either github-token or github-app-id with github-app-private-key, not both")
	case hasApp && in.GitHubAppID == 0:
		return nil, inputError("github-app-id", "required with github-app-private-key")
	case hasApp && in.GitHubAppPrivateKey == "":
		return nil, inputError("github-app-private-key", "required with github-app-id")
	case in.GitHubToken == "" && !hasApp:
		return nil, inputError("github-token", "required (or github-app-id with github-app-private-key): "+
			"a token that may manage self-hosted runners; the workflow's GITHUB_TOKEN cannot")
	}

	var err error
	if in.Providers, err = parseProviders(get("provider")); err != nil {
		return nil, err
	}
	in.Deployment = orDefault(get("deployment"), DefaultDeployment)
	if !deploymentRE.MatchString(in.Deployment) {
		return nil, inputError("deployment", "%q must be 1-24 lower-case letters, digits or '-'", in.Deployment)
	}
	switch s := strings.ToLower(orDefault(get("scope"), "repo")); s {
	case "repo", "org":
		in.OrgScope = s == "org"
	default:
		return nil, inputError("scope", "%q is not repo or org", s)
	}
	if in.RunnerGroupID, err = parseInt(get, "runner-group-id", 1, 1); err != nil {
		return nil, err
	}

	switch in.Mode {
	case ModeStart:
		err = in.parseStart(get)
	case ModeStop:
		err = in.parseStop(get)
	case ModeGC:
		in.DryRun, err = parseBool(get, "dry-run", false)
	}
	if err != nil {
		return nil, err
	}
	return in, nil
}

func (in *Inputs) parseStart(get func(string) string) error {
	var err error
	in.GPU = get("gpu")
	count, err := parseInt(get, "gpu-count", DefaultGPUCount, 1)
	if err != nil {
		return err
	}
	in.GPUCount = int(count)
	if in.MinGPUMemory, err = parseFloat(get, "min-gpu-memory"); err != nil {
		return err
	}
	if in.MaxPrice, err = parseFloat(get, "max-price"); err != nil {
		return err
	}
	disk, err := parseInt(get, "disk", 0, 0)
	if err != nil {
		return err
	}
	in.DiskGB = int(disk)
	in.Image, in.Region = get("image"), get("region")
	if in.CheckGPU, err = parseBool(get, "check-gpu", true); err != nil {
		return err
	}
	if in.Labels, err = parseLabels(get("labels")); err != nil {
		return err
	}
	if in.Timeout, err = parseDuration(get, "timeout", DefaultTimeout); err != nil {
		return err
	}
	if in.MaxLifetime, err = parseDuration(get, "max-lifetime", DefaultMaxLifetime); err != nil {
		return err
	}
	if in.Timeout >= in.MaxLifetime {
		return inputError("timeout", "%s is not shorter than max-lifetime %s", in.Timeout, in.MaxLifetime)
	}
	if in.BootTimeout, err = parseDuration(get, "boot-timeout", in.Timeout/2); err != nil {
		return err
	}
	if in.BootTimeout > in.Timeout {
		return inputError("boot-timeout", "%s is longer than timeout %s: one host would have longer than the whole start", in.BootTimeout, in.Timeout)
	}
	if in.HedgeAfter, err = parseDuration(get, "hedge-after", 0); err != nil {
		return err
	}
	if in.HedgeAfter > 0 && in.HedgeAfter >= in.Timeout {
		return inputError("hedge-after", "%s is not shorter than timeout %s: the hedge would never start", in.HedgeAfter, in.Timeout)
	}
	in.RunnerVersion = strings.TrimPrefix(get("runner-version"), "v")
	in.RunnerSHA256 = strings.ToLower(get("runner-sha256"))
	in.RunnerSHA256Arm64 = strings.ToLower(get("runner-sha256-arm64"))
	in.RunnerURL = get("runner-url")
	anySum := in.RunnerSHA256 != "" || in.RunnerSHA256Arm64 != ""
	switch {
	case in.RunnerVersion == "" && anySum, in.RunnerVersion != "" && !anySum:
		return inputError("runner-version", "give runner-version and runner-sha256 (or runner-sha256-arm64) together, or neither (GitHub then says which release to install)")
	case in.RunnerVersion != "" && !versionRE.MatchString(in.RunnerVersion):
		return inputError("runner-version", "%q is not like 2.330.0", in.RunnerVersion)
	case in.RunnerSHA256 != "" && !sha256RE.MatchString(in.RunnerSHA256):
		return inputError("runner-sha256", "must be 64 hexadecimal digits")
	case in.RunnerSHA256Arm64 != "" && !sha256RE.MatchString(in.RunnerSHA256Arm64):
		return inputError("runner-sha256-arm64", "must be 64 hexadecimal digits")
	case in.RunnerURL != "" && in.RunnerVersion == "":
		return inputError("runner-url", "needs runner-version and runner-sha256")
	}
	return nil
}

func (in *Inputs) parseStop(get func(string) string) error {
	in.Label, in.LeaseID = get("label"), get("lease-id")
	if in.Label == "" && in.LeaseID == "" {
		return inputError("lease-id", "stop needs lease-id or label (the outputs of start); "+
			"start writes them before it leases anything, so pass them even when start failed")
	}
	if in.Label != "" {
		m := labelRE.FindStringSubmatch(in.Label)
		if m == nil {
			return inputError("label", "%q is not a label written by start (crabbox-<run id>-<attempt>-<lease id>)", in.Label)
		}
		if in.LeaseID != "" && in.LeaseID != m[1] {
			return inputError("lease-id", "%q is not the lease of label %q", in.LeaseID, in.Label)
		}
		in.LeaseID = m[1]
	}
	if !leaseIDRE.MatchString(in.LeaseID) {
		return inputError("lease-id", "%q is not a lease id written by start", in.LeaseID)
	}
	return nil
}

// Secrets returns the secret inputs that are set.
func (in *Inputs) Secrets() []string {
	var out []string
	for _, s := range []string{in.GitHubToken, in.GitHubAppPrivateKey, in.VastAPIKey, in.LambdaAPIKey} {
		if s != "" {
			out = append(out, s)
		}
	}
	return out
}

// ProviderNames returns the providers to use: those asked for, or every
// provider whose key was given.
func (in *Inputs) ProviderNames() ([]string, error) {
	if len(in.Providers) > 0 {
		for _, p := range in.Providers {
			if p == "vast" && in.VastAPIKey == "" {
				return nil, inputError("vast-api-key", "required with provider vast")
			}
			if p == "lambda" && in.LambdaAPIKey == "" {
				return nil, inputError("lambda-api-key", "required with provider lambda")
			}
		}
		return in.Providers, nil
	}
	var out []string
	if in.VastAPIKey != "" {
		out = append(out, "vast")
	}
	if in.LambdaAPIKey != "" {
		out = append(out, "lambda")
	}
	if len(out) == 0 {
		return nil, inputError("provider", "no provider: give vast-api-key and/or lambda-api-key")
	}
	return out, nil
}

func parseProviders(v string) ([]string, error) {
	var out []string
	for _, p := range splitList(v) {
		p = strings.ToLower(p)
		if !slices.Contains(KnownProviders, p) {
			return nil, inputError("provider", "unknown provider %q (known: vast, lambda)", p)
		}
		if !slices.Contains(out, p) {
			out = append(out, p)
		}
	}
	return out, nil
}

// parseLabels reads extra labels, separated by commas or newlines. A label
// that every other job could also ask for would let them take this runner,
// so the docs warn; here only the form is checked.
func parseLabels(v string) ([]string, error) {
	var out []string
	for _, l := range splitList(v) {
		if !extraLabelRE.MatchString(l) {
			return nil, inputError("labels", "%q is not a valid label (letters, digits, '.', '_', '-')", l)
		}
		if !slices.ContainsFunc(out, func(o string) bool { return strings.EqualFold(o, l) }) {
			out = append(out, l)
		}
	}
	if len(out) > 99 {
		return nil, inputError("labels", "at most 99 extra labels (GitHub allows 100 per runner)")
	}
	return out, nil
}

func splitList(v string) []string {
	var out []string
	for _, f := range strings.FieldsFunc(v, func(r rune) bool { return r == ',' || r == '\n' || r == '\r' }) {
		if f = strings.TrimSpace(f); f != "" {
			out = append(out, f)
		}
	}
	return out
}

func parseInt(get func(string) string, name string, def, minimum int64) (int64, error) {
	v := get(name)
	if v == "" {
		return def, nil
	}
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil || n < minimum {
		return 0, inputError(name, "%q is not an integer of at least %d", v, minimum)
	}
	return n, nil
}

func parseFloat(get func(string) string, name string) (float64, error) {
	v := get(name)
	if v == "" {
		return 0, nil
	}
	f, err := strconv.ParseFloat(strings.TrimPrefix(v, "$"), 64)
	if err != nil || f < 0 || f != f {
		return 0, inputError(name, "%q is not a non-negative number", v)
	}
	return f, nil
}

func parseBool(get func(string) string, name string, def bool) (bool, error) {
	switch strings.ToLower(get(name)) {
	case "":
		return def, nil
	case "true", "yes", "1":
		return true, nil
	case "false", "no", "0":
		return false, nil
	}
	return false, inputError(name, "%q is not true or false", get(name))
}

// parseDuration takes Go durations ("90m", "1h30m") and, since workflow
// authors often write them so, plain numbers as minutes.
func parseDuration(get func(string) string, name string, def time.Duration) (time.Duration, error) {
	v := get(name)
	if v == "" {
		return def, nil
	}
	if n, err := strconv.Atoi(v); err == nil {
		v = strconv.Itoa(n) + "m"
	}
	d, err := time.ParseDuration(v)
	if err != nil || d <= 0 {
		return 0, inputError(name, "%q is not a positive duration like 10m or 2h", get(name))
	}
	return d, nil
}

func orDefault(v, def string) string {
	if v == "" {
		return def
	}
	return v
}

// errNotInActions is returned when the environment lacks what every runner sets.
var errNotInActions = errors.New("this runs as a GitHub Actions step: GITHUB_OUTPUT, GITHUB_REPOSITORY, GITHUB_RUN_ID and GITHUB_RUN_ATTEMPT must be set")
