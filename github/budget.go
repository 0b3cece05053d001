package github

// The request budget (issue 13): every request this client sends goes
// through budgetTransport, under go-github, which
//
//   - counts it by route and outcome (Observer.Request) and keeps the last
//     x-ratelimit-* headers of each credential (Observer.Rate);
//   - makes GETs conditional: a cached answer's ETag goes out as
//     If-None-Match, and GitHub's 304, which costs nothing against the
//     primary limit, is turned back into the cached 200 for go-github;
//   - refuses calls locally, with a *provisioner.BudgetError, while the
//     credential is exhausted (until x-ratelimit-reset), backing off after
//     a secondary limit (retry-after; else at least a minute, doubling),
//     and, for background calls (provisioner.Background), while the
//     remaining budget is below the reserve kept for calls that serve jobs;
//   - honours x-poll-interval: a GET asked again sooner is answered from
//     the cache.
//
// Sources: docs.github.com "Rate limits for the REST API" and "Best
// practices for using the REST API"; reference/github-runners.md §4.3.
//
// go-github v62 keeps rate state of its own and refuses every call locally
// after an answer with x-ratelimit-remaining 0 (checkRateLimitBeforeDo,
// with no exported way around it), generate-jitconfig included. The
// budget here is the one that decides: answers are marked X-From-Cache,
// which go-github reads as "do not record this rate".

import (
	"bytes"
	"container/list"
	"io"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/crabbox/crabbox-runner/provisioner"
)

// Outcomes of a request, the values of Observer.Request's outcome.
const (
	OutcomeOK               = "ok"
	OutcomeNotModified      = "not_modified"
	OutcomeRateLimited      = "rate_limited"
	OutcomeSecondaryLimited = "secondary_limited"
	OutcomeClientError      = "client_error"
	OutcomeServerError      = "server_error"
	OutcomeNetworkError     = "network_error"
)

// Observer is told about the requests this client sends. It must be fast
// and safe for concurrent use. Credentials are "installation:ID", "token"
// or "app"; endpoints are routes ("GET /orgs/{org}/actions/runners").
type Observer interface {
	// Request is one request sent to GitHub, with its outcome.
	Request(endpoint, outcome string)
	// Rate is a credential's budget as its last answer's headers gave it.
	Rate(credential string, limit, remaining int, reset time.Time)
	// Refused is a call not sent because of the budget: reason "reserve"
	// (a background call deferred), "exhausted" or "secondary limit".
	Refused(credential, endpoint, reason string)
}

type nopObserver struct{}

func (nopObserver) Request(string, string)           {}
func (nopObserver) Rate(string, int, int, time.Time) {}
func (nopObserver) Refused(string, string, string)   {}

// DefaultReservePercent is the share of a credential's budget kept for the
// calls that serve jobs: below it, background calls are deferred.
const DefaultReservePercent = 10

// minSecondaryBackoff is the docs' "wait for at least one minute" after a
// secondary limit without retry-after; maxSecondaryBackoff caps the
// doubling that follows.
const (
	minSecondaryBackoff = time.Minute
	maxSecondaryBackoff = 16 * time.Minute
)

// Bounds of the ETag cache.
const (
	etagCacheEntries  = 4096
	etagCacheMaxBody  = 1 << 20
	etagCacheMaxBytes = 64 << 20
)

// budget is the request budget of every credential of one Client.
type budget struct {
	now        func() time.Time
	obs        Observer
	reservePct int
	logf       func(format string, args ...any)
	// prefix is the API base's path ("/" or "/api/v3/"), cut off before
	// a path is matched to its route.
	prefix string

	mu     sync.Mutex
	creds  map[string]*credBudget
	cache  etagCache
	warned map[string]bool // odd headers already logged, by credential
}

// credBudget is what is known of one credential's budget.
type credBudget struct {
	known            bool // rate headers seen
	limit, remaining int
	reset            time.Time
	backoffUntil     time.Time // secondary limit
	secondaryStreak  int
	deferredLogged   time.Time // the reset of the window a deferral was logged in
	// granted are registrations RegistrationWait let go ahead whose JIT
	// call has not been sent yet (each expires at its time): their hosts
	// are being rented, and the budget must still have room for them.
	granted   []time.Time
	seen      time.Time  // when the budget was last told
	refreshMu sync.Mutex // one GET /rate_limit at a time
}

