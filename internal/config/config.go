// Package config loads crabbox-runner's configuration: a YAML file, the
// environment variables of the contract (DESIGN.md §5) and flags, with the
// precedence flag > environment > file > default. Secrets come only from the
// environment or from files named in the configuration, never from the YAML
// itself or from flags, so they never land in argv or in a config written to
// disk. Every error names the key at fault.
package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/crabbox/crabbox-runner/provisioner"
)

// Defaults that a user would expect without writing them down.
const (
	DefaultConfigFile  = "crabbox-runner.yaml"
	DefaultDatabaseURL = "sqlite:crabbox-runner.db"
	DefaultListen      = ":8080"
	DefaultGitHubAPI   = "https://api.github.com"
	DefaultVastAPI     = "https://console.vast.ai"
	DefaultLambdaAPI   = "https://cloud.lambda.ai"
	DefaultRunnerURL   = "https://github.com/actions/runner/releases/download/v{version}/actions-runner-linux-{arch}-{version}.tar.gz"
	DefaultBootTimeout = 10 * time.Minute
	DefaultIdleTimeout = 15 * time.Minute
	DefaultMaxLifetime = 6 * time.Hour
)

// Config is the whole configuration, after every source is applied.
type Config struct {
	Deployment string `yaml:"deployment"`
	Listen     string `yaml:"listen"`
	// MetricsListen, when set, is a second address serving only GET
	// /metrics, without the status token (the operator's choice: a
	// loopback port, or an address only the scraper reaches).
	MetricsListen string            `yaml:"metrics_listen"`
	DatabaseURL   string            `yaml:"database_url"`
	Log           LogConfig         `yaml:"log"`
	GitHub        GitHubConfig      `yaml:"github"`
	Webhook       WebhookConfig     `yaml:"webhook"`
	Status        StatusConfig      `yaml:"status"`
	State         StateConfig       `yaml:"state"`
	Runner        RunnerConfig      `yaml:"runner"`
	Providers     ProvidersConfig   `yaml:"providers"`
	Defaults      ClassDefaults     `yaml:"defaults"`
	Reconcile     ReconcileConfig   `yaml:"reconcile"`
	Limits        LimitsConfig      `yaml:"limits"`
	Work          WorkConfig        `yaml:"work"`
	Retention     RetentionConfig   `yaml:"retention"`
	BadMachines   BadMachinesConfig `yaml:"bad_machines"`
	Classes       []ClassConfig     `yaml:"classes"`

	// Secrets, from the environment or files only.
	WebhookSecret []byte `yaml:"-"`
	GitHubToken   string `yaml:"-"`
	GitHubAppKey  []byte `yaml:"-"`
	VastAPIKey    string `yaml:"-"`
	LambdaAPIKey  string `yaml:"-"`
	// StatusToken guards serve's status page and /metrics; without it
	// they are open on a loopback-only listen address, closed otherwise.
	StatusToken string `yaml:"-"`
	// StateKey is the secret every lease's SSH keys are derived from
	// (CRABBOX_STATE_KEY(_FILE) or state.key_file). Empty: serve makes or
	// reads one beside a SQLite database (cmd/crabbox-runner/statekey.go).
	StateKey []byte `yaml:"-"`
	// StateKeyPrevious is the state key before a rotation, if given.
	StateKeyPrevious []byte `yaml:"-"`

	// Source is the config file that was read, if any.
	Source string `yaml:"-"`
}

// LogConfig chooses log level and format.
type LogConfig struct {
	Level  string `yaml:"level"`  // debug, info, warn, error
	Format string `yaml:"format"` // json or text
}

// GitHubConfig says how to reach GitHub.
type GitHubConfig struct {
	APIURL            string `yaml:"api_url"`
	AppID             int64  `yaml:"app_id"`
	AppPrivateKeyFile string `yaml:"app_private_key_file"`
	RunnerGroupID     int64  `yaml:"runner_group_id"`
	// Scopes are orgs ("acme") and repositories ("acme/ml") where gc and
	// the reconcile loop look for runners and queued jobs, besides those of
	// known leases and, with an App, its installations.
	Scopes []string `yaml:"scopes"`
	// Mode is "webhook" (the default: webhooks drive, the reconcile is a
	// backup) or "poll" (no webhook endpoint: the reconcile scan finds
	// queued jobs and learns when they start and end).
	Mode string `yaml:"mode"`
	// PollInterval is how often poll mode scans (default 1m); it replaces
	// reconcile.interval there.
	PollInterval time.Duration `yaml:"poll_interval"`
	// BackgroundRequestsPerMinute caps the reconcile's GitHub requests in
	// any minute, 304s included (default 60; negative: no cap).
	BackgroundRequestsPerMinute int `yaml:"background_requests_per_minute"`
}

