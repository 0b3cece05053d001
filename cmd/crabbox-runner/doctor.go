package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/crabbox/crabbox-runner/internal/config"
	"github.com/crabbox/crabbox-runner/provisioner"
	"github.com/crabbox/crabbox-runner/store"
	"github.com/crabbox/crabbox-runner/store/schema"
)

// doctor checks, before a deployment goes live, everything serve needs:
// the configuration, the database, the webhook secret, GitHub with the
// given credentials (for an App: its key, its installations, what each was
// granted and the workflow_job event; the runner group, doctor_groups.go),
// and every provider with its key
// (read-only calls: a list of instances and offers; nothing is rented).
//
// Each check prints one line, OK, WARN or FAIL, and a failed or warned
// check a second line, "fix:", saying what to do. Any FAIL makes the exit
// status 1; a WARN does not (a webhook secret shorter than 16 bytes works,
// but is weak). No secret is ever printed.
func newDoctorCmd(g *globalFlags, getenv config.Getenv) *cobra.Command {
	return &cobra.Command{
		Use:   "doctor",
		Short: "Check the configuration, the database, GitHub and the providers before going live",
		Long: `doctor checks what serve needs and prints one line per check: OK, WARN or FAIL,
with a "fix:" line under each problem saying what to do. It exits 1 if any check fails.

  configuration    the config file and environment are valid
  database         it opens and answers, and its schema is current (doctor applies
                   pending migrations as serve does at start; a SQLite file that does
                   not exist yet is left for serve to create)
  webhook secret   it is set (FAIL) and at least 16 bytes and not a placeholder (WARN)
  state key        the key of the lease SSH keys: given (at least 16 bytes, its file
                   0600), or made by serve beside a SQLite database (0600), or missing
                   with PostgreSQL (FAIL: serve refuses to start); never printed
  GitHub App       the private key parses, GitHub accepts its JWT (GET /app), the App
                   asks for the permissions crabbox-runner needs and subscribes to
                   workflow_job, it is installed, and each installation was granted
                   organization_self_hosted_runners: write (organizations) or
                   administration: write (users' repositories) and actions: read
  GitHub token     GitHub accepts it (GET /rate_limit); a classic token's scopes
  runners          the runners of every org of the App and of github.scopes can be listed
  runner group     github.runner_group_id exists in each org, with a visibility known,
                   open to public repositories if a class takes them, not empty if
                   "selected"; a workflow restriction warns (serve cannot check it)
  providers        each provider's key works (a list of instances) and each class's
                   offers there (nothing is rented)`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx, cancel := context.WithTimeout(cmd.Context(), 3*time.Minute)
			defer cancel()
			d := &doctor{w: cmd.OutOrStdout(), start: time.Now()}
			cfg := d.checkConfig(g, getenv)
			if cfg == nil {
				return d.result()
			}
			d.secrets = append(d.secrets, string(cfg.WebhookSecret), cfg.GitHubToken, string(cfg.GitHubAppKey), cfg.VastAPIKey, cfg.LambdaAPIKey, string(cfg.StateKey), string(cfg.StateKeyPrevious))
			if u, err := url.Parse(cfg.DatabaseURL); err == nil && u.User != nil {
				if pw, ok := u.User.Password(); ok {
					d.secrets = append(d.secrets, pw)
				}
			}
			log := newLogger(io.Discard, "error", "text")
			d.checkDatabase(ctx, cfg)
			d.checkWebhookSecret(cfg)
			d.checkAccess(cfg)
			d.checkStateKey(cfg, getenv)
			d.checkGitHub(ctx, cfg)
			d.checkProviders(ctx, cfg, log)
			return d.result()
		},
	}
}

// doctor prints the checks and counts the failures and warnings.
type doctor struct {
	w       io.Writer
	start   time.Time
	secrets []string // never printed, whatever an error says
	failed  int
	warned  int
}