// grantTTL is how long a granted registration is held for its JIT call: a
// host's boot, at most.
const grantTTL = 15 * time.Minute

func newBudget(cfg Config, prefix string) *budget {
	b := &budget{
		now:        cfg.Now,
		obs:        cfg.Observer,
		reservePct: cfg.ReservePercent,
		logf:       cfg.Logf,
		prefix:     "/" + strings.Trim(prefix, "/"),
		creds:      map[string]*credBudget{},
		warned:     map[string]bool{},
	}
	b.cache.init()
	if b.now == nil {
		b.now = time.Now
	}
	if b.obs == nil {
		b.obs = nopObserver{}
	}
	if b.reservePct == 0 {
		b.reservePct = DefaultReservePercent
	}
	if b.logf == nil {
		b.logf = func(string, ...any) {}
	}
	return b
}

// transport is the budget layer for one credential, over base.
func (b *budget) transport(credential string, base http.RoundTripper) http.RoundTripper {
	return &budgetTransport{b: b, cred: credential, base: base}
}

type budgetTransport struct {
	b    *budget
	cred string
	base http.RoundTripper
}

func (b *budget) route(req *http.Request) string {
	p := req.URL.Path
	if b.prefix != "/" {
		p = strings.TrimPrefix(p, b.prefix)
	}
	return route(req.Method, p)
}

// reserve is the part of limit kept for the calls that serve jobs.
func (b *budget) reserve(limit int) int {
	if b.reservePct < 0 {
		return 0
	}
	return (limit*b.reservePct + 99) / 100
}

// refusal says why a call may not be sent now, or nil.
func (b *budget) refusalLocked(cred, endpoint string, background bool, now time.Time) *provisioner.BudgetError {
	cs := b.creds[cred]
	if cs == nil {
		return nil
	}
	if now.Before(cs.backoffUntil) {
		return &provisioner.BudgetError{Credential: cred, Endpoint: endpoint, Until: cs.backoffUntil, Reason: "secondary limit"}
	}
	if !cs.known || !now.Before(cs.reset) {
		return nil // a new window has begun
	}
	if cs.remaining <= 0 {
		return &provisioner.BudgetError{Credential: cred, Endpoint: endpoint, Until: cs.reset, Reason: "exhausted"}
	}
	if background && cs.remaining < b.reserve(cs.limit) {
		return &provisioner.BudgetError{Credential: cred, Endpoint: endpoint, Until: cs.reset, Reason: "reserve", Deferred: true}
	}
	return nil
}

// wait is how long until a call that serves a job, needing need requests,
// can be made with the credential: 0 when now.
func (b *budget) wait(cred string, need int) time.Duration {
	now := b.now()
	b.mu.Lock()
	defer b.mu.Unlock()
	cs := b.creds[cred]
	if cs == nil {
		return 0
	}
	var until time.Time
	if now.Before(cs.backoffUntil) {
		until = cs.backoffUntil
	}
	cs.granted = slices.DeleteFunc(cs.granted, func(t time.Time) bool { return !now.Before(t) })
	if cs.known && now.Before(cs.reset) && cs.remaining-len(cs.granted)*need < need && cs.reset.After(until) {
		// Exhausted, or will be before this lease's registration: the
		// leases already let through come first.
		until = cs.reset
	}
	if until.IsZero() {
		if cs.known && now.Before(cs.reset) {
			cs.granted = append(cs.granted, now.Add(grantTTL))
		}
		return 0
	}
	return until.Sub(now)
}

// registering notes that a registration is being sent: one grant is used.
func (b *budget) registeringLocked(cred string) {
	if cs := b.creds[cred]; cs != nil && len(cs.granted) > 0 {
		cs.granted = cs.granted[1:]
	}
}