// GitHub modes.
const (
	ModeWebhook = "webhook"
	ModePoll    = "poll"
)

// DefaultPollInterval is poll mode's scan interval: an org of 20
// repositories then costs about 41 requests a minute, under the background
// cap of 60, nearly all answered 304 (docs/configuration.md).
const DefaultPollInterval = time.Minute

// Polling reports whether serve runs in poll mode.
func (g GitHubConfig) Polling() bool { return g.Mode == ModePoll }

// ScopeList parses github.scopes.
func (g GitHubConfig) ScopeList() []provisioner.Scope {
	var out []provisioner.Scope
	for _, s := range g.Scopes {
		if strings.Contains(s, "/") {
			out = append(out, provisioner.Scope{Repo: s})
		} else {
			out = append(out, provisioner.Scope{Org: s})
		}
	}
	return out
}

// WebhookConfig configures POST /webhook.
type WebhookConfig struct {
	SecretFile string `yaml:"secret_file"`
	// MaxBodyBytes caps a delivery's body: 1..25 MB (webhook.go).
	MaxBodyBytes int64 `yaml:"max_body_bytes"`
	// MaxBufferedBytes is the memory for bodies being read at once, before
	// their signatures are known (webhook.go).
	MaxBufferedBytes int64 `yaml:"max_buffered_bytes"`
}

// StatusConfig configures the status page at GET / (package status).
type StatusConfig struct {
	// TokenFile holds the token the page asks for (Bearer, or HTTP Basic
	// with the token as password); no token leaves the page open.
	TokenFile string `yaml:"token_file"`
}

// StateConfig names the state key's file. The key protects the SSH keys of
// every lease and nothing else: it is never the webhook secret nor derived
// from anything an outsider can learn.
type StateConfig struct {
	KeyFile string `yaml:"key_file"`
	// PreviousKeyFile holds the key before a rotation: its lease keys are
	// offered too when logging in to a host, so boots under way survive.
	PreviousKeyFile string `yaml:"previous_key_file"`
}

// RunnerConfig is the actions/runner release installed on each host.
type RunnerConfig struct {
	Version string `yaml:"version"`
	URL     string `yaml:"url"`
	// SHA256 are the tarballs' checksums by architecture (runner.go);
	// an architecture without one takes GitHub's.
	SHA256 Checksums `yaml:"sha256"`
}

// ProvidersConfig holds per-provider settings; a provider is enabled when a
// class names it.
type ProvidersConfig struct {
	Vast   APIProviderConfig   `yaml:"vast"`
	Lambda APIProviderConfig   `yaml:"lambda"`
	Local  LocalProviderConfig `yaml:"local"`
}

// APIProviderConfig is a cloud API's settings; its key comes from the env.
type APIProviderConfig struct {
	APIURL string `yaml:"api_url"`
	// SSHUser overrides the user crabbox-runner logs in as (Vast: root,
	// Lambda: ubuntu).
	SSHUser string `yaml:"ssh_user"`
	// MinRequestInterval spaces API calls (all leases share one limiter);
	// zero means the provider's documented default.
	MinRequestInterval time.Duration `yaml:"min_request_interval"`
	// LaunchInterval spaces launches (Lambda: one per 12 s); zero means
	// the provider's documented default.
	LaunchInterval time.Duration `yaml:"launch_interval"`
	// AllowPrivateEndpoints lets crabbox-runner connect to hosts whose SSH
	// endpoint is loopback, private or otherwise not public (a private
	// cloud, tests). Off: such a host is refused and destroyed.
	AllowPrivateEndpoints bool `yaml:"allow_private_endpoints"`
}

// LocalProviderConfig configures the loopback sshd provider (tests, demo).
type LocalProviderConfig struct {
	Dir string `yaml:"dir"`
}

