// Package github is crabbox-runner's client for the part of GitHub's REST API
// that manages self-hosted runners: it registers just-in-time runners, looks
// them up and removes them, for an organization or a repository. It
// implements provisioner.GitHub on top of go-github, authenticating either
// with a plain token or as a GitHub App (one installation token per
// installation, through ghinstallation).
//
// Because webhooks get lost, it also reads what they may have missed: what
// changed in the repositories that can have changed (ScanJobs, which also
// drives poll mode) and, for an App, the webhook deliveries that failed,
// read from where the last sweep stopped, which it can have redelivered
// (RedeliverFailed). Background requests share a per-minute ceiling
// (bgcap.go).
//
// Nothing secret (the token, the App private key, a JIT config) ever appears
// in an error returned from this package.
package github

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/bradleyfalzon/ghinstallation/v2"
	gh "github.com/google/go-github/v62/github"

	"github.com/crabbox/crabbox-runner/internal/apiurl"
	"golang.org/x/time/rate"

	"github.com/crabbox/crabbox-runner/provisioner"
)

// DefaultAPIURL is github.com's REST API.
const DefaultAPIURL = "https://api.github.com"

// DefaultTimeout bounds each HTTP request when Config.Timeout is zero.
const DefaultTimeout = 30 * time.Second

// Config says where GitHub is and how to authenticate. Exactly one of Token
// or AppID with AppPrivateKey is set.
type Config struct {
	// APIURL is the REST API base, DefaultAPIURL when empty. GHES uses
	// https://HOST/api/v3.
	APIURL string
	// Token is a personal access token or an installation token.
	Token string
	// AppID and AppPrivateKey (PEM) authenticate as a GitHub App.
	AppID         int64
	AppPrivateKey []byte
	// RunnerGroupID is the runner group JIT runners join; 1 (the default
	// group) when zero.
	RunnerGroupID int64
	// HTTPClient supplies the transport; its CheckRedirect is replaced.
	HTTPClient *http.Client
	// Timeout bounds each request; DefaultTimeout when zero.
	Timeout time.Duration
	// JITPerMinute paces runner registrations below GitHub's limit (about
	// 180 a minute per App); DefaultJITPerMinute when zero, none when
	// negative. Registrations beyond it wait their turn.
	JITPerMinute int
	// OnLimitWait, when set, is told how long a registration waited.
	OnLimitWait func(limit string, d time.Duration)
	// RunnerGroupTTL is how long the runner group's settings are cached
	// (runnergroups.go); DefaultRunnerGroupTTL when zero.
	RunnerGroupTTL time.Duration
	// Logger gets the few things worth a line (an odd runner-group
	// answer); nothing when nil.
	Logger *slog.Logger
	// BackgroundPerMinute is the ceiling of background requests (the
	// reconcile's; see provisioner.Background) in any BackgroundWindow;
	// DefaultBackgroundPerMinute when zero, none when negative.
	BackgroundPerMinute int
	// BackgroundWindow is the span of that ceiling, a minute when zero
	// (tests scale time with it); the scan's slower periods (the
	// repository list, the installations) scale with it too.
	BackgroundWindow time.Duration

	// Observer, when set, is told about every request and each
	// credential's budget (budget.go).
	Observer Observer
	// ReservePercent of each credential's budget is kept for the calls
	// that serve jobs: below it, background calls are deferred.
	// DefaultReservePercent when zero, no reserve when negative.
	ReservePercent int
	// Logf, when set, gets the budget's rare log lines (a deferral, odd
	// rate-limit headers). Nothing secret is logged.
	Logf func(format string, args ...any)
	// Now is the budget's clock; time.Now when nil (tests).
	Now func() time.Time
}

// DefaultJITPerMinute leaves headroom under GitHub's ~180 a minute.
const DefaultJITPerMinute = 150

