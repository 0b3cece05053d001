// Package githubtest is a fake GitHub for tests and for `crabbox-runner demo`.
// It serves, on loopback, the REST endpoints crabbox-runner uses for
// self-hosted runners (paths, status codes, bodies and headers as in
// reference/github-runners.md §3), GitHub App installation tokens (§4.2), and
// sends signed workflow_job webhooks (§1) for jobs that a test queues.
//
// Runners registered through generate-jitconfig can really run: the JIT
// config decodes to the files a runner needs, and RunnerTarball builds an
// actions/runner-shaped tarball whose run.sh connects back to this server
// over a small fake-only protocol under /_fake/runner/, takes one job, runs
// its bash script and exits. Jobs go to online, idle runners whose labels
// (GitHub's read-only defaults included) cover the job's and whose runner
// group may serve the job's repository (groups.go), exactly one job per
// JIT runner.
//
// For reconciliation it lists repositories, workflow runs (a run is the
// jobs sharing a RunID; see QueueRun) and their jobs, and it keeps the App
// webhook's delivery log, with redelivery (reference §2).
//
// Its REST API keeps GitHub's rate limits (ratelimit.go): a primary budget
// per credential with x-ratelimit-* headers, free 304s for a matching ETag,
// secondary limits, and counters (RequestStats) for tests and benchmarks.
//
// Everything is in memory and safe for concurrent use; webhooks are sent
// in order from one goroutine, with hooks to hold, reorder, duplicate or
// drop them.
package githubtest

import (
	"context"
	"crypto/rsa"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"time"
)

// Options configure a Server. The zero value is a server that accepts no
// credentials at all.
type Options struct {
	// Tokens are plain tokens (PATs) accepted for every org and repository.
	Tokens []string

	// AppID and AppPublicKey enable GitHub App mode: App JWTs signed by
	// the matching private key may look up installations and create
	// installation tokens.
	AppID        int64
	AppPublicKey *rsa.PublicKey
	// Installations maps an org login, or "owner/repo", to the App's
	// installation id there. An org installation covers the org's repos.
	Installations map[string]int64

	// The App itself as GET /app shows it (app.go): its slug and owner,
	// the permissions it asks for and the events it subscribes to.
	// AppSlug is "crabbox-runner" when empty, AppOwner the first org
	// installation's account (or "crabbox"), AppPermissions
	// DefaultAppPermissions when nil and AppEvents DefaultAppEvents when
	// nil.
	AppSlug        string
	AppOwner       string
	AppPermissions map[string]string
	AppEvents      []string
	// InstallationPermissions and InstallationEvents override, per
	// installation id, what the installation was granted (the App's
	// permissions and events when absent): an installation whose owner has
	// not accepted the App's new permissions. Installation tokens are held
	// to these permissions on the runner, run and job endpoints, with 403
	// and X-Accepted-GitHub-Permissions as GitHub answers.
	InstallationPermissions map[int64]map[string]string
	InstallationEvents      map[int64][]string
	// SuspendedInstallations are listed with suspended_at set and get no
	// installation tokens (403).
	SuspendedInstallations []int64
	// RejectJWT refuses every App JWT with 401, as GitHub does for a key
	// that was deleted from the App or an App id that is not the key's.
	RejectJWT bool
	// TokenScopes gives, per plain token, the X-OAuth-Scopes header GitHub
	// sends with every answer to a classic personal access token
	// ("repo, admin:org"). Tokens not listed get no header, as fine-grained
	// and installation tokens do.
	TokenScopes map[string]string

	// RunnerGroups are runner groups by id, each open to every private
	// repository (visibility all, public repositories not allowed: a new
	// group's defaults on GitHub). {1: "Default"} when both RunnerGroups
	// and Groups are empty.
	RunnerGroups map[int64]string
	// Groups are runner groups with all their settings (groups.go); a
	// RunnerGroups entry with the same id is ignored.
	Groups []RunnerGroup
	// RepoVisibility gives repositories ("owner/name") a visibility:
	// public, private or internal. Repositories not listed are private
	// (see SetRepoVisibility).
	RepoVisibility map[string]string
	// NoJITDefaultLabels registers JIT runners with only the labels asked
	// for, as CloudSnorkel/cdk-github-runners#906 reports; by default the
	// fake adds the read-only default labels (see jitDefaultLabels).
	NoJITDefaultLabels bool

	// OnlineTimeout: a runner is online if it polled within this time.
	// 10s when zero.
	OnlineTimeout time.Duration
	// LostRunnerTimeout: a running job whose runner has not renewed it
	// for this long fails with LostRunnerMessage (rerun.go).
	// DefaultLostRunnerTimeout when zero.
	LostRunnerTimeout time.Duration

	// RunnerVersion is the runner release that GET …/actions/runners/downloads
	// offers, served from the fake's own tarball; DefaultRunnerVersion when
	// empty.
	RunnerVersion string
	// Tarball makes the runner release realistic (tarball_real.go): its
	// size, the bandwidth it is served at, and how long its
	// installdependencies.sh takes. The zero value is today's small,
	// instant tarball.
	Tarball TarballOptions

	// RESTOmitsRunAttempt leaves run_attempt out of the REST job objects
	// (GET …/actions/jobs/{id} and a run's job listing): the OAS job
	// schema does not require it, while webhooks' workflow_job does
	// (@octokit/openapi-webhooks webhook-workflow-job-queued). A client
	// must read a missing attempt as the first.
	RESTOmitsRunAttempt bool
	// RateLimits are the REST API's primary and secondary limits
	// (ratelimit.go); the zero value is GitHub's.
	RateLimits RateLimits

	// HookID is the webhook's id (X-GitHub-Hook-ID); 1 when zero.
	HookID int64

	// Logf, when set, gets the timeline and each API request, one line at
	// a time. Secrets are never logged.
	Logf func(format string, args ...any)
	// OnEvent, when set, is called in order for every Event, from one
	// goroutine. It must not call Close.
	OnEvent func(Event)
}