// WorkConfig tunes the durable work queue.
type WorkConfig struct {
	// JobTimeout bounds one run of a worker (default 15m).
	JobTimeout time.Duration `yaml:"job_timeout"`
	// RescueAfter is how long work claimed by a process that died stays
	// claimed before another replica takes it over (default job_timeout
	// + 5m). SQLite takes over a dead process's work at once on restart.
	RescueAfter time.Duration `yaml:"rescue_after"`
}

// LimitsConfig caps leases and spend for the whole deployment.
type LimitsConfig struct {
	MaxLeases       int     `yaml:"max_leases"`
	MaxSpendPerHour float64 `yaml:"max_spend_per_hour"`
	// GitHubJITPerMinute paces runner registrations (GitHub allows about
	// 180 a minute per App); default 150, negative: no pacing.
	GitHubJITPerMinute int `yaml:"github_jit_per_minute"`
	// GitHubBudgetReservePercent of each GitHub credential's rate limit is
	// kept for the calls that serve jobs (registrations, runner checks,
	// removals): below it, background calls (reconcile listings, the
	// deliveries sweep, job-status refreshes, gc) wait for the reset.
	// Default 10, negative: no reserve, at most 90.
	GitHubBudgetReservePercent int `yaml:"github_budget_reserve_percent"`
}

// ReconcileConfig sets how often serve's leader re-checks everything.
type ReconcileConfig struct {
	// Interval of the lease pass (deadlines, lost work, missed webhooks,
	// failed deliveries, balance); default 1m, "-1s" turns it off.
	Interval time.Duration `yaml:"interval"`
	// GCInterval of the gc pass; default 5m, "-1s" turns it off.
	GCInterval time.Duration `yaml:"gc_interval"`
	// UnusedRunnerBackoff is how long a job whose first runner came
	// online and never got it waits for its second and last lease
	// (default 2m).
	UnusedRunnerBackoff time.Duration `yaml:"unused_runner_backoff"`
}

// ClassDefaults apply to every class that leaves the field unset.
type ClassDefaults struct {
	BootTimeout time.Duration `yaml:"boot_timeout"`
	IdleTimeout time.Duration `yaml:"idle_timeout"`
	MaxLifetime time.Duration `yaml:"max_lifetime"`
}

// ClassConfig is one class as written in YAML.
type ClassConfig struct {
	Name            string    `yaml:"name"`
	Labels          []string  `yaml:"labels"`
	GPU             GPUConfig `yaml:"gpu"`
	Providers       []string  `yaml:"providers"`
	MaxPricePerHour float64   `yaml:"max_price_per_hour"`
	// Interruptible, when set, lets the class run on interruptible (bid)
	// Vast hosts (docs/providers/vast.md#interruptible-hosts).
	Interruptible  *InterruptibleConfig `yaml:"interruptible"`
	DiskGB         int                  `yaml:"disk_gb"`
	Image          string               `yaml:"image"`        // Vast's container image
	LambdaImage    string               `yaml:"lambda_image"` // Lambda's machine image: family, family:<name> or id:<uuid>
	Region         string               `yaml:"region"`
	MinReliability float64              `yaml:"min_reliability"`
	VerifiedOnly   *bool                `yaml:"verified_only"`
	DatacenterOnly bool                 `yaml:"datacenter_only"`
	DirectSSH      *bool                `yaml:"direct_ssh"`
	CheckGPU       *bool                `yaml:"check_gpu"`
	// MinCUDA and MinDriver ("12.4", "550.54") are the GPU gate's lowest
	// CUDA version and driver version; empty: any.
	MinCUDA     string        `yaml:"min_cuda"`
	MinDriver   string        `yaml:"min_driver"`
	BootTimeout time.Duration `yaml:"boot_timeout"`
	IdleTimeout time.Duration `yaml:"idle_timeout"`
	MaxLifetime time.Duration `yaml:"max_lifetime"`
	MaxLeases   int           `yaml:"max_leases"`
	// HedgeAfter starts a second host for a lease whose runner is not
	// online this long after its create call (0: never).
	HedgeAfter time.Duration `yaml:"hedge_after"`
	// Lambda only: firewall ruleset ids and file system names to attach.
	FirewallRulesets []string `yaml:"firewall_rulesets"`
	FileSystems      []string `yaml:"file_systems"`

	// Repositories, when set, are the only repositories whose jobs may
	// spend on this class: owner/name or owner/*, ignoring case.
	Repositories []string `yaml:"repositories"`
	// PublicRepositories lets jobs of public repositories spend on this
	// class (default false: anyone can open a pull request on one).
	PublicRepositories bool `yaml:"public_repositories"`
	// RerunLostJobs re-runs, once, a job that failed because its host was
	// lost under it (webhook mode; needs the Actions write permission).
	RerunLostJobs bool `yaml:"rerun_lost_jobs"`
	// MinIdle keeps that many hosts of the class booted with an idle
	// runner ahead of demand (webhook mode; the Action ignores it).
	MinIdle int `yaml:"min_idle"`
}

