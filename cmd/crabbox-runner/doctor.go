package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/crabbox/crabbox-runner/github"
	"github.com/crabbox/crabbox-runner/internal/config"
	"github.com/crabbox/crabbox-runner/providers/lambda"
	"github.com/crabbox/crabbox-runner/providers/vast"
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
			d.secrets = append(d.secrets, string(cfg.WebhookSecret), cfg.GitHubToken, string(cfg.GitHubAppKey), cfg.VastAPIKey, cfg.LambdaAPIKey)
			if u, err := url.Parse(cfg.DatabaseURL); err == nil && u.User != nil {
				if pw, ok := u.User.Password(); ok {
					d.secrets = append(d.secrets, pw)
				}
			}
			log := newLogger(io.Discard, "error", "text")
			d.checkDatabase(ctx, cfg)
			d.checkWebhookSecret(cfg)
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

// checkWebhookSecret: missing fails (serve refuses to start); short or a
// placeholder warns (it works, but can be guessed).
func (d *doctor) checkWebhookSecret(cfg *config.Config) {
	const minLen = 16
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
		d.warn("webhook secret", fmt.Sprintf("only %d bytes: short enough to guess", len(s)),
			fmt.Sprintf("use at least %d bytes, %s, here and in the GitHub App's webhook settings", minLen, howto))
	case len(distinct) < 4:
		d.warn("webhook secret", fmt.Sprintf("%d bytes but only %s: easy to guess", len(s), plural(len(distinct), "different character", "different characters")),
			"replace it with "+howto+", here and in the GitHub App's webhook settings")
	default:
		d.ok("webhook secret", fmt.Sprintf("set, %d bytes", len(s)))
	}
}

// checkGitHub checks the credentials, then the App or the token, then that
// runners can be listed where they will register.
func (d *doctor) checkGitHub(ctx context.Context, cfg *config.Config) {
	if err := cfg.Validate(config.Needs{GitHub: true}); err != nil {
		d.fail("GitHub credentials", err.Error(),
			"set CRABBOX_GITHUB_APP_ID and CRABBOX_GITHUB_APP_PRIVATE_KEY_FILE (the App's id and a private key downloaded from its settings), or CRABBOX_GITHUB_TOKEN; not both")
		return
	}
	isApp := cfg.GitHubToken == ""
	gh, err := github.New(github.Config{APIURL: cfg.GitHub.APIURL, Token: cfg.GitHubToken, AppID: cfg.GitHub.AppID,
		AppPrivateKey: cfg.GitHubAppKey, RunnerGroupID: cfg.GitHub.RunnerGroupID, Timeout: 30 * time.Second})
	if err != nil {
		if isApp {
			msg := err.Error()
			if i := strings.Index(msg, " {"); i > 0 {
				msg = msg[:i] // the rest is the ASN.1 decoder's dump of its state
			}
			d.fail("GitHub App private key", msg, fmt.Sprintf(
				"CRABBOX_GITHUB_APP_PRIVATE_KEY(_FILE) must hold the PEM private key of App %d: generate one under Private keys on the App's settings page and point CRABBOX_GITHUB_APP_PRIVATE_KEY_FILE at the .pem file", cfg.GitHub.AppID))
		} else {
			d.fail("GitHub token", err.Error(), "CRABBOX_GITHUB_TOKEN must hold the token alone: no spaces, quotes or other text")
		}
		return
	}
	g := &ghCheck{d: d, gh: gh, cfg: cfg, web: github.WebURL(cfg.GitHub.APIURL)}
	var scopes []provisioner.Scope
	if isApp {
		d.ok("GitHub App private key", "parses")
		var ok bool
		if scopes, ok = g.checkApp(ctx); !ok {
			return
		}
	} else if !g.checkToken(ctx) {
		return
	}
	g.checkRunnerGroups(ctx, g.checkRunners(ctx, scopes))
}

// ghCheck is the state of the GitHub checks.
type ghCheck struct {
	d   *doctor
	gh  *github.Client
	cfg *config.Config
	web string // GitHub's web base, for the pages a fix points to

	app         *github.App
	appSettings string          // the App's settings page
	suspended   map[string]bool // lower-cased accounts whose installation is suspended
}