// Client talks to GitHub for one deployment. It is safe for concurrent use.
type Client struct {
	base    *url.URL
	groupID int64

	// httpClient is the redirect-checking client without auth; its
	// transport carries every request.
	httpClient *http.Client

	// token mode
	tokenClient *gh.Client

	// App mode
	apps      *ghinstallation.AppsTransport
	appClient *gh.Client // authenticates with the App's JWT
	// refreshMu serialises installation token refreshes, and the creation
	// of installation transports, across all installations: ghinstallation
	// writes fields of the shared AppsTransport while it refreshes, a data
	// race when two installations refresh at once.
	refreshMu sync.Mutex

	mu            sync.Mutex
	installations map[int64]*gh.Client // by installation id
	installIDs    map[string]int64     // by lower-cased Scope.Key()

	// redelivered spaces out redeliveries of the same failed GUID.
	redelivered redeliveries

	jitLimiter  *rate.Limiter // nil: no pacing
	onLimitWait func(string, time.Duration)

	groups runnerGroups // runnergroups.go
	// The cheap reconcile (bgcap.go, scan.go, sweep.go).
	bgWindow *window       // nil: no ceiling
	minute   time.Duration // BackgroundWindow: a minute, or less in tests
	scanMu   sync.Mutex
	scans    map[string]*scanState // by lower-cased Scope.Key()
	sweep    deliverySweep
	scopes   scopesCache
	budget   *budget     // budget.go
	views    runnerViews // runnerview.go
}

var _ provisioner.GitHub = (*Client)(nil)