// Server is a running fake GitHub. Create it with New, stop it with Close.
type Server struct {
	opts Options
	srv  *httptest.Server
	url  string
	hc   *http.Client // for webhook deliveries

	mu      sync.Mutex
	changed chan struct{} // closed and replaced on every state change

	// tarballGets counts the runner tarball downloads served, by
	// architecture (tarball.go).
	tarballGets map[string]int

	nextRunnerID, nextJobID, nextRunID, nextLabelID, nextRepoID int64

	runners map[int64]*runner // registered and not removed
	// registered names every runner registered, in order.
	registered []string
	retired    map[int64]*runner // ran their one job; their poll says exit
	labelIDs   map[string]int64  // by lower-cased label name
	repoIDs    map[string]int64  // by lower-cased owner/name or org login
	jobs       map[int64]*Job
	queue      []int64 // queued job ids, oldest first

	instTokens map[string]installationToken

	hookURL    string
	hookSecret []byte
	hold       bool
	held       []Delivery
	records    []Delivery

	deliveries *fifo[Delivery]
	events     *fifo[Event]

	recon reconState // runs.go, deliveries.go

	groups  []*RunnerGroup    // groups.go
	repoVis map[string]string // by lower-cased owner/name; private when absent
	rate    rateState         // ratelimit.go

	// ctx ends at Close; it aborts a webhook delivery in flight.
	ctx       context.Context
	cancel    context.CancelFunc
	closeOnce sync.Once
	wg        sync.WaitGroup
}

// New starts a fake GitHub on 127.0.0.1.
func New(opts Options) *Server {
	if opts.OnlineTimeout <= 0 {
		opts.OnlineTimeout = 10 * time.Second
	}
	if opts.LostRunnerTimeout <= 0 {
		opts.LostRunnerTimeout = DefaultLostRunnerTimeout
	}
	if opts.HookID == 0 {
		opts.HookID = 1
	}
	if opts.RunnerVersion == "" {
		opts.RunnerVersion = DefaultRunnerVersion
	}
	installs := make(map[string]int64, len(opts.Installations))
	for k, v := range opts.Installations {
		installs[strings.ToLower(k)] = v
	}
	opts.Installations = installs

	s := &Server{
		opts:         opts,
		changed:      make(chan struct{}),
		nextRunnerID: 1,
		nextJobID:    100001,
		nextRunID:    900001,
		nextLabelID:  1,
		nextRepoID:   5001,
		runners:      map[int64]*runner{},
		retired:      map[int64]*runner{},
		labelIDs:     map[string]int64{},
		repoIDs:      map[string]int64{},
		jobs:         map[int64]*Job{},
		instTokens:   map[string]installationToken{},
		deliveries:   newFIFO[Delivery](),
		events:       newFIFO[Event](),
		hc: &http.Client{
			Timeout: 10 * time.Second, // GitHub gives up on a hook after 10 s
			// GitHub does not follow redirects from a webhook URL.
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		},
	}

	s.groups = initGroups(opts)
	for repo, vis := range opts.RepoVisibility {
		switch vis {
		case RepoPublic, RepoPrivate, RepoInternal:
		default:
			panic(fmt.Sprintf("githubtest: Options.RepoVisibility[%q]: %q is not public, private or internal", repo, vis))
		}
		if s.repoVis == nil {
			s.repoVis = map[string]string{}
		}
		s.repoVis[strings.ToLower(repo)] = vis
		if s.recon.repos == nil {
			s.recon.repos = map[string]string{}
		}
		s.recon.repos[strings.ToLower(repo)] = repo
	}

	s.initRate()
	s.ctx, s.cancel = context.WithCancel(context.Background())

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		panic(fmt.Sprintf("githubtest: listen on 127.0.0.1: %v", err))
	}
	// Set before the server's goroutines start, which read it.
	s.url = "http://" + ln.Addr().String()
	s.srv = httptest.NewUnstartedServer(s.routes())
	s.srv.Listener.Close()
	s.srv.Listener = ln
	s.srv.Start()

	s.wg.Add(3)
	go func() { defer s.wg.Done(); s.deliveries.run(s.send) }()
	go func() { defer s.wg.Done(); s.events.run(s.publish) }()
	go func() { defer s.wg.Done(); s.sweep() }()
	return s
}