// unreachable says what to do when GitHub did not answer.
func (g *ghCheck) unreachable(err error) (string, string) {
	return "GitHub did not answer: " + err.Error(),
		"check CRABBOX_GITHUB_API_URL / github.api_url (" + g.cfg.GitHub.APIURL + "; GHES: https://HOST/api/v3), DNS, the firewall and any proxy"
}

// answered describes an error answer: the status, GitHub's message and
// the permissions it said the call needs.
func answered(err error) string {
	s := fmt.Sprintf("GitHub answered %d", github.StatusCode(err))
	if m := github.ErrorMessage(err); m != "" {
		s += " " + m
	}
	if p := github.AcceptedPermissions(err); p != "" {
		s += " (the call needs " + p + ")"
	}
	return s
}

// checkApp checks the App (GET /app), its permissions and events, and its
// installations; it returns the org scopes of the installations, and false
// when GitHub refuses the App altogether.
func (g *ghCheck) checkApp(ctx context.Context) ([]provisioner.Scope, bool) {
	d := g.d
	app, err := g.gh.App(ctx)
	switch st := github.StatusCode(err); {
	case err == nil:
	case st == 0:
		problem, fix := g.unreachable(err)
		d.fail("GitHub App", problem, fix)
		return nil, false
	case st == 401:
		d.fail("GitHub App", answered(err)+": GitHub refused the App's JWT",
			fmt.Sprintf("check that CRABBOX_GITHUB_APP_ID (%d) is the id of the App this key belongs to (App settings → General → App ID), that the key was not deleted there (generate a new one under Private keys), and that this machine's clock is right (a JWT is valid for minutes)", g.cfg.GitHub.AppID))
		return nil, false
	case st == 404:
		d.fail("GitHub App", answered(err)+": no App API at "+g.cfg.GitHub.APIURL,
			"check CRABBOX_GITHUB_API_URL / github.api_url: https://api.github.com, or https://HOST/api/v3 for GitHub Enterprise Server")
		return nil, false
	default:
		d.fail("GitHub App", answered(err), "GitHub had trouble; run doctor again in a few minutes")
		return nil, false
	}
	g.app = app
	if strings.EqualFold(app.OwnerType, "User") {
		g.appSettings = g.web + "/settings/apps/" + app.Slug
	} else {
		g.appSettings = g.web + "/organizations/" + app.Owner + "/settings/apps/" + app.Slug
	}
	d.ok("GitHub App", fmt.Sprintf("%s (id %d, owned by %s): GitHub accepts its JWT", app.Slug, app.ID, app.Owner))

	// What the App asks of its installations.
	var want []github.Permission
	if !github.Satisfies(app.Permissions["organization_self_hosted_runners"], "write") && !github.Satisfies(app.Permissions["administration"], "write") {
		want = append(want, github.Permission{Name: "organization_self_hosted_runners", Level: "write"})
	}
	if !github.Satisfies(app.Permissions["actions"], "read") {
		want = append(want, github.Permission{Name: "actions", Level: "read"})
	}
	if len(want) > 0 {
		d.fail("GitHub App permissions", "the App does not ask for "+permList(want, nil),
			fmt.Sprintf("grant %s at %s/permissions (Administration: Read and write instead, if runners register at repositories), then accept the change on each installation",
				permTitles(want), g.appSettings))
	} else {
		d.ok("GitHub App permissions", permSummary(app.Permissions))
	}
	if slices.Contains(app.Events, github.WorkflowJobEvent) {
		d.ok("GitHub App events", "subscribed to workflow_job")
	} else {
		fix := fmt.Sprintf("at %s/permissions, under Subscribe to events, tick Workflow job", g.appSettings)
		if !github.Satisfies(app.Permissions["actions"], "read") {
			fix += " (it is offered once Repository permissions → Actions is Read-only or more)"
		}
		d.fail("GitHub App events", "not subscribed to workflow_job: GitHub sends no job events, so no job gets a runner", fix)
	}

	insts, err := g.gh.InstallationDetails(ctx)
	switch st := github.StatusCode(err); {
	case err == nil:
	case st == 0:
		problem, fix := g.unreachable(err)
		d.fail("GitHub App installations", problem, fix)
		return nil, true
	default:
		d.fail("GitHub App installations", answered(err), "run doctor again; if it persists, check the App's key and id")
		return nil, true
	}
	installNew := cmpOr(app.HTMLURL, g.web+"/apps/"+app.Slug) + "/installations/new"
	if len(insts) == 0 {
		d.fail("GitHub App installations", "the App is installed nowhere: GitHub sends it no events",
			"install it on your organization (or your repositories) at "+installNew)
		return nil, true
	}
	var names []string
	for _, in := range insts {
		names = append(names, fmt.Sprintf("%s (%s)", in.Account, strings.ToLower(cmpOr(in.AccountType, "?"))))
	}
	d.ok("GitHub App installations", fmt.Sprintf("%d: %s", len(insts), strings.Join(names, ", ")))

	var scopes []provisioner.Scope
	for _, in := range insts {
		if g.checkInstallation(in) && strings.EqualFold(in.AccountType, "Organization") {
			scopes = append(scopes, provisioner.Scope{Org: in.Account, InstallationID: in.ID})
		}
	}
	return scopes, true
}