// New checks cfg and returns a Client. It does not contact GitHub.
func New(cfg Config) (*Client, error) {
	// Token files usually end in a newline; anything else that is not
	// printable would fail later, in net/http, with a vaguer message.
	token := strings.TrimSpace(cfg.Token)
	if strings.ContainsFunc(token, func(r rune) bool { return r <= ' ' || r == 0x7f }) {
		return nil, errors.New("github: CRABBOX_GITHUB_TOKEN contains whitespace or control characters")
	}
	hasToken := token != ""
	hasApp := cfg.AppID != 0 || len(cfg.AppPrivateKey) > 0
	switch {
	case hasToken && hasApp:
		return nil, errors.New("github: set either CRABBOX_GITHUB_TOKEN or the GitHub App (CRABBOX_GITHUB_APP_ID with CRABBOX_GITHUB_APP_PRIVATE_KEY), not both")
	case !hasToken && !hasApp:
		return nil, errors.New("github: set CRABBOX_GITHUB_TOKEN or CRABBOX_GITHUB_APP_ID with CRABBOX_GITHUB_APP_PRIVATE_KEY")
	case hasApp && cfg.AppID == 0:
		return nil, errors.New("github: CRABBOX_GITHUB_APP_PRIVATE_KEY is set but CRABBOX_GITHUB_APP_ID is missing")
	case hasApp && cfg.AppID < 0:
		return nil, errors.New("github: CRABBOX_GITHUB_APP_ID must be a positive number")
	case hasApp && len(cfg.AppPrivateKey) == 0:
		return nil, errors.New("github: CRABBOX_GITHUB_APP_ID is set but CRABBOX_GITHUB_APP_PRIVATE_KEY is missing")
	}

	raw := cfg.APIURL
	if raw == "" {
		raw = DefaultAPIURL
	}
	base, err := ValidateBaseURL(raw)
	if err != nil {
		return nil, fmt.Errorf("github: CRABBOX_GITHUB_API_URL: %w", err)
	}
	if !strings.HasSuffix(base.Path, "/") {
		// go-github resolves paths relative to BaseURL and refuses one
		// without the trailing slash.
		base.Path += "/"
	}

	c := &Client{
		base:          base,
		groupID:       cfg.RunnerGroupID,
		installations: map[int64]*gh.Client{},
		installIDs:    map[string]int64{},
	}
	if c.groupID == 0 {
		c.groupID = 1
	}
	if perMin := cmp.Or(cfg.JITPerMinute, DefaultJITPerMinute); perMin > 0 {
		// A burst of a tenth of a minute's worth, then one at a time.
		c.jitLimiter = rate.NewLimiter(rate.Limit(float64(perMin)/60), max(perMin/10, 1))
	}
	c.onLimitWait = cfg.OnLimitWait
	c.groups.ttl, c.groups.log = cfg.RunnerGroupTTL, cfg.Logger
	if c.groupID < 0 {
		return nil, errors.New("github: runner group id must be positive")
	}
	if cfg.ReservePercent > 90 {
		return nil, errors.New("github: the budget reserve must be at most 90 percent")
	}
	c.budget = newBudget(cfg, base.Path)
	c.views.init()

	transport := http.DefaultTransport
	timeout := cfg.Timeout
	if cfg.HTTPClient != nil {
		if cfg.HTTPClient.Transport != nil {
			transport = cfg.HTTPClient.Transport
		}
		if timeout == 0 {
			timeout = cfg.HTTPClient.Timeout
		}
	}
	c.minute = cmp.Or(cfg.BackgroundWindow, time.Minute)
	c.scans = map[string]*scanState{}
	if n := cmp.Or(cfg.BackgroundPerMinute, DefaultBackgroundPerMinute); n > 0 {
		c.bgWindow = newWindow(n, c.minute)
	}
	if timeout <= 0 {
		timeout = DefaultTimeout
	}
	c.httpClient = &http.Client{
		Transport:     transport,
		Timeout:       timeout,
		CheckRedirect: apiurl.SameHostRedirects("github", base, 10),
	}

	if hasToken {
		c.tokenClient = c.newGitHubClient(&http.Client{
			Transport:     c.capped(tokenCredential, c.budget.transport(tokenCredential, transport)),
			Timeout:       timeout,
			CheckRedirect: c.httpClient.CheckRedirect,
		}).WithAuthToken(token)
		return c, nil
	}

	apps, err := ghinstallation.NewAppsTransport(c.capped(appCredential, c.budget.transport(appCredential, transport)), cfg.AppID, cfg.AppPrivateKey)
	if err != nil {
		// ghinstallation's message names the parse failure, never the key.
		return nil, fmt.Errorf("github: CRABBOX_GITHUB_APP_PRIVATE_KEY: %w", err)
	}
	// ghinstallation wants the base without the trailing slash, and uses it
	// only for POST /app/installations/{id}/access_tokens.
	apps.BaseURL = strings.TrimSuffix(base.String(), "/")
	c.apps = apps
	c.appClient = c.newGitHubClient(&http.Client{
		Transport:     apps,
		Timeout:       timeout,
		CheckRedirect: c.httpClient.CheckRedirect,
	})
	return c, nil
}

func (c *Client) newGitHubClient(hc *http.Client) *gh.Client {
	g := gh.NewClient(hc)
	u := *c.base
	g.BaseURL = &u
	g.UserAgent = "crabbox-runner"
	return g
}

// clientFor returns the go-github client that may act on the scope.
func (c *Client) clientFor(ctx context.Context, scope provisioner.Scope) (*gh.Client, error) {
	if c.tokenClient != nil {
		return c.tokenClient, nil
	}
	id := scope.InstallationID
	if id == 0 {
		var err error
		if id, err = c.installationID(ctx, scope); err != nil {
			return nil, err
		}
	}
	c.mu.Lock()
	g, ok := c.installations[id]
	c.mu.Unlock()
	if ok {
		return g, nil
	}
	// NewFromAppsTransport reads the fields a refresh writes.
	c.refreshMu.Lock()
	itr := ghinstallation.NewFromAppsTransport(c.apps, id)
	itr.BaseURL = c.apps.BaseURL
	c.refreshMu.Unlock()
	g = c.newGitHubClient(&http.Client{
		Transport: &installationTransport{
			itr:       itr,
			base:      c.capped(installationCredential(id), c.budget.transport(installationCredential(id), c.httpClient.Transport)),
			refreshMu: &c.refreshMu,
		},
		Timeout:       c.httpClient.Timeout,
		CheckRedirect: c.httpClient.CheckRedirect,
	})
	c.mu.Lock()
	defer c.mu.Unlock()
	if other, ok := c.installations[id]; ok {
		return other, nil // built concurrently; keep one token cache
	}
	c.installations[id] = g
	return g, nil
}

