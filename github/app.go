package github

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"

	"github.com/bradleyfalzon/ghinstallation/v2"
	gh "github.com/google/go-github/v62/github"

	"github.com/crabbox/crabbox-runner/provisioner"
)

// What `crabbox-runner doctor` asks GitHub about the credentials
// themselves: the App (its permissions and events), every installation
// with what it was granted, and whether a token works at all.

// ErrNotInstalled is wrapped by the error of a call for a scope where the
// GitHub App has no installation.
var ErrNotInstalled = errors.New("the GitHub App is not installed there")

// notInstalledError says where the App is missing; it is ErrNotInstalled.
type notInstalledError struct{ scope provisioner.Scope }

func (e *notInstalledError) Error() string {
	return "github: the GitHub App is not installed on " + e.scope.String()
}

func (e *notInstalledError) Is(target error) bool { return target == ErrNotInstalled }

// IsApp reports whether the client authenticates as a GitHub App.
func (c *Client) IsApp() bool { return c.appClient != nil }

// App is the GitHub App as GET /app describes it.
type App struct {
	ID        int64
	Slug      string
	Name      string
	Owner     string // the org or user that owns the App
	OwnerType string // "Organization" or "User"
	HTMLURL   string // its public page, {web}/apps/{slug}
	// Permissions are what the App asks of every installation, by
	// permission name ("actions": "read").
	Permissions map[string]string
	// Events are the webhook events it subscribes to ("workflow_job").
	Events []string
}

// App returns the authenticated App (GET /app, with the App's JWT). A
// token client gets ErrNeedsApp.
func (c *Client) App(ctx context.Context) (*App, error) {
	if c.appClient == nil {
		return nil, fmt.Errorf("github: get the App: %w", ErrNeedsApp)
	}
	a, _, err := c.appClient.Apps.Get(ctx, "")
	if err != nil {
		return nil, fmt.Errorf("github: get the App: %w", err)
	}
	return &App{
		ID: a.GetID(), Slug: a.GetSlug(), Name: a.GetName(), Owner: a.GetOwner().GetLogin(), OwnerType: a.GetOwner().GetType(),
		HTMLURL: a.GetHTMLURL(), Permissions: permissionMap(a.Permissions), Events: slices.Clone(a.Events),
	}, nil
}

// InstallationDetail is one installation of the App with what it was
// granted: an installation keeps the permissions and events its owner
// accepted, which lag the App's own until the owner accepts new ones.
type InstallationDetail struct {
	Installation
	TargetType          string // "Organization" or "User"
	RepositorySelection string // "all" or "selected"
	HTMLURL             string // its settings page
	Permissions         map[string]string
	// Events are the events it receives; nil when GitHub did not list them.
	Events    []string
	Suspended bool
}

// InstallationDetails lists every installation of the App, suspended ones
// included (GET /app/installations, with the App's JWT). A token client
// gets ErrNeedsApp.
func (c *Client) InstallationDetails(ctx context.Context) ([]InstallationDetail, error) {
	if c.appClient == nil {
		return nil, fmt.Errorf("github: list the App's installations: %w", ErrNeedsApp)
	}
	var out []InstallationDetail
	err := eachPage(func(page int) (int, *gh.Response, error) {
		list, resp, err := c.appClient.Apps.ListInstallations(ctx, &gh.ListOptions{PerPage: perPage, Page: page})
		for _, in := range list {
			out = append(out, InstallationDetail{
				Installation: Installation{ID: in.GetID(), Account: in.GetAccount().GetLogin(), AccountType: in.GetAccount().GetType()},
				TargetType:   in.GetTargetType(), RepositorySelection: in.GetRepositorySelection(), HTMLURL: in.GetHTMLURL(),
				Permissions: permissionMap(in.Permissions), Events: slices.Clone(in.Events), Suspended: in.SuspendedAt != nil,
			})
		}
		return len(list), resp, err
	})
	if err != nil {
		return nil, fmt.Errorf("github: list the App's installations: %w", err)
	}
	return out, nil
}

// permissionMap turns go-github's struct of permissions into a map by
// GitHub's names, leaving out the ones not granted.
func permissionMap(p *gh.InstallationPermissions) map[string]string {
	out := map[string]string{}
	if p == nil {
		return out
	}
	b, err := json.Marshal(p)
	if err != nil {
		return out
	}
	_ = json.Unmarshal(b, &out)
	return out
}

// Permission is a GitHub App permission at a level.
type Permission struct {
	Name  string // as GitHub names it: "organization_self_hosted_runners"
	Level string // "read" or "write"
}

func (p Permission) String() string { return p.Name + ": " + p.Level }

// Title is the permission as the App's settings page shows it.
func (p Permission) Title() string {
	level := "Read-only"
	if p.Level == "write" {
		level = "Read and write"
	}
	switch p.Name {
	case "organization_self_hosted_runners":
		return "Organization permissions → Self-hosted runners: " + level
	case "administration":
		return "Repository permissions → Administration: " + level
	case "actions":
		return "Repository permissions → Actions: " + level
	case "metadata":
		return "Repository permissions → Metadata: " + level
	}
	return p.Name + ": " + level
}