func (t *budgetTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	b := t.b
	endpoint := b.route(req)
	free := endpoint == "GET /rate_limit" // costs nothing, and tells the budget
	now := b.now()
	isGet := req.Method == http.MethodGet
	key := t.cred + " " + req.Header.Get("Accept") + " " + req.URL.String()

	b.mu.Lock()
	if !free {
		if refused := b.refusalLocked(t.cred, endpoint, provisioner.IsBackground(req.Context()), now); refused != nil {
			logIt := false
			if cs := b.creds[t.cred]; refused.Deferred && !cs.deferredLogged.Equal(cs.reset) {
				cs.deferredLogged, logIt = cs.reset, true
			}
			b.mu.Unlock()
			closeBody(req)
			if logIt {
				b.logf("github: %s budget below its reserve; background calls deferred until %s", t.cred, refused.Until.UTC().Format(time.RFC3339))
			}
			b.obs.Refused(t.cred, endpoint, refused.Reason)
			return nil, refused
		}
	}
	if strings.HasSuffix(endpoint, "/generate-jitconfig") {
		b.registeringLocked(t.cred)
	}
	var cached *etagEntry
	if isGet {
		cached = b.cache.get(key)
		if cached != nil && now.Before(cached.pollAfter) {
			// x-poll-interval: GitHub asked us not to poll sooner.
			b.mu.Unlock()
			closeBody(req)
			return cached.response(req, nil), nil
		}
	}
	b.mu.Unlock()

	if cached != nil {
		req = req.Clone(req.Context())
		req.Header.Set("If-None-Match", cached.etag)
	}
	resp, err := t.base.RoundTrip(req)
	if err != nil {
		b.obs.Request(endpoint, OutcomeNetworkError)
		return nil, err
	}
	b.noteRate(t.cred, resp.Header)

	outcome := OutcomeOK
	switch code := resp.StatusCode; {
	case code == http.StatusNotModified && cached != nil:
		outcome = OutcomeNotModified
		resp.Body.Close()
		b.mu.Lock()
		b.noteSuccessLocked(t.cred)
		cached.pollAfter = pollAfter(resp.Header, now)
		b.mu.Unlock()
		resp = cached.response(req, resp.Header)
	case code == http.StatusForbidden || code == http.StatusTooManyRequests:
		var refused *provisioner.BudgetError
		outcome, refused = b.noteRefusal(t.cred, resp, now)
		if refused != nil {
			// go-github is not shown the refusal: it would keep a state
			// of its own (v62 even reads a secondary limit without
			// retry-after as "until x-ratelimit-reset", an hour).
			resp.Body.Close()
			refused.Endpoint, refused.Status = endpoint, code
			b.obs.Request(endpoint, outcome)
			return nil, refused
		}
	case code >= 500:
		outcome = OutcomeServerError
	case code >= 400:
		outcome = OutcomeClientError
	default:
		b.mu.Lock()
		b.noteSuccessLocked(t.cred)
		b.mu.Unlock()
		if isGet && code == http.StatusOK && resp.Header.Get("ETag") != "" {
			resp = b.store(key, resp, now)
		}
	}
	b.obs.Request(endpoint, outcome)
	resp.Header.Set("X-From-Cache", "1") // see the file comment
	return resp, nil
}

// noteRate records a credential's rate-limit headers. Missing headers
// leave what is known; odd ones are logged once and ignored.
func (b *budget) noteRate(cred string, h http.Header) {
	lim, rem, rst := h.Get("X-RateLimit-Limit"), h.Get("X-RateLimit-Remaining"), h.Get("X-RateLimit-Reset")
	if lim == "" && rem == "" && rst == "" {
		return
	}
	if res := h.Get("X-RateLimit-Resource"); res != "" && res != "core" {
		return // another budget (search, graphql); not this client's
	}
	limit, err1 := strconv.Atoi(lim)
	remaining, err2 := strconv.Atoi(rem)
	resetUnix, err3 := strconv.ParseInt(rst, 10, 64)
	if err1 != nil || err2 != nil || err3 != nil || limit <= 0 || remaining < 0 || remaining > limit || resetUnix <= 0 {
		b.mu.Lock()
		first := !b.warned[cred]
		b.warned[cred] = true
		b.mu.Unlock()
		if first {
			b.logf("github: odd rate-limit headers for %s (limit %q, remaining %q, reset %q); ignored, the budget stays as last known", cred, lim, rem, rst)
		}
		return
	}
	b.setRate(cred, limit, remaining, time.Unix(resetUnix, 0))
}