// installationID finds the App's installation on the scope's org or repo.
func (c *Client) installationID(ctx context.Context, scope provisioner.Scope) (int64, error) {
	key := strings.ToLower(scope.Key())
	c.mu.Lock()
	id, ok := c.installIDs[key]
	c.mu.Unlock()
	if ok {
		return id, nil
	}
	t, err := parseScope(scope)
	if err != nil {
		return 0, err
	}
	var inst *gh.Installation
	if t.repo != "" {
		inst, _, err = c.appClient.Apps.FindRepositoryInstallation(ctx, t.owner, t.repo)
	} else {
		inst, _, err = c.appClient.Apps.FindOrganizationInstallation(ctx, t.org)
	}
	if err != nil {
		if statusOf(err) == http.StatusNotFound {
			// Not provisioner.ErrNotFound: callers read that as "the
			// runner is gone", which it is not.
			return 0, &notInstalledError{scope: scope}
		}
		return 0, fmt.Errorf("github: find the App's installation on %s: %w", scope, err)
	}
	if inst.GetID() == 0 {
		return 0, fmt.Errorf("github: find the App's installation on %s: no id in the answer", scope)
	}
	c.mu.Lock()
	c.installIDs[key] = inst.GetID()
	c.mu.Unlock()
	return inst.GetID(), nil
}

// installationTransport adds an installation token to each request.
// ghinstallation.Transport does the same, but refreshes its token in a way
// that races with other installations (see Client.refreshMu); here the token
// is taken under that lock and the request is sent on the shared transport.
type installationTransport struct {
	itr       *ghinstallation.Transport
	base      http.RoundTripper
	refreshMu *sync.Mutex
}

func (t *installationTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	t.refreshMu.Lock()
	token, err := t.itr.Token(req.Context())
	t.refreshMu.Unlock()
	if err != nil {
		if req.Body != nil {
			req.Body.Close()
		}
		// ghinstallation leaves the failed response's body open.
		var he *ghinstallation.HTTPError
		if errors.As(err, &he) && he.Response != nil && he.Response.Body != nil {
			he.Response.Body.Close()
		}
		return nil, fmt.Errorf("github: installation token: %w", err)
	}
	r := req.Clone(req.Context())
	r.Header.Set("Authorization", "token "+token)
	return t.base.RoundTrip(r)
}

// target is a parsed Scope.
type target struct {
	org         string // org scope
	owner, repo string // repo scope
}

func parseScope(s provisioner.Scope) (target, error) {
	if s.Repo != "" {
		owner, repo, ok := strings.Cut(s.Repo, "/")
		if !ok || owner == "" || repo == "" || strings.Contains(repo, "/") {
			return target{}, fmt.Errorf("github: repository %q is not owner/name", s.Repo)
		}
		return target{owner: owner, repo: repo}, nil
	}
	if s.Org == "" || strings.Contains(s.Org, "/") {
		return target{}, fmt.Errorf("github: scope needs an org or an owner/name repository (got %q)", s.Org)
	}
	return target{org: s.Org}, nil
}

// statusOf returns the HTTP status of a go-github error, or 0.
func statusOf(err error) int {
	var er *gh.ErrorResponse
	if errors.As(err, &er) && er.Response != nil {
		return er.Response.StatusCode
	}
	var rl *gh.RateLimitError
	if errors.As(err, &rl) && rl.Response != nil {
		return rl.Response.StatusCode
	}
	var ab *gh.AbuseRateLimitError
	if errors.As(err, &ab) && ab.Response != nil {
		return ab.Response.StatusCode
	}
	return 0
}