func (d *doctor) line(status, what, text string) {
	fmt.Fprintf(d.w, "%-5s %-44s %s\n", status, what, oneLine(d.redact(text)))
}

// oneLine joins the lines of a multi-line error, so every check is one line.
func oneLine(s string) string {
	parts := strings.Split(strings.TrimSpace(s), "\n")
	for i, p := range parts {
		parts[i] = strings.TrimSpace(p)
	}
	return strings.Join(parts, " / ")
}

func (d *doctor) ok(what, detail string) { d.line("OK", what, detail) }

func (d *doctor) fail(what, problem, fix string) {
	d.failed++
	d.line("FAIL", what, problem)
	fmt.Fprintf(d.w, "      fix: %s\n", oneLine(d.redact(fix)))
}

func (d *doctor) warn(what, problem, fix string) {
	d.warned++
	d.line("WARN", what, problem)
	fmt.Fprintf(d.w, "      fix: %s\n", oneLine(d.redact(fix)))
}

// redact removes any secret from text: errors of this program never hold
// one, but a server may echo what it was sent.
func (d *doctor) redact(text string) string {
	for _, s := range d.secrets {
		if len(s) >= 8 {
			text = strings.ReplaceAll(text, s, "[redacted]")
		}
	}
	return text
}

func (d *doctor) result() error {
	if d.failed > 0 {
		return exitError{code: 1, err: fmt.Errorf("%s failed, %s", plural(d.failed, "check", "checks"), plural(d.warned, "warning", "warnings"))}
	}
	if d.warned > 0 {
		fmt.Fprintf(d.w, "all checks passed, %s\n", plural(d.warned, "warning", "warnings"))
		return nil
	}
	fmt.Fprintln(d.w, "all checks passed")
	return nil
}

// checkConfig loads and validates the configuration; nil when it is
// unusable, and then nothing else can be checked.
func (d *doctor) checkConfig(g *globalFlags, getenv config.Getenv) *config.Config {
	cfg, err := config.Load(g.Overrides, getenv)
	if err != nil {
		d.fail("configuration", err.Error(), configFix(err, "")+"; the other checks need a configuration")
		return nil
	}
	if err := cfg.Validate(config.Needs{Classes: true, Runner: true, Deployment: true}); err != nil {
		d.fail("configuration", err.Error(), configFix(err, cfg.Source)+"; the other checks need a valid configuration")
		return nil
	}
	var names []string
	for _, c := range cfg.Classes {
		names = append(names, c.Name)
	}
	d.ok("configuration", fmt.Sprintf("%s, deployment %s, %s %s", cmpOr(cfg.Source, "environment only"), cfg.Deployment,
		plural(len(cfg.Classes), "class", "classes"), strings.Join(names, ", ")))
	return cfg
}

// configFix says what to do about a configuration error.
func configFix(err error, source string) string {
	var ce *config.Error
	if !errors.As(err, &ce) {
		msg := err.Error()
		switch {
		case strings.Contains(msg, "reading "):
			return "check that the file named by --config or CRABBOX_CONFIG exists and is readable by this user"
		case strings.Contains(msg, "CRABBOX_GITHUB_APP_ID"):
			return "set CRABBOX_GITHUB_APP_ID to the App's numeric id (App settings → General → App ID)"
		case strings.Contains(msg, "_FILE"):
			return "point the *_FILE variable (or the config's *_file key) at a file that exists and this user can read"
		}
		return "correct the configuration file at the place named above (unknown keys are errors)"
	}
	in := cmpOr(source, "the config file")
	switch {
	case strings.Contains(ce.Msg, "VAST_API_KEY"):
		return "set VAST_API_KEY to an API key from the Vast console (Account → Keys), or take vast out of the class's providers"
	case strings.Contains(ce.Msg, "LAMBDA_API_KEY"):
		return "set LAMBDA_API_KEY to an API key from the Lambda Cloud dashboard (API keys), or take lambda out of the class's providers"
	case ce.Key == "deployment":
		return "set deployment: NAME (lower-case letters, digits and '-') in " + in + ", or CRABBOX_DEPLOYMENT"
	case strings.HasPrefix(ce.Key, "runner."):
		return "set runner.version and runner.sha256 in " + in + " to an actions/runner release and the sha256 of its linux-x64 tarball, printed in the release notes"
	case ce.Key == "classes":
		return "add at least one class under classes: in " + in + " (name, labels, gpu, providers)"
	case ce.Key == "state.key_file":
		return "make a state key with `openssl rand -hex 32` into a file only serve's user can read, and name it by CRABBOX_STATE_KEY_FILE or state.key_file"
	case ce.Key == "database_url":
		return "set database_url in " + in + " (or CRABBOX_DATABASE_URL) to sqlite:PATH or postgres://USER@HOST/DB"
	}
	return "correct " + ce.Key + " in " + in + " (or its environment variable)"
}

