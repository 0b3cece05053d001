// Package action is the logic behind `crabbox-runner action`, the entry of
// the composite GitHub Action (action.yml at the repository root). A start
// step leases the cheapest fitting GPU host and registers a one-job runner
// with a label unique to the workflow run; a later job runs on that label;
// a stop step removes the runner and destroys the host; a gc step, on a
// schedule, cleans up what a stop never reached. There is no server and no
// database: the instance's ownership marker carries the lease id and its
// expiry, and stop finds everything from the lease id alone.
//
// The Action talks to the runner the way GitHub documents it: inputs as
// INPUT_<NAME> variables (which a composite action must set itself, see
// action.yml), outputs and the job summary through the GITHUB_OUTPUT and
// GITHUB_STEP_SUMMARY files, and workflow commands on stdout. Every secret
// it is given or makes is masked with ::add-mask:: before anything else is
// printed, and redacted from whatever this process writes.
package action

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/sethvargo/go-githubactions"

	"github.com/crabbox/crabbox-runner/github"
	"github.com/crabbox/crabbox-runner/provisioner"
)

// Keys are the provider API keys given as inputs.
type Keys struct {
	Vast, Lambda string
}

// Env is what the Action runs with. The command fills it from the process;
// tests fill it with fakes.
type Env struct {
	Getenv func(string) string
	// Stdout carries workflow commands and progress; Stderr the logs.
	Stdout, Stderr io.Writer

	// NewProvider builds a provider by name with the keys from the inputs.
	NewProvider func(name string, keys Keys, log *slog.Logger) (provisioner.Provider, error)
	// PrintGC prints a gc plan as `crabbox-runner gc` does.
	PrintGC func(w io.Writer, plan *provisioner.GCPlan, applied bool) error

	// Transport carries requests to GitHub; http.DefaultTransport when nil.
	Transport http.RoundTripper
	// Now is the clock; time.Now when nil.
	Now func() time.Time
	// Tune adjusts the provisioner's config before it is built (tests: poll
	// faster, wrap GitHub or the bootstrapper).
	Tune func(*provisioner.Config)
}

// ErrFailed is wrapped by every error Run returns after it has reported
// the failure as a workflow ::error:: annotation.
var ErrFailed = errors.New("action failed")

// runner is one run of the Action.
type runner struct {
	env Env
	ga  *githubactions.Action
	// out is the redacting stdout, for what is written around ga.
	out     io.Writer
	secrets *secrets
	log     *slog.Logger
	in      *Inputs
	ctx     *githubactions.GitHubContext
	now     func() time.Time
}

// Run runs the Action once. Its error is already redacted and reported as
// an ::error:: annotation, and its text is inert (fence.go); the caller
// only sets the exit code.
func Run(ctx context.Context, env Env) error {
	if env.Getenv == nil || env.Stdout == nil || env.Stderr == nil {
		return errors.New("action: Getenv, Stdout and Stderr are required")
	}
	if env.Now == nil {
		env.Now = time.Now
	}
	// One lock for everything written to stdout (fence.go).
	env.Stdout = &lockedWriter{w: env.Stdout}
	s := newSecrets(env.Stdout)
	raw := githubactions.New(githubactions.WithGetenv(env.Getenv))
	// Before anything else is read or printed.
	for _, name := range secretInputs {
		s.Add(raw.GetInput(name))
	}
	r := &runner{
		env:     env,
		ga:      githubactions.New(githubactions.WithGetenv(env.Getenv), githubactions.WithWriter(s.Writer(env.Stdout))),
		out:     s.Writer(env.Stdout),
		secrets: s,
		now:     env.Now,
	}
	level := slog.LevelWarn
	if env.Getenv("RUNNER_DEBUG") == "1" {
		level = slog.LevelDebug
	}
	// The logs carry host output (a failing phase's stderr): inert, so no
	// line of it is a workflow command (fence.go).
	r.log = slog.New(slog.NewTextHandler(s.Writer(inertWriter{env.Stderr}), &slog.HandlerOptions{Level: level}))

	err := r.safeRun(ctx)
	if err != nil {
		msg := s.Redact(err.Error())
		// The annotation's message is escaped onto one line (the runner
		// reads it as one ::error:: command, host text and all); the
		// error, which the command prints to stderr, is made inert.
		r.ga.Errorf("%s", msg)
		return fmt.Errorf("%w: %s", ErrFailed, inert(msg))
	}
	return nil
}

// safeRun turns a panic into an error: go-githubactions panics when it
// cannot write GITHUB_OUTPUT or the summary, and a stack trace is not a
// message a workflow author can act on.
func (r *runner) safeRun(ctx context.Context) (err error) {
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("%v", p)
		}
	}()
	return r.run(ctx)
}