// URL is the server's base URL, http://127.0.0.1:PORT, usable both as the
// API URL and as the host of the runner tarball.
func (s *Server) URL() string { return s.url }

// Close stops the server. Deliveries not yet sent are dropped; events
// already recorded are still passed to OnEvent before Close returns.
func (s *Server) Close() {
	s.closeOnce.Do(func() {
		s.cancel()
		s.srv.CloseClientConnections()
		s.srv.Close()
		s.deliveries.close(false)
		s.events.close(true)
		s.wg.Wait()
	})
}

func (s *Server) routes() http.Handler {
	mux := http.NewServeMux()

	// GitHub App (JWT) endpoints.
	mux.HandleFunc("POST /app/installations/{id}/access_tokens", s.handleAccessToken)
	mux.HandleFunc("GET /orgs/{org}/installation", s.handleOrgInstallation)
	mux.HandleFunc("GET /repos/{owner}/{repo}/installation", s.handleRepoInstallation)

	// Self-hosted runners, org and repo level (reference §3.1).
	for _, prefix := range []string{"/orgs/{org}", "/repos/{owner}/{repo}"} {
		mux.HandleFunc("POST "+prefix+"/actions/runners/generate-jitconfig", s.scoped(s.handleGenerateJIT))
		mux.HandleFunc("GET "+prefix+"/actions/runners", s.scoped(s.handleListRunners))
		mux.HandleFunc("GET "+prefix+"/actions/runners/{runner_id}", s.scoped(s.handleGetRunner))
		mux.HandleFunc("DELETE "+prefix+"/actions/runners/{runner_id}", s.scoped(s.handleDeleteRunner))
		mux.HandleFunc("GET "+prefix+"/actions/runners/downloads", s.scoped(s.handleRunnerDownloads))
	}
	mux.HandleFunc("GET /repos/{owner}/{repo}/actions/jobs/{job_id}", s.scoped(s.handleGetJob))
	mux.HandleFunc("POST /repos/{owner}/{repo}/actions/jobs/{job_id}/rerun", s.scoped(s.handleRerunJob))

	// Runner groups (groups.go); organizations only.
	mux.HandleFunc("GET /orgs/{org}/actions/runner-groups", s.scoped(s.handleListGroups))
	mux.HandleFunc("GET /orgs/{org}/actions/runner-groups/{runner_group_id}", s.scoped(s.handleGetGroup))
	mux.HandleFunc("GET /orgs/{org}/actions/runner-groups/{runner_group_id}/repositories", s.scoped(s.handleGroupRepos))

	// The App and the credentials' own checks (doctor).
	mux.HandleFunc("GET /app", s.handleApp)
	mux.HandleFunc("GET /rate_limit", s.handleRateLimit)

	// Reconciliation and the App webhook's delivery log (reference §2).
	mux.HandleFunc("GET /app/installations", s.handleInstallations)
	mux.HandleFunc("GET /installation/repositories", s.handleInstallationRepos)
	mux.HandleFunc("GET /orgs/{org}/repos", s.scoped(s.handleOrgRepos))
	mux.HandleFunc("GET /repos/{owner}/{repo}/actions/runs", s.scoped(s.handleListRuns))
	mux.HandleFunc("GET /repos/{owner}/{repo}/actions/runs/{run_id}/jobs", s.scoped(s.handleRunJobs))
	mux.HandleFunc("GET /app/hook/deliveries", s.handleHookDeliveries)
	mux.HandleFunc("POST /app/hook/deliveries/{id}/attempts", s.handleRedeliverAttempt)

	// Fake-only: the runner protocol and the runner release download.
	mux.HandleFunc("POST /_fake/runner/{id}/poll", s.handlePoll)
	mux.HandleFunc("POST /_fake/runner/{id}/jobs/{job}/done", s.handleJobDone)
	mux.HandleFunc("POST /_fake/runner/{id}/jobs/{job}/renew", s.handleRenew)
	mux.HandleFunc("GET /_fake/runner-releases/{tag}/{file}", s.handleTarball)

	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		writeError(w, http.StatusNotFound, "Not Found")
	})
	return s.logRequests(mux)
}

