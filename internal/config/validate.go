package config

import (
	"fmt"
	"net"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/crabbox/crabbox-runner/internal/apiurl"
	"github.com/crabbox/crabbox-runner/providers/lambda"
	"github.com/crabbox/crabbox-runner/provisioner"
)

// KnownProviders are the providers a class may name.
var KnownProviders = []string{"vast", "lambda", "local"}

// Needs says which settings the running command cannot do without.
type Needs struct {
	Webhook    bool // the webhook secret (serve)
	GitHub     bool // GitHub credentials (serve, gc, action)
	Classes    bool // at least one class
	Runner     bool // the runner release to install (serve)
	Deployment bool // the ownership marker (serve, gc)
}

// Error is a configuration error naming the key at fault.
type Error struct {
	Key string
	Msg string
}

func (e *Error) Error() string { return "config: " + e.Key + ": " + e.Msg }

func errf(key, format string, args ...any) error {
	return &Error{Key: key, Msg: fmt.Sprintf(format, args...)}
}

// deploymentRe keeps the deployment short and plain: it is written into
// instance labels, Lambda tag values and runner names.
var deploymentRe = regexp.MustCompile(`^[a-z0-9][a-z0-9-]{0,23}$`)

var classNameRe = regexp.MustCompile(`^[a-zA-Z0-9][a-zA-Z0-9_.-]{0,62}$`)