// InterruptibleConfig is a class's bid rule for interruptible hosts.
type InterruptibleConfig struct {
	// Bid is the multiple of an offer's current minimum bid (Vast's
	// min_bid) to bid, from 1 to 10; the bid plus storage must still be
	// within max_price_per_hour.
	Bid float64 `yaml:"bid"`
}

// GPUConfig is a class's GPU requirement.
type GPUConfig struct {
	Name        string  `yaml:"name"`
	Count       int     `yaml:"count"`
	MinMemoryGB float64 `yaml:"min_memory_gb"`
}

// Getenv reads an environment variable; os.Getenv in production.
type Getenv func(string) string

// Overrides are the values given as flags; empty means not given.
type Overrides struct {
	ConfigFile  string
	Listen      string
	DatabaseURL string
	Deployment  string
	LogLevel    string
	LogFormat   string
}

// Load reads the config file (from the flag, CRABBOX_CONFIG, or
// crabbox-runner.yaml when present), then applies the environment and the
// flags, fills in defaults, and reads secrets. It does not validate: call
// Validate for the checks that depend on what the command needs.
func Load(flags Overrides, getenv Getenv) (*Config, error) {
	if getenv == nil {
		getenv = os.Getenv
	}
	c := &Config{}
	path := first(flags.ConfigFile, getenv("CRABBOX_CONFIG"))
	explicit := path != ""
	if path == "" {
		path = DefaultConfigFile
	}
	data, err := os.ReadFile(path)
	switch {
	case err == nil:
		if err := Parse(data, c); err != nil {
			return nil, fmt.Errorf("config %s: %w", path, err)
		}
		c.Source = path
	case errors.Is(err, os.ErrNotExist) && !explicit:
		// No file is fine: everything can come from the environment.
	default:
		return nil, fmt.Errorf("config: reading %s: %w", path, err)
	}

	// Environment over file.
	setStr(&c.Listen, getenv("CRABBOX_LISTEN"))
	setStr(&c.MetricsListen, getenv("CRABBOX_METRICS_LISTEN"))
	setStr(&c.DatabaseURL, getenv("CRABBOX_DATABASE_URL"))
	setStr(&c.Deployment, getenv("CRABBOX_DEPLOYMENT"))
	setStr(&c.Log.Level, getenv("CRABBOX_LOG_LEVEL"))
	setStr(&c.Log.Format, getenv("CRABBOX_LOG_FORMAT"))
	setStr(&c.GitHub.APIURL, getenv("CRABBOX_GITHUB_API_URL"))
	setStr(&c.Providers.Vast.APIURL, getenv("CRABBOX_VAST_API_URL"))
	setStr(&c.Providers.Lambda.APIURL, getenv("CRABBOX_LAMBDA_API_URL"))
	if v := getenv("CRABBOX_GITHUB_APP_ID"); v != "" {
		var id int64
		if _, err := fmt.Sscan(v, &id); err != nil || id <= 0 {
			return nil, fmt.Errorf("config: CRABBOX_GITHUB_APP_ID: %q is not a positive integer", v)
		}
		c.GitHub.AppID = id
	}

	// Flags over environment.
	setStr(&c.Listen, flags.Listen)
	setStr(&c.DatabaseURL, flags.DatabaseURL)
	setStr(&c.Deployment, flags.Deployment)
	setStr(&c.Log.Level, flags.LogLevel)
	setStr(&c.Log.Format, flags.LogFormat)

	c.ApplyDefaults()
	if err := c.readSecrets(getenv); err != nil {
		return nil, err
	}
	return c, nil
}