// setRate records a credential's budget.
func (b *budget) setRate(cred string, limit, remaining int, reset time.Time) {
	if limit <= 0 || remaining < 0 || remaining > limit || reset.IsZero() {
		return
	}
	b.mu.Lock()
	cs := b.credLocked(cred)
	cs.known, cs.limit, cs.remaining, cs.reset, cs.seen = true, limit, remaining, reset, b.now()
	b.mu.Unlock()
	b.obs.Rate(cred, limit, remaining, reset)
}

// stale reports whether what is known of the credential's budget is older
// than maxAge, or from a window that has ended, or nothing.
func (b *budget) stale(cred string, maxAge time.Duration) bool {
	now := b.now()
	b.mu.Lock()
	defer b.mu.Unlock()
	cs := b.creds[cred]
	return cs == nil || !cs.known || now.Sub(cs.seen) > maxAge || !now.Before(cs.reset)
}

// refreshLock serialises the budget checks of one credential.
func (b *budget) refreshLock(cred string) *sync.Mutex {
	b.mu.Lock()
	defer b.mu.Unlock()
	cs := b.credLocked(cred)
	return &cs.refreshMu
}

func (b *budget) credLocked(cred string) *credBudget {
	cs := b.creds[cred]
	if cs == nil {
		cs = &credBudget{}
		b.creds[cred] = cs
	}
	return cs
}

func (b *budget) noteSuccessLocked(cred string) {
	if cs := b.creds[cred]; cs != nil {
		cs.secondaryStreak = 0
	}
}

// noteRefusal reads a 403/429: the primary limit (remaining 0), a secondary
// limit (with the error to return), or a plain refusal (permissions).
func (b *budget) noteRefusal(cred string, resp *http.Response, now time.Time) (string, *provisioner.BudgetError) {
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	resp.Body.Close()
	resp.Body = io.NopCloser(bytes.NewReader(body))
	retryAfter, hasRetry := parseRetryAfter(resp.Header.Get("Retry-After"), now)
	lower := strings.ToLower(string(body))
	primary := resp.Header.Get("X-RateLimit-Remaining") == "0"
	secondary := hasRetry || strings.Contains(lower, "secondary rate limit") || strings.Contains(lower, "abuse") ||
		(resp.StatusCode == http.StatusTooManyRequests && !primary)
	b.mu.Lock()
	defer b.mu.Unlock()
	cs := b.credLocked(cred)
	switch {
	case primary && !hasRetry:
		// noteRate recorded remaining 0 and the reset; without a reset
		// header, wait a minute rather than hammer.
		until := cs.reset
		if !cs.known || !now.Before(cs.reset) {
			cs.backoffUntil = now.Add(minSecondaryBackoff)
			until = cs.backoffUntil
		}
		return OutcomeRateLimited, &provisioner.BudgetError{Credential: cred, Until: until, Reason: "exhausted"}
	case secondary || primary:
		// "If the retry-after response header is present, you should not
		// retry your request until after that many seconds has elapsed.
		// … Otherwise, wait for at least one minute before retrying. If
		// your request continues to fail due to a secondary rate limit,
		// wait for an exponentially increasing amount of time."
		wait := retryAfter
		if !hasRetry {
			wait = min(minSecondaryBackoff<<min(cs.secondaryStreak, 4), maxSecondaryBackoff)
		}
		cs.secondaryStreak++
		cs.backoffUntil = now.Add(wait)
		if primary {
			return OutcomeRateLimited, &provisioner.BudgetError{Credential: cred, Until: cs.backoffUntil, Reason: "exhausted"}
		}
		return OutcomeSecondaryLimited, &provisioner.BudgetError{Credential: cred, Until: cs.backoffUntil, Reason: "secondary limit"}
	}
	return OutcomeClientError, nil
}