// Validate checks the configuration and returns the first problem found.
func (c *Config) Validate(needs Needs) error {
	if c.Deployment == "" && needs.Deployment {
		return errf("deployment", "required: the ownership marker written on every instance (or CRABBOX_DEPLOYMENT)")
	}
	if c.Deployment != "" && !deploymentRe.MatchString(c.Deployment) {
		return errf("deployment", "%q must be 1-24 lower-case letters, digits or '-', starting with a letter or digit", c.Deployment)
	}
	if _, _, err := net.SplitHostPort(c.Listen); err != nil {
		return errf("listen", "%q is not host:port: %v", c.Listen, err)
	}
	if c.MetricsListen != "" {
		if _, _, err := net.SplitHostPort(c.MetricsListen); err != nil {
			return errf("metrics_listen", "%q is not host:port: %v", c.MetricsListen, err)
		}
	}
	if err := checkDatabaseURL(c.DatabaseURL); err != nil {
		return err
	}
	if !slices.Contains([]string{"debug", "info", "warn", "error"}, c.Log.Level) {
		return errf("log.level", "%q is not one of debug, info, warn, error", c.Log.Level)
	}
	if !slices.Contains([]string{"json", "text"}, c.Log.Format) {
		return errf("log.format", "%q is not one of json, text", c.Log.Format)
	}
	if err := CheckBaseURL("github.api_url", c.GitHub.APIURL); err != nil {
		return err
	}
	for i, sc := range c.GitHub.Scopes {
		parts := strings.Split(sc, "/")
		if len(parts) > 2 || slices.Contains(parts, "") || strings.ContainsAny(sc, " \t") {
			return errf(fmt.Sprintf("github.scopes[%d]", i), "%q is neither an org (acme) nor a repository (acme/ml)", sc)
		}
	}
	if c.GitHub.RunnerGroupID < 1 {
		return errf("github.runner_group_id", "must be a positive integer")
	}
	if needs.GitHub {
		hasApp := c.GitHub.AppID != 0 || len(c.GitHubAppKey) > 0
		switch {
		case c.GitHubToken != "" && hasApp:
			return errf("github", "set either CRABBOX_GITHUB_TOKEN or a GitHub App, not both")
		case hasApp && c.GitHub.AppID == 0:
			return errf("github.app_id", "required with a GitHub App private key (or CRABBOX_GITHUB_APP_ID)")
		case hasApp && len(c.GitHubAppKey) == 0:
			return errf("github.app_private_key_file", "required with a GitHub App id (or CRABBOX_GITHUB_APP_PRIVATE_KEY / _FILE)")
		case c.GitHubToken == "" && !hasApp:
			return errf("github", "no credentials: set CRABBOX_GITHUB_APP_ID with CRABBOX_GITHUB_APP_PRIVATE_KEY(_FILE), or CRABBOX_GITHUB_TOKEN")
		}
	}
	switch c.GitHub.Mode {
	case "", ModeWebhook, ModePoll:
	default:
		return errf("github.mode", "must be %q or %q, not %q", ModeWebhook, ModePoll, c.GitHub.Mode)
	}
	if c.GitHub.PollInterval < 0 || (c.GitHub.PollInterval > 0 && c.GitHub.PollInterval < time.Second) {
		return errf("github.poll_interval", "must be at least 1s (default 1m), not %s", c.GitHub.PollInterval)
	}
	// Poll mode takes no webhooks: no secret to check them with.
	if needs.Webhook && len(c.WebhookSecret) == 0 && !c.GitHub.Polling() {
		return errf("webhook.secret_file", "a webhook secret is required: set CRABBOX_WEBHOOK_SECRET or CRABBOX_WEBHOOK_SECRET_FILE (or run without webhooks: github.mode: poll)")
	}
	// Poll mode needs no secret, but one given there still checks every
	// POST /webhook: as weak a secret is refused there too.
	if needs.Webhook && len(c.WebhookSecret) > 0 && len(c.WebhookSecret) < MinWebhookSecretLen {
		// Its length only: the secret itself never reaches an error.
		return errf("webhook.secret_file", "the webhook secret has %d bytes, fewer than %d: anyone could guess it and sign webhooks. "+
			"Make one with: openssl rand -hex 32 (set it by CRABBOX_WEBHOOK_SECRET, CRABBOX_WEBHOOK_SECRET_FILE or webhook.secret_file, "+
			"and enter the same secret in the GitHub App's or the repository's webhook settings)", len(c.WebhookSecret), MinWebhookSecretLen)
	}
	if err := c.Webhook.validate(); err != nil {
		return err
	}
	if err := checkStatusToken(c.StatusToken); err != nil {
		return err
	}
	if err := CheckStateKey(c.StateKey); err != nil {
		return err
	}
	if err := checkStateKeyAt("state.previous_key_file", "CRABBOX_STATE_KEY_PREVIOUS", c.StateKeyPrevious); err != nil {
		return err
	}
	if needs.Runner {
		if err := c.validateRunner(); err != nil {
			return err
		}
	}
	if err := CheckBaseURL("providers.vast.api_url", c.Providers.Vast.APIURL); err != nil {
		return err
	}
	if err := CheckBaseURL("providers.lambda.api_url", c.Providers.Lambda.APIURL); err != nil {
		return err
	}
	if err := c.validateNumbers(); err != nil {
		return err
	}
	if c.Limits.GitHubBudgetReservePercent > 90 {
		return errf("limits.github_budget_reserve_percent", "must be at most 90")
	}
	if c.Limits.MaxSpendPerHour < 0 {
		return errf("limits.max_spend_per_hour", "must not be negative")
	}
	if c.Reconcile.UnusedRunnerBackoff < 0 {
		return errf("reconcile.unused_runner_backoff", "must not be negative")
	}
	if needs.Classes && len(c.Classes) == 0 {
		return errf("classes", "at least one class is required")
	}
	seen := map[string]bool{}
	for i := range c.Classes {
		if err := c.validateClass(i, seen); err != nil {
			return err
		}
	}
	return nil
}

func (c *Config) validateRunner() error {
	if c.Runner.Version == "" {
		return errf("runner.version", "required: the actions/runner version to install, e.g. \"2.330.0\"")
	}
	if err := c.Runner.SHA256.validate(); err != nil {
		return err
	}
	u := strings.NewReplacer("{version}", c.Runner.Version, "{arch}", "x64").Replace(c.Runner.URL)
	return CheckBaseURL("runner.url", u)
}