// checkInstallation checks one installation: not suspended, granted what
// crabbox-runner needs there, receiving workflow_job.
func (g *ghCheck) checkInstallation(in github.InstallationDetail) bool {
	d := g.d
	what := fmt.Sprintf("installation %s (#%d)", in.Account, in.ID)
	page := in.HTMLURL
	if page == "" {
		page = fmt.Sprintf("%s/organizations/%s/settings/installations/%d", g.web, in.Account, in.ID)
		if strings.EqualFold(in.AccountType, "User") {
			page = fmt.Sprintf("%s/settings/installations/%d", g.web, in.ID)
		}
	}
	if in.Suspended {
		if g.suspended == nil {
			g.suspended = map[string]bool{}
		}
		g.suspended[strings.ToLower(in.Account)] = true
		d.fail(what, "suspended: GitHub sends no events for it and gives it no tokens",
			"an owner of "+in.Account+" can unsuspend it at "+page)
		return false
	}
	ok := true
	need := github.NeededPermissions(in.AccountType)
	if missing := github.MissingPermissions(in.Permissions, need); len(missing) > 0 {
		ok = false
		problem := "lacks " + permList(missing, in.Permissions)
		if len(github.MissingPermissions(g.app.Permissions, missing)) == 0 {
			d.fail(what+" permissions", problem+": the App asks for it, the installation has not accepted it",
				"an owner of "+in.Account+" must review and accept the App's new permissions at "+page)
		} else {
			d.fail(what+" permissions", problem,
				fmt.Sprintf("grant %s at %s/permissions, then an owner of %s accepts them at %s", permTitles(missing), g.appSettings, in.Account, page))
		}
	}
	if in.Events != nil && !slices.Contains(in.Events, github.WorkflowJobEvent) {
		ok = false
		if slices.Contains(g.app.Events, github.WorkflowJobEvent) {
			d.fail(what+" events", "does not receive workflow_job: the App subscribes to it, the installation has not accepted it",
				"an owner of "+in.Account+" must review and accept the App's new events at "+page)
		} else {
			d.fail(what+" events", "does not receive workflow_job",
				"subscribe the App to Workflow job (see GitHub App events above), then an owner of "+in.Account+" accepts it at "+page)
		}
	}
	if ok {
		detail := "granted " + permList(need, nil)
		if in.Events != nil {
			detail += "; receives workflow_job"
		}
		d.ok(what, detail)
	}
	return ok
}

func permList(ps []github.Permission, has map[string]string) string {
	var s []string
	for _, p := range ps {
		if has == nil {
			s = append(s, p.String())
		} else {
			s = append(s, fmt.Sprintf("%s (has %s)", p, cmpOr(has[p.Name], "none")))
		}
	}
	return strings.Join(s, ", ")
}

func permTitles(ps []github.Permission) string {
	var s []string
	for _, p := range ps {
		s = append(s, `"`+p.Title()+`"`)
	}
	return strings.Join(s, " and ")
}

// permSummary lists the permissions crabbox-runner uses that are granted.
func permSummary(perms map[string]string) string {
	var s []string
	for _, name := range []string{"organization_self_hosted_runners", "administration", "actions"} {
		if level := perms[name]; level != "" {
			s = append(s, name+": "+level)
		}
	}
	return strings.Join(s, ", ")
}