// Satisfies reports whether a granted level covers the wanted one (write
// covers read, admin covers both).
func Satisfies(granted, want string) bool { return levelRank(granted) >= levelRank(want) }

func levelRank(level string) int {
	switch level {
	case "read":
		return 1
	case "write":
		return 2
	case "admin":
		return 3
	}
	return 0
}

// NeededPermissions are what crabbox-runner needs of an installation on an
// account of the type (reference §4.1): runners register at the org for an
// organization (organization_self_hosted_runners: write) and at the
// repository for a user's repositories (administration: write); reading
// jobs and receiving workflow_job both need actions: read.
func NeededPermissions(accountType string) []Permission {
	runners := Permission{Name: "organization_self_hosted_runners", Level: "write"}
	if strings.EqualFold(accountType, "User") {
		runners = Permission{Name: "administration", Level: "write"}
	}
	return []Permission{runners, {Name: "actions", Level: "read"}}
}

// MissingPermissions returns the permissions of want that granted lacks.
func MissingPermissions(granted map[string]string, want []Permission) []Permission {
	var out []Permission
	for _, p := range want {
		if !Satisfies(granted[p.Name], p.Level) {
			out = append(out, p)
		}
	}
	return out
}

// WorkflowJobEvent is the webhook event crabbox-runner lives on.
const WorkflowJobEvent = "workflow_job"

// TokenInfo is what GitHub says about a plain token.
type TokenInfo struct {
	// Scopes are a classic token's OAuth scopes (X-OAuth-Scopes);
	// ScopesListed is false when GitHub sent no such header, as for
	// fine-grained and installation tokens, whose rights only a call shows.
	Scopes       []string
	ScopesListed bool
}

// HasScope reports whether the token's scopes include one of names.
func (t *TokenInfo) HasScope(names ...string) bool {
	return slices.ContainsFunc(t.Scopes, func(s string) bool { return slices.Contains(names, s) })
}

// CheckToken asks GitHub whether the token is accepted, with GET
// /rate_limit, which spends none of the rate limit. An App client gets an
// error: it has no token of its own to check.
func (c *Client) CheckToken(ctx context.Context) (*TokenInfo, error) {
	if c.tokenClient == nil {
		return nil, errors.New("github: check the token: this client authenticates as a GitHub App")
	}
	_, resp, err := c.tokenClient.RateLimit.Get(ctx)
	if err != nil {
		return nil, fmt.Errorf("github: check the token: %w", err)
	}
	info := &TokenInfo{}
	if vals, ok := resp.Header[http.CanonicalHeaderKey("X-OAuth-Scopes")]; ok {
		info.ScopesListed = true
		for _, v := range vals {
			for _, s := range strings.Split(v, ",") {
				if s = strings.TrimSpace(s); s != "" {
					info.Scopes = append(info.Scopes, s)
				}
			}
		}
	}
	return info, nil
}

// StatusCode returns the HTTP status of a GitHub error answer in err's
// chain, the refusal of an installation token included, or 0 when GitHub
// never answered (a network error).
func StatusCode(err error) int {
	if st := statusOf(err); st != 0 {
		return st
	}
	var he *ghinstallation.HTTPError
	if errors.As(err, &he) && he.Response != nil {
		return he.Response.StatusCode
	}
	return 0
}

// ErrorMessage returns the message of a GitHub error answer in err's
// chain ("Bad credentials"), or "".
func ErrorMessage(err error) string {
	var er *gh.ErrorResponse
	if errors.As(err, &er) {
		return er.Message
	}
	return ""
}

// AcceptedPermissions returns what GitHub said a refused call needs, from
// the X-Accepted-GitHub-Permissions header of its answer
// ("organization_self_hosted_runners=write"), or "".
func AcceptedPermissions(err error) string {
	var er *gh.ErrorResponse
	if errors.As(err, &er) && er.Response != nil {
		return er.Response.Header.Get("X-Accepted-GitHub-Permissions")
	}
	return ""
}

// WebURL returns the web base that goes with a REST API base:
// https://api.github.com → https://github.com, GHES's https://HOST/api/v3 →
// https://HOST, GHE.com's https://api.SUB.ghe.com → https://SUB.ghe.com.
// Anything else (a test's fake) is its own web base.
func WebURL(apiURL string) string {
	if apiURL == "" {
		apiURL = DefaultAPIURL
	}
	u, err := url.Parse(apiURL)
	if err != nil || u.Host == "" {
		return "https://github.com"
	}
	host := strings.ToLower(u.Host)
	path := strings.TrimSuffix(u.Path, "/")
	switch {
	case host == "api.github.com":
		return "https://github.com"
	case strings.HasSuffix(strings.ToLower(path), "/api/v3"):
		path = path[:len(path)-len("/api/v3")]
	case strings.HasPrefix(host, "api.") && strings.HasSuffix(host, ".ghe.com") && path == "":
		host = strings.TrimPrefix(host, "api.")
	}
	return u.Scheme + "://" + host + path
}

// JobURL is a workflow job's page: {web}/{owner/repo}/actions/runs/{run}/job/{job}.
func JobURL(webURL, repo string, runID, jobID int64) string {
	return fmt.Sprintf("%s/%s/actions/runs/%d/job/%d", strings.TrimSuffix(webURL, "/"), repo, runID, jobID)
}