// parseRetryAfter reads retry-after: seconds, or an HTTP date.
func parseRetryAfter(v string, now time.Time) (time.Duration, bool) {
	v = strings.TrimSpace(v)
	if v == "" {
		return 0, false
	}
	if n, err := strconv.Atoi(v); err == nil && n >= 0 {
		return time.Duration(n) * time.Second, true
	}
	if t, err := http.ParseTime(v); err == nil {
		return max(t.Sub(now), 0), true
	}
	return 0, false
}

func pollAfter(h http.Header, now time.Time) time.Time {
	if n, err := strconv.Atoi(h.Get("X-Poll-Interval")); err == nil && n > 0 {
		return now.Add(time.Duration(n) * time.Second)
	}
	return time.Time{}
}

// store keeps a 200 answer with an ETag and returns it re-readable.
func (b *budget) store(key string, resp *http.Response, now time.Time) *http.Response {
	body, err := io.ReadAll(io.LimitReader(resp.Body, etagCacheMaxBody+1))
	resp.Body.Close()
	if err != nil {
		resp.Body = io.NopCloser(io.MultiReader(bytes.NewReader(body), errReader{err}))
		return resp
	}
	resp.Body = io.NopCloser(bytes.NewReader(body))
	if len(body) > etagCacheMaxBody {
		return resp
	}
	e := &etagEntry{etag: resp.Header.Get("ETag"), status: resp.StatusCode, header: resp.Header.Clone(), body: body, pollAfter: pollAfter(resp.Header, now)}
	b.mu.Lock()
	b.cache.put(key, e)
	b.mu.Unlock()
	return resp
}

type errReader struct{ err error }

func (r errReader) Read([]byte) (int, error) { return 0, r.err }

func closeBody(req *http.Request) {
	if req.Body != nil {
		req.Body.Close()
	}
}

// etagEntry is a cached 200 answer.
type etagEntry struct {
	key       string
	etag      string
	status    int
	header    http.Header
	body      []byte
	pollAfter time.Time
}

// response rebuilds the cached answer; fresh (a 304's headers) updates its
// rate-limit headers.
func (e *etagEntry) response(req *http.Request, fresh http.Header) *http.Response {
	h := e.header.Clone()
	for k, v := range fresh {
		if strings.HasPrefix(strings.ToLower(k), "x-ratelimit-") || k == "Date" || k == "X-Github-Request-Id" {
			h[k] = v
		}
	}
	h.Set("X-From-Cache", "1")
	return &http.Response{
		Status:        strconv.Itoa(e.status) + " " + http.StatusText(e.status),
		StatusCode:    e.status,
		Proto:         "HTTP/1.1",
		ProtoMajor:    1,
		ProtoMinor:    1,
		Header:        h,
		Body:          io.NopCloser(bytes.NewReader(e.body)),
		ContentLength: int64(len(e.body)),
		Request:       req,
	}
}

// etagCache is a least-recently-used map of answers, bounded in entries
// and bytes. Callers hold budget.mu.
type etagCache struct {
	order *list.List // front: most recent; values *etagEntry
	byKey map[string]*list.Element
	bytes int
}

func (c *etagCache) init() {
	c.order = list.New()
	c.byKey = map[string]*list.Element{}
}

func (c *etagCache) get(key string) *etagEntry {
	el, ok := c.byKey[key]
	if !ok {
		return nil
	}
	c.order.MoveToFront(el)
	return el.Value.(*etagEntry)
}

func (c *etagCache) put(key string, e *etagEntry) {
	e.key = key
	if el, ok := c.byKey[key]; ok {
		c.bytes -= len(el.Value.(*etagEntry).body)
		el.Value = e
		c.order.MoveToFront(el)
	} else {
		c.byKey[key] = c.order.PushFront(e)
	}
	c.bytes += len(e.body)
	for c.order.Len() > etagCacheEntries || c.bytes > etagCacheMaxBytes {
		last := c.order.Back()
		old := last.Value.(*etagEntry)
		c.order.Remove(last)
		delete(c.byKey, old.key)
		c.bytes -= len(old.body)
	}
}

// len is the number of entries, for tests.
func (c *etagCache) len() int { return c.order.Len() }