// checkToken checks a plain token: GitHub accepts it, and a classic one
// has the scopes for where its runners register.
func (g *ghCheck) checkToken(ctx context.Context) bool {
	d := g.d
	tokens := g.web + "/settings/tokens"
	info, err := g.gh.CheckToken(ctx)
	switch st := github.StatusCode(err); {
	case err == nil:
	case st == 0:
		problem, fix := g.unreachable(err)
		d.fail("GitHub token", problem, fix)
		return false
	case st == 401:
		d.fail("GitHub token", answered(err)+": GitHub refused CRABBOX_GITHUB_TOKEN (wrong, expired or revoked)",
			"create a new token at "+tokens+" (classic: scope admin:org for org runners, repo for repository runners) and set CRABBOX_GITHUB_TOKEN to it")
		return false
	default:
		d.fail("GitHub token", answered(err), "GitHub had trouble; run doctor again in a few minutes")
		return false
	}
	if !info.ScopesListed {
		d.ok("GitHub token", "GitHub accepts it (not a classic token, so no scopes to list: the runner listings below show what it may do)")
	} else {
		d.ok("GitHub token", "GitHub accepts it; classic token with scopes: "+cmpOr(strings.Join(info.Scopes, ", "), "none"))
		var missing []string
		scopes := g.cfg.GitHub.ScopeList()
		for _, s := range scopes {
			if s.Repo != "" && !info.HasScope("repo") {
				missing = append(missing, "repo (repository runners in "+s.Repo+")")
			}
			if s.Org != "" && !info.HasScope("admin:org", "manage_runners:org") {
				missing = append(missing, "admin:org or manage_runners:org (org runners in "+s.Org+")")
			}
		}
		if len(scopes) == 0 && !info.HasScope("admin:org", "manage_runners:org", "repo") {
			missing = append(missing, "admin:org (org runners) or repo (repository runners)")
		}
		if len(missing) > 0 {
			d.fail("GitHub token scopes", "lacks "+strings.Join(missing, ", "),
				"edit the token at "+tokens+" and add the scopes named, or create one that has them")
		} else {
			d.ok("GitHub token scopes", "enough for runners where github.scopes says")
		}
	}
	if len(g.cfg.GitHub.Scopes) == 0 {
		d.warn("github.scopes", "empty: with a token there are no installations to tell where runners register, so doctor checks none",
			"list your org (or owner/repo) under github.scopes, so doctor checks the token there and gc and reconcile look there")
	}
	return true
}

// checkRunners lists the runners of every scope, with the credentials that
// serve will use there, and returns the scopes where that worked.
func (g *ghCheck) checkRunners(ctx context.Context, scopes []provisioner.Scope) []provisioner.Scope {
	var listed []provisioner.Scope
	seen := map[string]bool{}
	for _, s := range scopes {
		seen[strings.ToLower(s.Key())] = true
	}
	for _, s := range g.cfg.GitHub.ScopeList() {
		if !seen[strings.ToLower(s.Key())] {
			seen[strings.ToLower(s.Key())] = true
			scopes = append(scopes, s)
		}
	}
	for _, s := range scopes {
		if owner, _, _ := strings.Cut(cmpOr(s.Repo, s.Org), "/"); g.suspended[strings.ToLower(owner)] {
			continue // its installation failed above, and nothing can work there
		}
		what := "runners in " + s.Key()
		runners, err := g.gh.ListRunners(ctx, s)
		if err == nil {
			g.d.ok(what, plural(len(runners), "runner", "runners")+" listed")
			listed = append(listed, s)
			continue
		}
		problem, fix := g.runnersProblem(err, s)
		g.d.fail(what, problem, fix)
	}
	return listed
}