func (r *runner) run(ctx context.Context) error {
	var err error
	if r.in, err = ParseInputs(r.ga); err != nil {
		return err
	}
	if r.ctx, err = r.ga.Context(); err != nil {
		return fmt.Errorf("reading the GITHUB_* environment: %w", err)
	}
	if r.env.Getenv("GITHUB_OUTPUT") == "" || r.ctx.Repository == "" || (r.in.Mode == ModeStart && (r.ctx.RunID == 0 || r.ctx.RunAttempt == 0)) {
		return errNotInActions
	}
	switch r.in.Mode {
	case ModeStart:
		return r.start(ctx)
	case ModeStop:
		return r.stop(ctx)
	default:
		return r.gc(ctx)
	}
}

// scope is where the runner registers: the repository, or its owner.
func (r *runner) scope() provisioner.Scope {
	if r.in.OrgScope {
		owner, _ := r.ctx.Repo()
		return provisioner.Scope{Org: owner}
	}
	return provisioner.Scope{Repo: r.ctx.Repository}
}

func (r *runner) githubConfig() github.Config {
	tr := r.env.Transport
	if tr == nil {
		tr = http.DefaultTransport
	}
	return github.Config{
		APIURL: r.ctx.APIURL, Token: r.in.GitHubToken,
		AppID: r.in.GitHubAppID, AppPrivateKey: appKey(r.in.GitHubAppPrivateKey),
		RunnerGroupID: r.in.RunnerGroupID,
		HTTPClient:    &http.Client{Transport: &maskingTransport{base: tr, s: r.secrets}},
	}
}

func appKey(k string) []byte {
	if k == "" {
		return nil
	}
	return []byte(k + "\n")
}

// github builds the GitHub client, masking the secrets it is handed.
func (r *runner) github() (*github.Client, error) {
	return github.New(r.githubConfig())
}

func (r *runner) keys() Keys { return Keys{Vast: r.in.VastAPIKey, Lambda: r.in.LambdaAPIKey} }

// providers builds every provider the inputs name.
func (r *runner) providers() (map[string]provisioner.Provider, []string, error) {
	names, err := r.in.ProviderNames()
	if err != nil {
		return nil, nil, err
	}
	out := map[string]provisioner.Provider{}
	for _, name := range names {
		p, err := r.env.NewProvider(name, r.keys(), r.log.With("provider", name))
		if err != nil {
			return nil, nil, err
		}
		out[name] = p
	}
	return out, names, nil
}

func (r *runner) provisioner(gh provisioner.GitHub, boot provisioner.Bootstrapper, providers map[string]provisioner.Provider) (*provisioner.Provisioner, error) {
	cfg := provisioner.Config{
		Deployment: r.in.Deployment, Providers: providers,
		GitHub: gh, Bootstrapper: boot, Logger: r.log, Now: r.now,
		Endpoints: r.endpointPolicy(),
	}
	if r.env.Tune != nil {
		r.env.Tune(&cfg)
	}
	return provisioner.New(cfg)
}

// endpointPolicy: the Action connects to public addresses only, as serve
// does. Its tests run hosts on loopback: the local provider's always, the
// fake clouds' with CRABBOX_ALLOW_PRIVATE_ENDPOINTS=true, a variable for
// tests only and no input of action.yml.
func (r *runner) endpointPolicy() provisioner.EndpointPolicy {
	allow := map[string]bool{"local": true}
	if v, _ := strconv.ParseBool(r.env.Getenv("CRABBOX_ALLOW_PRIVATE_ENDPOINTS")); v {
		allow["vast"], allow["lambda"] = true, true
	}
	return provisioner.EndpointPolicy{
		AllowPrivate: allow,
		Hint:         func(string) string { return "CRABBOX_ALLOW_PRIVATE_ENDPOINTS=true (tests only)" },
	}
}

// setOutputs writes outputs; the values are never secret, and checked.
func (r *runner) setOutputs(kv ...string) {
	for i := 0; i+1 < len(kv); i += 2 {
		r.ga.SetOutput(kv[i], r.secrets.Redact(kv[i+1]))
	}
}

// summary appends markdown to the job summary, when the runner offers one.
func (r *runner) summary(md string) {
	if r.env.Getenv("GITHUB_STEP_SUMMARY") == "" {
		return
	}
	r.ga.AddStepSummary(r.secrets.Redact(md))
}

func money(usd float64) string { return "$" + strconv.FormatFloat(usd, 'f', 2, 64) }

func price(usd float64) string { return strconv.FormatFloat(usd, 'f', 3, 64) }

// mdCell keeps a table cell on one line and its pipes literal.
func mdCell(s string) string {
	return strings.NewReplacer("|", `\|`, "\n", " ", "\r", " ").Replace(s)
}

// hostText writes a line that may carry what a host printed: between
// stop-commands markers, so that none of it is a workflow command.
func (r *runner) hostText(format string, args ...any) {
	if _, err := io.WriteString(r.out, fenced(fmt.Sprintf(format, args...))); err != nil {
		panic(fmt.Errorf("writing to stdout: %w", err))
	}
}