func (c *Config) validateClass(i int, seen map[string]bool) error {
	cc := &c.Classes[i]
	key := fmt.Sprintf("classes[%d]", i)
	if cc.Name == "" {
		return errf(key+".name", "required")
	}
	key = fmt.Sprintf("classes[%d] (%s)", i, cc.Name)
	if !classNameRe.MatchString(cc.Name) {
		return errf(key+".name", "%q must be letters, digits, '.', '_' or '-'", cc.Name)
	}
	if seen[strings.ToLower(cc.Name)] {
		return errf(key+".name", "%q is defined twice", cc.Name)
	}
	seen[strings.ToLower(cc.Name)] = true
	if len(cc.Labels) == 0 {
		return errf(key+".labels", "required: a job fits when all its runs-on labels are here")
	}
	if len(cc.Labels) > 100 {
		return errf(key+".labels", "GitHub allows at most 100 labels per runner")
	}
	for j, l := range cc.Labels {
		if strings.TrimSpace(l) == "" || strings.ContainsAny(l, ",\n") {
			return errf(fmt.Sprintf("%s.labels[%d]", key, j), "%q is not a valid label", l)
		}
	}
	if !slices.ContainsFunc(cc.Labels, func(l string) bool { return !provisioner.IsDefaultLabel(l) }) {
		return errf(key+".labels", "every label is one of GitHub's default runner labels (%s); add one that names this class, "+
			"such as %q, so that a job must ask for it (runs-on: self-hosted alone must not rent a GPU)",
			strings.Join(provisioner.DefaultRunnerLabels, ", "), strings.ToLower(cc.Name))
	}
	for j, p := range cc.Repositories {
		if err := provisioner.CheckRepoPattern(p); err != nil {
			return errf(fmt.Sprintf("%s.repositories[%d]", key, j), "%v", err)
		}
	}
	if len(cc.Providers) == 0 {
		return errf(key+".providers", "required: one or more of %s", strings.Join(KnownProviders, ", "))
	}
	for j, p := range cc.Providers {
		pk := fmt.Sprintf("%s.providers[%d]", key, j)
		if !slices.Contains(KnownProviders, p) {
			return errf(pk, "unknown provider %q (known: %s)", p, strings.Join(KnownProviders, ", "))
		}
		if p == "vast" && c.VastAPIKey == "" {
			return errf(pk, "vast needs VAST_API_KEY")
		}
		if p == "lambda" && c.LambdaAPIKey == "" {
			return errf(pk, "lambda needs LAMBDA_API_KEY")
		}
	}
	if err := cc.validateNumbers(key); err != nil {
		return err
	}
	if cc.GPU.Count < 0 {
		return errf(key+".gpu.count", "must be at least 1")
	}
	if cc.GPU.MinMemoryGB < 0 {
		return errf(key+".gpu.min_memory_gb", "must not be negative")
	}
	if cc.MaxPricePerHour < 0 {
		return errf(key+".max_price_per_hour", "must not be negative")
	}
	if cc.MaxLeases < 0 {
		return errf(key+".max_leases", "must not be negative")
	}
	if cc.MinIdle < 0 {
		return errf(key+".min_idle", "must not be negative: the number of warm hosts to keep (0: none)")
	}
	if cc.MaxLeases > 0 && cc.MinIdle > cc.MaxLeases {
		// The warm hosts alone would fill the cap: no job could get a host of its own.
		return errf(key+".min_idle", "%d is above the class's max_leases (%d)", cc.MinIdle, cc.MaxLeases)
	}
	if cc.Interruptible != nil {
		// A bid under the minimum is refused by Vast (400 invalid_price);
		// Lambda has no bid market, so a class on Lambda alone cannot use
		// it, while a class on both bids on Vast only.
		if b := cc.Interruptible.Bid; b < 1 || b > MaxBidMultiple {
			return errf(key+".interruptible.bid", "must be from 1 to %g: the multiple of an offer's minimum bid to bid (1.2 bids 20%% over it)", MaxBidMultiple)
		}
		if !slices.Contains(cc.Providers, "vast") {
			return errf(key+".interruptible", "only Vast has interruptible (bid) hosts; add vast to providers or remove interruptible (Lambda has no bid market)")
		}
	}
	if cc.DiskGB < 0 {
		return errf(key+".disk_gb", "must not be negative")
	}
	if cc.LambdaImage != "" || cc.imageIsLambdas() {
		k, v := ".lambda_image", cc.LambdaImage
		if cc.LambdaImage == "" {
			k, v = ".image", cc.Image // a lambda-only class's image is its Lambda image
		}
		if _, err := lambda.ParseImage(v); err != nil {
			return errf(key+k, "%v", err)
		}
	}
	if cc.MinReliability < 0 || cc.MinReliability > 1 {
		return errf(key+".min_reliability", "must be between 0 and 1")
	}
	for _, v := range []struct{ name, v, eg string }{{"min_cuda", cc.MinCUDA, "12.4"}, {"min_driver", cc.MinDriver, "550.54"}} {
		if v.v != "" && !provisioner.ValidVersion(v.v) {
			return errf(key+"."+v.name, "%q: want a version like %q (quote it in YAML)", v.v, v.eg)
		}
	}
	if (cc.MinCUDA != "" || cc.MinDriver != "") && cc.CheckGPU != nil && !*cc.CheckGPU {
		return errf(key+".check_gpu", "min_cuda and min_driver need the GPU gate: leave check_gpu on")
	}
	pc := c.ProvisionerClasses()[i]
	for _, d := range []struct {
		name string
		v    int64
	}{{"boot_timeout", int64(pc.BootTimeout)}, {"idle_timeout", int64(pc.IdleTimeout)}, {"max_lifetime", int64(pc.MaxLifetime)}} {
		if d.v <= 0 {
			return errf(key+"."+d.name, "must be positive")
		}
	}
	if pc.BootTimeout >= pc.MaxLifetime {
		return errf(key+".boot_timeout", "%s is not shorter than max_lifetime %s", pc.BootTimeout, pc.MaxLifetime)
	}
	if pc.HedgeAfter > 0 && pc.HedgeAfter >= pc.BootTimeout {
		return errf(key+".hedge_after", "%s is not shorter than boot_timeout %s: the lease would fail before its hedge started", pc.HedgeAfter, pc.BootTimeout)
	}
	return nil
}