func (g *ghCheck) runnersProblem(err error, s provisioner.Scope) (string, string) {
	isApp := g.app != nil || g.cfg.GitHubToken == ""
	owner, _, _ := strings.Cut(cmpOr(s.Repo, s.Org), "/")
	perm := github.Permission{Name: "organization_self_hosted_runners", Level: "write"}
	classic := "admin:org (or manage_runners:org)"
	fineGrained := "Organization permissions → Self-hosted runners: Read and write"
	if s.Repo != "" {
		perm = github.Permission{Name: "administration", Level: "write"}
		classic, fineGrained = "repo", "Repository permissions → Administration: Read and write"
	}
	switch st := github.StatusCode(err); {
	case errors.Is(err, github.ErrNotInstalled):
		install := g.web + "/apps/"
		if g.app != nil {
			install = cmpOr(g.app.HTMLURL, g.web+"/apps/"+g.app.Slug)
		}
		return "the GitHub App is not installed on " + owner,
			"install it on " + owner + " at " + strings.TrimSuffix(install, "/") + "/installations/new, or remove " + cmpOr(s.Repo, s.Org) + " from github.scopes"
	case st == 0:
		return g.unreachable(err)
	case st == 401 && isApp:
		return answered(err) + ": GitHub refused the installation's token", "check the App's id and key (see GitHub App above) and run doctor again"
	case st == 401:
		return answered(err) + ": GitHub refused CRABBOX_GITHUB_TOKEN", "create a new token at " + g.web + "/settings/tokens and set CRABBOX_GITHUB_TOKEN to it"
	case st == 403 && isApp:
		return answered(err) + ": the installation may not manage runners in " + s.Key(),
			fmt.Sprintf("grant %q at %s/permissions and have an owner of %s accept it on the installation", perm.Title(), cmpOr(g.appSettings, "the App's settings"), owner)
	case st == 403:
		return answered(err) + ": the token may not manage runners in " + s.Key(),
			"a classic token needs the " + classic + " scope, a fine-grained one " + fineGrained + "; edit it at " + g.web + "/settings/tokens"
	case st == 404:
		return answered(err) + ": " + cmpOr(s.Repo, s.Org) + " does not exist or these credentials cannot see it",
			"check the spelling in github.scopes, and that the credentials reach " + cmpOr(s.Repo, s.Org)
	}
	return answered(err), "GitHub had trouble; run doctor again in a few minutes"
}

// checkProviders checks each provider the classes name: its key, with one
// read-only call (a list of instances), then each class's offers there.
func (d *doctor) checkProviders(ctx context.Context, cfg *config.Config, log *slog.Logger) {
	classes := cfg.ProvisionerClasses()
	var names []string
	for _, c := range classes {
		for _, name := range c.Providers {
			if !slices.Contains(names, name) {
				names = append(names, name)
			}
		}
	}
	found := map[string]int{} // class → offers over all its providers
	for _, name := range names {
		if !d.checkProviderKey(ctx, name, cfg, log) {
			continue
		}
		p, err := newProvider(name, cfg, log)
		if err != nil {
			d.fail("provider "+name, err.Error(), "correct providers."+name+" in the configuration")
			continue
		}
		for _, c := range classes {
			if !slices.Contains(c.Providers, name) {
				continue
			}
			what := fmt.Sprintf("offers for class %s on %s", c.Name, name)
			octx, cancel := context.WithTimeout(ctx, time.Minute)
			offers, err := p.Offers(octx, c)
			cancel()
			if err != nil {
				problem, fix := providerProblem(name, cfg, err)
				d.fail(what, problem, fix)
				continue
			}
			var fit []provisioner.Offer
			for _, of := range offers {
				if c.MaxPricePerHour <= 0 || of.PricePerHour <= c.MaxPricePerHour {
					fit = append(fit, of)
				}
			}
			found[c.Name] += len(fit)
			if len(fit) == 0 {
				d.ok(what, "none fit right now")
				continue
			}
			d.ok(what, fmt.Sprintf("%d, cheapest %s at $%.2f/h", len(fit), fit[0].GPU, fit[0].PricePerHour))
		}
	}
	for _, c := range classes {
		if n, ok := found[c.Name]; ok && n == 0 {
			d.warn("class "+c.Name, "no provider has a fitting offer right now: its jobs would wait",
				"see `crabbox-runner offers --class "+c.Name+"`; widen the class (gpu, max_price_per_hour, region, providers) if this lasts")
		}
	}
}

// providerEnv names a provider's key and API URL settings.
func providerEnv(name string) (key, apiURL string) {
	switch name {
	case vast.Name:
		return "VAST_API_KEY", "CRABBOX_VAST_API_URL / providers.vast.api_url"
	case lambda.Name:
		return "LAMBDA_API_KEY", "CRABBOX_LAMBDA_API_URL / providers.lambda.api_url"
	}
	return "", ""
}

