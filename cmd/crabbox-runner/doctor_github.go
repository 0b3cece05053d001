package main

// doctor's GitHub checks: the credentials, the App and its installations or
// the token, and the runners of every scope (moved as is from doctor.go).

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/crabbox/crabbox-runner/github"
	"github.com/crabbox/crabbox-runner/internal/config"
	"github.com/crabbox/crabbox-runner/provisioner"
)

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
	if actions := g.actionsLevel(); !github.Satisfies(app.Permissions["actions"], actions) {
		want = append(want, github.Permission{Name: "actions", Level: actions})
	}
	if len(want) > 0 {
		d.fail("GitHub App permissions", "the App does not ask for "+permList(want, nil)+g.rerunNote(want),
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
	need := g.neededPermissions(in.AccountType)
	if missing := github.MissingPermissions(in.Permissions, need); len(missing) > 0 {
		ok = false
		problem := "lacks " + permList(missing, in.Permissions) + g.rerunNote(missing)
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
		if classes := g.rerunClasses(); len(classes) > 0 {
			d.warn("GitHub token: re-running lost jobs", "rerun_lost_jobs is set on "+strings.Join(classes, ", ")+
				", which needs the Actions write permission; a fine-grained token's permissions cannot be read, so doctor cannot check it",
				"give the token Repository permissions → Actions: Read and write on the repositories whose jobs run here (at "+tokens+")")
		}
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
		if classes := g.rerunClasses(); len(classes) > 0 && !info.HasScope("repo") {
			missing = append(missing, "repo (re-running lost jobs: rerun_lost_jobs on "+strings.Join(classes, ", ")+")")
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

// rerunClasses names the classes with rerun_lost_jobs: they need the
// Actions write permission (POST …/actions/jobs/{job_id}/rerun; docs
// "Permissions required for GitHub Apps": Actions, write), where every
// other call needs only read.
func (g *ghCheck) rerunClasses() []string {
	var out []string
	for _, c := range g.cfg.Classes {
		if c.RerunLostJobs {
			out = append(out, c.Name)
		}
	}
	return out
}

// actionsLevel is the Actions permission crabbox-runner needs.
func (g *ghCheck) actionsLevel() string {
	if len(g.rerunClasses()) > 0 {
		return "write"
	}
	return "read"
}

// neededPermissions is github.NeededPermissions with Actions raised to
// write for rerun_lost_jobs.
func (g *ghCheck) neededPermissions(accountType string) []github.Permission {
	need := github.NeededPermissions(accountType)
	for i := range need {
		if need[i].Name == "actions" {
			need[i].Level = g.actionsLevel()
		}
	}
	return need
}

// rerunNote says why Actions write is wanted, when it is among missing.
func (g *ghCheck) rerunNote(missing []github.Permission) string {
	for _, p := range missing {
		if p.Name == "actions" && p.Level == "write" {
			return " (write: rerun_lost_jobs on " + strings.Join(g.rerunClasses(), ", ") + " re-runs lost jobs through the API)"
		}
	}
	return ""
}