// MinWebhookSecretLen is the shortest webhook secret serve accepts: the
// secret is all that stands between anyone who can reach /webhook and a
// rented GPU, and with every accepted secret this long the log redactor
// (which skips values under 8 bytes) always hides it.
const MinWebhookSecretLen = 16

// MinStatusTokenLen is the shortest status page token accepted.
const MinStatusTokenLen = 16

// MinStateKeyLen is the shortest state key accepted: whoever has the key
// logs in as root on every host serve is bootstrapping.
const MinStateKeyLen = 16

// CheckStateKey accepts no key (serve then makes one beside a SQLite
// database, or refuses PostgreSQL) or one of at least MinStateKeyLen bytes.
// The key itself is never part of the error, only its length.
func CheckStateKey(key []byte) error {
	return checkStateKeyAt("state.key_file", "CRABBOX_STATE_KEY", key)
}

func checkStateKeyAt(key, env string, v []byte) error {
	if len(v) == 0 || len(v) >= MinStateKeyLen {
		return nil
	}
	return errf(key, "the state key has %d bytes, fewer than %d: it protects the SSH keys of every host and must not be guessable. "+
		"Make one with: openssl rand -hex 32 (set it by %s, %s_FILE or %s)", len(v), MinStateKeyLen, env, env, key)
}

// checkStatusToken accepts no token (an open page) or one long enough not
// to be guessed, made of what a browser's login prompt and an
// Authorization header both carry: printable ASCII without spaces. The
// token itself is never part of the error.
func checkStatusToken(tok string) error {
	if tok == "" {
		return nil
	}
	const how = "(set by CRABBOX_STATUS_TOKEN, CRABBOX_STATUS_TOKEN_FILE or status.token_file)"
	if len(tok) < MinStatusTokenLen {
		return errf("status.token_file", "the status page token has %d characters, fewer than %d %s; make one with: openssl rand -hex 24",
			len(tok), MinStatusTokenLen, how)
	}
	for _, r := range tok {
		if r <= ' ' || r > '~' {
			return errf("status.token_file", "the status page token may hold only printable ASCII without spaces %s", how)
		}
	}
	return nil
}

func checkDatabaseURL(u string) error {
	switch {
	case strings.HasPrefix(u, "sqlite:"):
		if strings.TrimPrefix(u, "sqlite:") == "" {
			return errf("database_url", "sqlite: needs a path, e.g. sqlite:crabbox-runner.db")
		}
		return nil
	case strings.HasPrefix(u, "postgres://"), strings.HasPrefix(u, "postgresql://"):
		return nil
	}
	return errf("database_url", "must be sqlite:PATH or postgres://…")
}

// CheckBaseURL enforces the contract for API base URLs (package apiurl):
// https, or http on a loopback host (tests); no user info, query or
// fragment.
func CheckBaseURL(key, raw string) error {
	if _, err := apiurl.Validate(raw, "https://host"); err != nil {
		return errf(key, "%v", err)
	}
	return nil
}