// Parse decodes YAML strictly: an unknown key is an error, so a typo does
// not silently leave a setting at its default.
func Parse(data []byte, c *Config) error {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(c); err != nil {
		if errors.Is(err, io.EOF) {
			return nil // empty file
		}
		return err
	}
	return nil
}

// ApplyDefaults fills every unset setting with its default.
func (c *Config) ApplyDefaults() {
	setDefault(&c.Listen, DefaultListen)
	setDefault(&c.DatabaseURL, DefaultDatabaseURL)
	setDefault(&c.Log.Level, "info")
	setDefault(&c.Log.Format, "json")
	setDefault(&c.GitHub.APIURL, DefaultGitHubAPI)
	setDefault(&c.Providers.Vast.APIURL, DefaultVastAPI)
	setDefault(&c.Providers.Lambda.APIURL, DefaultLambdaAPI)
	setDefault(&c.Runner.URL, DefaultRunnerURL)
	if c.GitHub.RunnerGroupID == 0 {
		c.GitHub.RunnerGroupID = 1
	}
	setDefault(&c.GitHub.Mode, ModeWebhook)
	if c.GitHub.PollInterval == 0 {
		c.GitHub.PollInterval = DefaultPollInterval
	}
	if c.Defaults.BootTimeout == 0 {
		c.Defaults.BootTimeout = DefaultBootTimeout
	}
	if c.Defaults.IdleTimeout == 0 {
		c.Defaults.IdleTimeout = DefaultIdleTimeout
	}
	if c.Defaults.MaxLifetime == 0 {
		c.Defaults.MaxLifetime = DefaultMaxLifetime
	}
	if c.Retention.Deliveries == 0 {
		c.Retention.Deliveries = DefaultRetention
	}
	if c.Retention.History == 0 {
		c.Retention.History = DefaultHistory
	}
	if c.BadMachines.AvoidFor == 0 {
		c.BadMachines.AvoidFor = DefaultBadMachineAvoidFor
	}
	if c.BadMachines.AvoidPoolFor == 0 {
		c.BadMachines.AvoidPoolFor = DefaultBadPoolAvoidFor
	}
}

// readSecrets takes each secret from its env var, or from the file named by
// <VAR>_FILE or by the config file. Surrounding whitespace is trimmed: a
// trailing newline in a secret file is almost never part of the secret.
func (c *Config) readSecrets(getenv Getenv) error {
	secret, err := secretFrom(getenv, "CRABBOX_WEBHOOK_SECRET", c.Webhook.SecretFile)
	if err != nil {
		return err
	}
	c.WebhookSecret = []byte(secret)
	key, err := secretFrom(getenv, "CRABBOX_GITHUB_APP_PRIVATE_KEY", c.GitHub.AppPrivateKeyFile)
	if err != nil {
		return err
	}
	if key != "" {
		c.GitHubAppKey = []byte(key + "\n")
	}
	if c.GitHubToken, err = secretFrom(getenv, "CRABBOX_GITHUB_TOKEN", ""); err != nil {
		return err
	}
	if c.VastAPIKey, err = secretFrom(getenv, "VAST_API_KEY", ""); err != nil {
		return err
	}
	if c.LambdaAPIKey, err = secretFrom(getenv, "LAMBDA_API_KEY", ""); err != nil {
		return err
	}
	if c.StatusToken, err = secretFrom(getenv, "CRABBOX_STATUS_TOKEN", c.Status.TokenFile); err != nil {
		return err
	}
	stateKey, err := secretFrom(getenv, "CRABBOX_STATE_KEY", c.State.KeyFile)
	if err != nil {
		return err
	}
	c.StateKey = []byte(stateKey)
	previous, err := secretFrom(getenv, "CRABBOX_STATE_KEY_PREVIOUS", c.State.PreviousKeyFile)
	if err != nil {
		return err
	}
	c.StateKeyPrevious = []byte(previous)
	return nil
}