// redactedDatabaseURL is the database URL without its password.
func redactedDatabaseURL(raw string) string {
	if strings.HasPrefix(raw, "sqlite:") {
		return raw
	}
	u, err := url.Parse(raw)
	if err != nil {
		return "(a database URL that does not parse)"
	}
	return u.Redacted()
}

// checkDatabase opens the database, pings it and checks its schema.
func (d *doctor) checkDatabase(ctx context.Context, cfg *config.Config) {
	shown := redactedDatabaseURL(cfg.DatabaseURL)
	migrations, err := schema.Migrations(schema.SQLite)
	if err != nil {
		d.fail("database", "reading this build's migrations: "+err.Error(), "this build of crabbox-runner is broken; rebuild it")
		return
	}
	if path, ok := strings.CutPrefix(cfg.DatabaseURL, "sqlite:"); ok && !databaseExists(cfg.DatabaseURL) {
		dir := filepath.Dir(path)
		if fi, err := os.Stat(dir); err != nil || !fi.IsDir() {
			d.fail("database", fmt.Sprintf("%s does not exist and neither does its directory %s", shown, dir),
				"create the directory on persistent disk (mkdir -p "+dir+"), or point database_url / CRABBOX_DATABASE_URL elsewhere")
			return
		}
		f, err := os.CreateTemp(dir, ".crabbox-doctor-*")
		if err != nil {
			d.fail("database", fmt.Sprintf("%s does not exist and this user cannot create files in %s", shown, dir),
				"make "+dir+" writable by the user serve runs as, or point database_url / CRABBOX_DATABASE_URL elsewhere")
			return
		}
		f.Close()
		os.Remove(f.Name())
		d.ok("database", fmt.Sprintf("%s does not exist yet; serve creates it and applies %s", shown, plural(len(migrations), "migration", "migrations")))
		return
	}

	st, err := store.Open(ctx, cfg.DatabaseURL)
	if err != nil {
		fix := "check that the file is a crabbox-runner SQLite database that this user can read and write, on a local disk"
		if !strings.HasPrefix(cfg.DatabaseURL, "sqlite:") {
			fix = "check the URL's host, port, user and database, that PostgreSQL accepts connections from here, and the password (in the URL or PGPASSWORD)"
		}
		d.fail("database", fmt.Sprintf("%s: %v", shown, err), fix)
		return
	}
	defer st.Close()
	if err := st.Ping(ctx); err != nil {
		d.fail("database", fmt.Sprintf("%s opens but does not answer: %v", shown, err), "check the database server is up and not overloaded, then run doctor again")
		return
	}
	d.ok("database", shown+" opens and answers")

	applied, dialect, err := appliedMigrations(ctx, st)
	if err != nil {
		d.fail("database schema", err.Error(), "check the database user may read crabbox_migration; serve applies the schema at start")
		return
	}
	if dialect != schema.SQLite.Name {
		d2 := schema.Postgres
		if migrations, err = schema.Migrations(d2); err != nil {
			d.fail("database schema", err.Error(), "this build of crabbox-runner is broken; rebuild it")
			return
		}
	}
	known := map[int]bool{}
	var missing, now []string
	for _, m := range migrations {
		known[m.Version] = true
		at, ok := applied[m.Version]
		switch {
		case !ok:
			missing = append(missing, m.Name)
		case !at.Before(d.start.Add(-time.Second)):
			now = append(now, m.Name)
		}
	}
	var newer []string
	for v := range applied {
		if !known[v] {
			newer = append(newer, fmt.Sprint(v))
		}
	}
	sort.Strings(newer)
	switch {
	case len(newer) > 0:
		d.fail("database schema", "the database has migrations this crabbox-runner does not know ("+strings.Join(newer, ", ")+"): a newer version wrote it",
			"run the crabbox-runner version that serve runs (or newer) against this database")
	case len(missing) > 0:
		d.fail("database schema", "migrations not applied: "+strings.Join(missing, ", "), "run serve once (it applies them at start) and check its log for the migration error")
	case len(now) > 0:
		d.ok("database schema", fmt.Sprintf("current: %s, applied now: %s", plural(len(migrations), "migration", "migrations"), strings.Join(now, ", ")))
	default:
		d.ok("database schema", "current: "+plural(len(migrations), "migration", "migrations"))
	}
}

