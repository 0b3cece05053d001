package github_test

import (
	"errors"
	"net"
	"slices"
	"strings"
	"testing"

	"github.com/crabbox/crabbox-runner/github"
	"github.com/crabbox/crabbox-runner/github/githubtest"
	"github.com/crabbox/crabbox-runner/provisioner"
)

func appClient(t *testing.T, opts githubtest.Options) (*githubtest.Server, *github.Client) {
	t.Helper()
	key, pemBytes := testAppKey(t)
	opts.AppID, opts.AppPublicKey, opts.Logf = appID, &key.PublicKey, t.Logf
	fake := githubtest.New(opts)
	t.Cleanup(fake.Close)
	c, err := github.New(github.Config{APIURL: fake.URL(), AppID: appID, AppPrivateKey: pemBytes, JITPerMinute: -1})
	if err != nil {
		t.Fatal(err)
	}
	return fake, c
}

func TestAppAndInstallationDetails(t *testing.T) {
	ctx := ctxFor(t)
	fake, c := appClient(t, githubtest.Options{
		AppSlug:                 "gpu-runners",
		Installations:           map[string]int64{"acme": 11, "bob/tool": 12, "zed": 13},
		InstallationPermissions: map[int64]map[string]string{12: {"metadata": "read"}},
		InstallationEvents:      map[int64][]string{12: {}},
		SuspendedInstallations:  []int64{13},
	})
	if !c.IsApp() {
		t.Fatal("IsApp is false for an App client")
	}
	app, err := c.App(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if app.ID != appID || app.Slug != "gpu-runners" || app.Owner != "acme" || app.OwnerType != "Organization" ||
		app.HTMLURL != fake.URL()+"/apps/gpu-runners" || !slices.Equal(app.Events, []string{"workflow_job"}) ||
		app.Permissions["organization_self_hosted_runners"] != "write" || app.Permissions["actions"] != "read" {
		t.Fatalf("App: %+v", app)
	}

	insts, err := c.InstallationDetails(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(insts) != 3 {
		t.Fatalf("installations: %+v", insts)
	}
	acme, bob, zed := insts[0], insts[1], insts[2]
	if acme.ID != 11 || acme.Account != "acme" || acme.AccountType != "Organization" || acme.Suspended ||
		len(github.MissingPermissions(acme.Permissions, github.NeededPermissions(acme.AccountType))) != 0 ||
		!slices.Contains(acme.Events, github.WorkflowJobEvent) || acme.HTMLURL == "" {
		t.Errorf("acme: %+v", acme)
	}
	missing := github.MissingPermissions(bob.Permissions, github.NeededPermissions(bob.AccountType))
	if bob.AccountType != "User" || len(missing) != 2 || missing[0].String() != "administration: write" || missing[1].String() != "actions: read" ||
		bob.Events == nil || len(bob.Events) != 0 || !strings.Contains(bob.HTMLURL, "/settings/installations/12") {
		t.Errorf("bob: %+v, missing %v", bob, missing)
	}
	if missing[0].Title() != "Repository permissions → Administration: Read and write" {
		t.Errorf("title %q", missing[0].Title())
	}
	if !zed.Suspended {
		t.Errorf("zed: %+v", zed)
	}
	// Installations (what serve uses) leaves the suspended one out.
	if plain, err := c.Installations(ctx); err != nil || len(plain) != 2 {
		t.Errorf("Installations: %v %+v", err, plain)
	}
	// The installation held to what it was granted: GitHub refuses its
	// token on repository runners and names the permission it lacks.
	_, err = c.ListRunners(ctx, provisioner.Scope{Repo: "bob/tool"})
	if github.StatusCode(err) != 403 || github.AcceptedPermissions(err) != "administration=read" {
		t.Errorf("ListRunners without administration: %v (accepted %q)", err, github.AcceptedPermissions(err))
	}
	// A suspended installation gets no token.
	if _, err := c.ListRunners(ctx, provisioner.Scope{Org: "zed"}); err == nil {
		t.Error("ListRunners on a suspended installation succeeded")
	}
	// Where the App is not installed: ErrNotInstalled.
	if _, err := c.ListRunners(ctx, provisioner.Scope{Org: "stranger"}); !errors.Is(err, github.ErrNotInstalled) ||
		!strings.Contains(err.Error(), "not installed on org:stranger") {
		t.Errorf("ListRunners where not installed: %v", err)
	}
	if _, err := c.CheckToken(ctx); err == nil {
		t.Error("CheckToken on an App client succeeded")
	}
}

func TestAppJWTRejected(t *testing.T) {
	ctx := ctxFor(t)
	_, c := appClient(t, githubtest.Options{Installations: map[string]int64{"acme": 11}, RejectJWT: true})
	_, err := c.App(ctx)
	if github.StatusCode(err) != 401 || github.ErrorMessage(err) == "" {
		t.Fatalf("App with a rejected JWT: %v", err)
	}
	if _, err := c.InstallationDetails(ctx); github.StatusCode(err) != 401 {
		t.Fatalf("InstallationDetails with a rejected JWT: %v", err)
	}
}

func TestCheckToken(t *testing.T) {
	ctx := ctxFor(t)
	fake := githubtest.New(githubtest.Options{Tokens: []string{testToken, "ghs_finegrained"}, Logf: t.Logf,
		TokenScopes: map[string]string{testToken: "repo, admin:org"}})
	t.Cleanup(fake.Close)
	check := func(token string) (*github.TokenInfo, error) {
		c, err := github.New(github.Config{APIURL: fake.URL(), Token: token})
		if err != nil {
			t.Fatal(err)
		}
		if c.IsApp() {
			t.Fatal("IsApp is true for a token client")
		}
		return c.CheckToken(ctx)
	}
	info, err := check(testToken)
	if err != nil || !info.ScopesListed || !slices.Equal(info.Scopes, []string{"repo", "admin:org"}) ||
		!info.HasScope("admin:org", "manage_runners:org") || info.HasScope("workflow") {
		t.Fatalf("classic token: %v %+v", err, info)
	}
	info, err = check("ghs_finegrained")
	if err != nil || info.ScopesListed || len(info.Scopes) != 0 {
		t.Fatalf("fine-grained token: %v %+v", err, info)
	}
	_, err = check("ghp_wrong")
	if github.StatusCode(err) != 401 || github.ErrorMessage(err) != "Bad credentials" || strings.Contains(err.Error(), "ghp_wrong") {
		t.Fatalf("wrong token: %v", err)
	}

	// Nothing listening: no status, a network error.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	c, err := github.New(github.Config{APIURL: "http://" + addr, Token: testToken})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.CheckToken(ctx); err == nil || github.StatusCode(err) != 0 {
		t.Fatalf("unreachable: %v", err)
	}
	if _, err := c.App(ctx); !errors.Is(err, github.ErrNeedsApp) {
		t.Fatalf("App on a token client: %v", err)
	}
}

func TestWebURLAndJobURL(t *testing.T) {
	for api, want := range map[string]string{
		"":                                    "https://github.com",
		"https://api.github.com":              "https://github.com",
		"https://api.github.com/":             "https://github.com",
		"https://ghe.example.com/api/v3":      "https://ghe.example.com",
		"https://ghe.example.com/api/v3/":     "https://ghe.example.com",
		"https://GHE.example.com:8443/api/v3": "https://ghe.example.com:8443",
		"https://api.octo.ghe.com":            "https://octo.ghe.com",
		"http://127.0.0.1:4321":               "http://127.0.0.1:4321",
	} {
		if got := github.WebURL(api); got != want {
			t.Errorf("WebURL(%q) = %q, want %q", api, got, want)
		}
	}
	if got := github.JobURL("https://github.com/", "acme/vision", 900001, 100001); got != "https://github.com/acme/vision/actions/runs/900001/job/100001" {
		t.Errorf("JobURL = %q", got)
	}
}