func secretFrom(getenv Getenv, name, fileFromConfig string) (string, error) {
	if v := getenv(name); v != "" {
		return strings.TrimSpace(v), nil
	}
	file, key := getenv(name+"_FILE"), name+"_FILE"
	if file == "" {
		file, key = fileFromConfig, "file for "+name
	}
	if file == "" {
		return "", nil
	}
	data, err := os.ReadFile(file)
	if err != nil {
		// The path is not secret; the content would be, and is not read.
		return "", fmt.Errorf("config: %s: %w", key, err)
	}
	v := strings.TrimSpace(string(data))
	if v == "" {
		return "", fmt.Errorf("config: %s: %s is empty", key, file)
	}
	return v, nil
}

func first(vals ...string) string {
	for _, v := range vals {
		if v != "" {
			return v
		}
	}
	return ""
}

func setStr(dst *string, v string) {
	if v != "" {
		*dst = v
	}
}

func setDefault(dst *string, v string) {
	if *dst == "" {
		*dst = v
	}
}

// ProvisionerClasses converts the classes, with defaults applied.
func (c *Config) ProvisionerClasses() []provisioner.Class {
	out := make([]provisioner.Class, 0, len(c.Classes))
	for _, cc := range c.Classes {
		out = append(out, provisioner.Class{
			Name:             cc.Name,
			Labels:           cc.Labels,
			GPU:              provisioner.GPURequirement{Name: cc.GPU.Name, Count: max(cc.GPU.Count, 1), MinMemoryGB: cc.GPU.MinMemoryGB},
			Providers:        cc.Providers,
			MaxPricePerHour:  cc.MaxPricePerHour,
			InterruptibleBid: cc.interruptibleBid(),
			DiskGB:           cc.DiskGB,
			Image:            cc.Image,
			LambdaImage:      cc.lambdaImage(),
			Region:           cc.Region,
			MinReliability:   cc.MinReliability,
			VerifiedOnly:     boolOr(cc.VerifiedOnly, true),
			DatacenterOnly:   cc.DatacenterOnly,
			DirectSSH:        boolOr(cc.DirectSSH, true),
			CheckGPU:         boolOr(cc.CheckGPU, true),
			MinCUDA:          cc.MinCUDA,
			MinDriver:        cc.MinDriver,
			BootTimeout:      durOr(cc.BootTimeout, c.Defaults.BootTimeout),
			IdleTimeout:      durOr(cc.IdleTimeout, c.Defaults.IdleTimeout),
			MaxLifetime:      durOr(cc.MaxLifetime, c.Defaults.MaxLifetime),
			HedgeAfter:       cc.HedgeAfter,

			MaxLeases:        cc.MaxLeases,
			FirewallRulesets: cc.FirewallRulesets,
			FileSystems:      cc.FileSystems,

			Repositories:       cc.Repositories,
			PublicRepositories: cc.PublicRepositories,
			RerunLostJobs:      cc.RerunLostJobs,
			MinIdle:            cc.MinIdle,
		})
	}
	return out
}

func boolOr(p *bool, def bool) bool {
	if p == nil {
		return def
	}
	return *p
}

func durOr(d, def time.Duration) time.Duration {
	if d == 0 {
		return def
	}
	return d
}

func (cc *ClassConfig) interruptibleBid() float64 {
	if cc.Interruptible == nil {
		return 0
	}
	return cc.Interruptible.Bid
}

// lambdaImage is the class's Lambda image: lambda_image, or, for a class
// whose only provider is lambda and that sets image alone, image (the
// meaning image had before lambda_image existed; see Deprecations). A
// class with vast among its providers never sends image to Lambda.
func (cc *ClassConfig) lambdaImage() string {
	if cc.LambdaImage != "" || !cc.imageIsLambdas() {
		return cc.LambdaImage
	}
	return cc.Image
}

func (cc *ClassConfig) imageIsLambdas() bool {
	return cc.LambdaImage == "" && strings.TrimSpace(cc.Image) != "" && len(cc.Providers) > 0 &&
		!slices.ContainsFunc(cc.Providers, func(p string) bool { return p != "lambda" })
}

// Deprecations are settings that still work but should be written another
// way, one sentence each, for the log at start-up.
func (c *Config) Deprecations() []string {
	var out []string
	for i, cc := range c.Classes {
		if cc.imageIsLambdas() {
			out = append(out, fmt.Sprintf("classes[%d] (%s): image %q is read as the Lambda image because lambda is the class's only provider; "+
				"write it as lambda_image (image is the Vast container image)", i, cc.Name, cc.Image))
		}
	}
	return out
}