// checkProviderKey makes one read-only call with the provider's key: the
// first page of its instances. Retries are few, so an API that is down is
// reported in seconds, not minutes.
func (d *doctor) checkProviderKey(ctx context.Context, name string, cfg *config.Config, log *slog.Logger) bool {
	what := "provider " + name
	keyVar, _ := providerEnv(name)
	ctx, cancel := context.WithTimeout(ctx, 45*time.Second)
	defer cancel()
	var err error
	switch name {
	case vast.Name:
		var c *vast.Client
		c, err = vast.NewClient(vast.Config{APIKey: cfg.VastAPIKey, APIURL: cfg.Providers.Vast.APIURL,
			MinRequestInterval: cfg.Providers.Vast.MinRequestInterval, Timeout: 20 * time.Second,
			Retry: vast.Retry{MaxRetries: 1, Initial: 200 * time.Millisecond, Max: time.Second, MaxElapsed: 30 * time.Second}, Logger: log})
		if err != nil {
			d.fail(what, err.Error(), "set "+keyVar+" to an API key from the Vast console (Account → Keys)")
			return false
		}
		_, err = c.ListInstancesPage(ctx, nil, "")
	case lambda.Name:
		var c *lambda.Client
		c, err = lambda.NewClient(lambda.ClientConfig{APIKey: cfg.LambdaAPIKey, APIURL: cfg.Providers.Lambda.APIURL,
			MinRequestInterval: cfg.Providers.Lambda.MinRequestInterval, Timeout: 20 * time.Second,
			Retry: lambda.RetryPolicy{MaxAttempts: 2, InitialInterval: 200 * time.Millisecond, MaxInterval: time.Second, MaxElapsedTime: 30 * time.Second}, Logger: log})
		if err != nil {
			d.fail(what, err.Error(), "set "+keyVar+" to an API key from the Lambda Cloud dashboard (API keys)")
			return false
		}
		_, err = c.Instances(ctx)
	default:
		if _, err := newProvider(name, cfg, log); err != nil {
			d.fail(what, err.Error(), "correct providers."+name+" in the configuration, or remove "+name+" from the classes")
			return false
		}
		d.ok(what, "configured")
		return true
	}
	if err != nil {
		problem, fix := providerProblem(name, cfg, err)
		d.fail(what, problem, fix)
		return false
	}
	d.ok(what, "the API accepts "+keyVar+" (instances listed)")
	return true
}

// providerProblem tells a rejected key from an API that did not answer.
func providerProblem(name string, cfg *config.Config, err error) (string, string) {
	keyVar, urlVar := providerEnv(name)
	status, code := 0, ""
	if ae, ok := vast.IsAPIError(err); ok {
		status, code = ae.Status, ae.Code
	}
	var le *lambda.APIError
	if errors.As(err, &le) {
		status, code = le.Status, le.Code
	}
	apiURL := cfg.Providers.Vast.APIURL
	if name == lambda.Name {
		apiURL = cfg.Providers.Lambda.APIURL
	}
	switch {
	case code == lambda.CodeAccountInactive:
		return "the account is inactive: " + err.Error(), "reactivate the Lambda Cloud account (billing), then run doctor again"
	case status == 401 || status == 403:
		return fmt.Sprintf("the API rejected %s (HTTP %d): %v", keyVar, status, err),
			"check " + keyVar + ": it may be mistyped, revoked or lack permissions; create a new key in the " + name + " console and set " + keyVar
	case status == 429:
		return "rate limited: " + err.Error(), "another process uses the same key heavily; run doctor again in a minute"
	case status >= 500:
		return fmt.Sprintf("the API answered HTTP %d: %v", status, err), name + " has trouble; check its status page and run doctor again later"
	case status != 0:
		return err.Error(), "check " + urlVar + " (" + apiURL + ") points at the " + name + " API"
	case errors.Is(err, context.DeadlineExceeded):
		return "no answer in time from " + apiURL + ": " + err.Error(), "check " + urlVar + ", DNS, the firewall and any proxy"
	}
	return "the API is unreachable at " + apiURL + ": " + err.Error(), "check " + urlVar + ", DNS, the firewall and any proxy"
}

func plural(n int, one, many string) string {
	if n == 1 {
		return "1 " + one
	}
	return fmt.Sprintf("%d %s", n, many)
}