// appliedMigrations reads crabbox_migration through the store (both
// stores share the reader): version → when applied, and the dialect.
func appliedMigrations(ctx context.Context, st provisioner.Store) (map[int]time.Time, string, error) {
	r, ok := st.(interface {
		AppliedMigrations(ctx context.Context) (map[int]time.Time, schema.Dialect, error)
	})
	if !ok {
		return nil, "", fmt.Errorf("store %T: cannot read its migrations", st)
	}
	applied, d, err := r.AppliedMigrations(ctx)
	return applied, d.Name, err
}

// weakSecrets are placeholders that find their way into real deployments.
var weakSecrets = []string{"changeme", "change-me", "secret", "password", "webhook-secret", "webhooksecret", "test", "example", "github"}

// checkWebhookSecret: missing or short fails (serve refuses to start); a
// placeholder or few distinct characters warns (it works, but can be guessed).
func (d *doctor) checkWebhookSecret(cfg *config.Config) {
	const minLen = config.MinWebhookSecretLen
	s := cfg.WebhookSecret
	const howto = "a random secret, e.g. from `openssl rand -hex 32`"
	distinct := map[byte]bool{}
	for _, b := range s {
		distinct[b] = true
	}
	switch {
	case len(s) == 0:
		d.fail("webhook secret", "not set: serve refuses to start without it",
			"set CRABBOX_WEBHOOK_SECRET_FILE (or webhook.secret_file) to a file holding "+howto+", and enter the same secret in the GitHub App's webhook settings")
	case slices.Contains(weakSecrets, strings.ToLower(string(s))):
		d.warn("webhook secret", "a well-known placeholder: anyone can sign webhooks",
			"replace it with "+howto+", here and in the GitHub App's webhook settings")
	case len(s) < minLen:
		d.fail("webhook secret", fmt.Sprintf("only %d bytes: serve refuses to start with fewer than %d", len(s), minLen),
			fmt.Sprintf("use at least %d bytes, %s, here and in the GitHub App's webhook settings", minLen, howto))
	case len(distinct) < 4:
		d.warn("webhook secret", fmt.Sprintf("%d bytes but only %s: easy to guess", len(s), plural(len(distinct), "different character", "different characters")),
			"replace it with "+howto+", here and in the GitHub App's webhook settings")
	default:
		d.ok("webhook secret", fmt.Sprintf("set, %d bytes", len(s)))
	}
}

func plural(n int, one, many string) string {
	if n == 1 {
		return "1 " + one
	}
	return fmt.Sprintf("%d %s", n, many)
}