// logRequests adds GitHub's usual response headers, holds API requests to
// the rate limits (ratelimit.go) and logs them. Runner polls are not
// logged: there are two a second per runner. The fake-only paths are not
// GitHub's REST API (a real runner talks to other services) and cost
// nothing.
func (s *Server) logRequests(mux *http.ServeMux) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("X-GitHub-Request-Id", fmt.Sprintf("FAKE:%d", time.Now().UnixNano()))
		h.Set("X-GitHub-Media-Type", "github.v3; format=json")
		sw := &statusWriter{ResponseWriter: w, status: http.StatusOK}
		if strings.HasPrefix(r.URL.Path, "/_fake/") {
			mux.ServeHTTP(sw, r)
		} else {
			if scopes, ok := s.tokenScopes(credentials(r)); ok {
				h.Set("X-OAuth-Scopes", scopes)
			}
			s.rateLimited(mux, sw, r)
		}
		if s.opts.Logf != nil && !strings.HasSuffix(r.URL.Path, "/poll") {
			s.opts.Logf("fake github: %s %s -> %d", r.Method, r.URL.RequestURI(), sw.status)
		}
	})
}

type statusWriter struct {
	http.ResponseWriter
	status int
}

func (w *statusWriter) WriteHeader(code int) {
	w.status = code
	w.ResponseWriter.WriteHeader(code)
}

// writeJSON writes v with GitHub's content type.
func writeJSON(w http.ResponseWriter, status int, v any) {
	body, err := json.Marshal(v)
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.WriteHeader(status)
	w.Write(body)
}

// writeError writes GitHub's error body: {"message", "documentation_url"}.
func writeError(w http.ResponseWriter, status int, message string) {
	writeJSON(w, status, map[string]any{
		"message":           message,
		"documentation_url": "https://docs.github.com/rest",
		"status":            fmt.Sprint(status),
	})
}

// notifyLocked wakes everyone waiting for a change. Call with s.mu held.
func (s *Server) notifyLocked() {
	close(s.changed)
	s.changed = make(chan struct{})
}

// sweep marks runners offline once they stop polling, and fails the jobs
// of runners that stopped renewing them (rerun.go).
func (s *Server) sweep() {
	every := min(max(min(s.opts.OnlineTimeout, s.opts.LostRunnerTimeout)/5, 10*time.Millisecond), time.Second)
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-s.ctx.Done():
			return
		case now := <-t.C:
			s.mu.Lock()
			for _, id := range sortedKeys(s.runners) {
				rn := s.runners[id]
				if rn.reportedOnline && !s.onlineLocked(rn, now) {
					rn.reportedOnline = false
					s.emitLocked(Event{Kind: EventRunnerOffline, RunnerID: rn.id, RunnerName: rn.name, Scope: rn.scope.String()})
					s.notifyLocked()
				}
			}
			if s.failLostLocked(now) {
				s.notifyLocked()
			}
			s.mu.Unlock()
		}
	}
}

// fifo is an unbounded queue consumed in order by one goroutine (run).
type fifo[T any] struct {
	mu     sync.Mutex
	cond   *sync.Cond
	items  []T
	busy   bool
	closed bool
}

func newFIFO[T any]() *fifo[T] {
	q := &fifo[T]{}
	q.cond = sync.NewCond(&q.mu)
	return q
}

func (q *fifo[T]) push(v T) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.closed {
		return
	}
	q.items = append(q.items, v)
	q.cond.Broadcast()
}

// run calls fn for each item in order until the queue is closed and empty.
func (q *fifo[T]) run(fn func(T)) {
	for {
		q.mu.Lock()
		for len(q.items) == 0 && !q.closed {
			q.cond.Wait()
		}
		if len(q.items) == 0 {
			q.mu.Unlock()
			return
		}
		v := q.items[0]
		var zero T
		q.items[0] = zero
		q.items = q.items[1:]
		q.busy = true
		q.mu.Unlock()

		fn(v)

		q.mu.Lock()
		q.busy = false
		q.cond.Broadcast()
		q.mu.Unlock()
	}
}

// close stops accepting items; with drain, the ones queued are still run.
func (q *fifo[T]) close(drain bool) {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.closed = true
	if !drain {
		q.items = nil
	}
	q.cond.Broadcast()
}
