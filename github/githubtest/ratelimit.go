package githubtest

// The REST API's rate limits and conditional requests, as GitHub applies
// them. Sources: docs.github.com "Rate limits for the REST API"
// (rest/using-the-rest-api/rate-limits-for-the-rest-api), "Best practices for
// using the REST API" (…/best-practices-for-using-the-rest-api, "Use
// conditional requests if appropriate"), and reference/github-runners.md §4.3.
//
// Primary limit: a budget of requests per credential per window (an hour),
// counted from the window's first request; x-ratelimit-* headers on every
// answer; at 0 remaining, 403 "API rate limit exceeded …" until
// x-ratelimit-reset, then a new window. GET /rate_limit is free.
//
// Conditional requests: every 200 answer to a GET carries an ETag; a GET
// whose If-None-Match matches gets 304 with no body and costs nothing
// against the primary limit ("a 304 … does not count against your primary
// rate limit if … correctly authorized").
//
// Secondary limits: at most 100 concurrent requests and 900 points a minute
// per endpoint (GET/HEAD/OPTIONS 1 point, POST/PATCH/PUT/DELETE 5) per
// credential; over them 403 (or 429) with retry-after.

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"maps"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"
)

// RateLimits configure the fake's rate limits. The zero value is GitHub's
// own figures; tests tighten them (a small budget, a short window) to reach
// exhaustion in seconds.
type RateLimits struct {
	// Installation is an App installation's budget per window: 5,000 when
	// zero (the docs' minimum for an installation; GitHub raises it with
	// repositories and users up to 12,500, 15,000 on Enterprise Cloud).
	// PerInstallation overrides it for some installations.
	Installation    int
	PerInstallation map[int64]int
	// Token is a plain token's (PAT's) budget per window: 5,000 when zero
	// ("all of these requests count towards your personal rate limit of
	// 5,000 requests per hour").
	Token int
	// App is the budget of requests made with the App's JWT (installation
	// look-ups, installation tokens, hook deliveries), counted apart from
	// every installation's; 5,000 when zero. GitHub documents no figure
	// for JWT requests; the fake takes the smallest documented budget.
	App int
	// Unauthenticated is the budget of requests without valid credentials
	// (GitHub counts them per IP address: 60 an hour); 60 when zero.
	Unauthenticated int
	// Window is the primary limit's window: an hour when zero.
	Window time.Duration

	// PointsPerMinute is the secondary limit per credential and endpoint:
	// 900 when zero. Concurrent is the secondary limit on requests in
	// flight per credential: 100 when zero. SecondaryStatus is what a
	// refusal answers, 403 when zero (the docs: "403 or 429"), and
	// SecondaryRetryAfter its retry-after, 60 s when zero.
	PointsPerMinute     int
	Concurrent          int
	SecondaryStatus     int
	SecondaryRetryAfter time.Duration

	// Now is the clock the windows run on; time.Now when nil.
	Now func() time.Time
}

// rateDocsURL is what GitHub's rate-limit refusals link to; go-github tells
// a secondary refusal by the URL's "secondary-rate-limits" suffix.
const rateDocsURL = "https://docs.github.com/rest/using-the-rest-api/rate-limits-for-the-rest-api"

func (o *RateLimits) setDefaults() {
	def := func(v *int, d int) {
		if *v <= 0 {
			*v = d
		}
	}
	def(&o.Installation, 5000)
	def(&o.Token, 5000)
	def(&o.App, 5000)
	def(&o.Unauthenticated, 60)
	def(&o.PointsPerMinute, 900)
	def(&o.Concurrent, 100)
	def(&o.SecondaryStatus, http.StatusForbidden)
	if o.Window <= 0 {
		o.Window = time.Hour
	}
	if o.SecondaryRetryAfter == 0 {
		o.SecondaryRetryAfter = time.Minute
	}
	if o.Now == nil {
		o.Now = time.Now
	}
}

// RequestCounts split the API requests of a credential or an endpoint.
// Counted requests used the primary budget (refused ones never do, nor
// does GET /rate_limit, which is Uncounted); NotModified are the free 304
// answers; Refused were answered 403/429 for a primary (RefusedPrimary) or
// a secondary limit.
type RequestCounts struct {
	Counted, NotModified, Refused, RefusedPrimary, Uncounted int
}

// Total is every request.
func (c RequestCounts) Total() int { return c.Counted + c.NotModified + c.Refused + c.Uncounted }

func (c *RequestCounts) add(o RequestCounts) {
	c.Counted += o.Counted
	c.NotModified += o.NotModified
	c.Refused += o.Refused
	c.RefusedPrimary += o.RefusedPrimary
	c.Uncounted += o.Uncounted
}

// RequestStats are the API requests the server answered since it started
// or since ResetRequestStats. Credentials are named "installation:ID",
// "token:N" (the N-th of Options.Tokens, from 1), "app" (JWT) and
// "unauthenticated"; endpoints by their route, "GET
// /repos/{owner}/{repo}/actions/runs" ("other" for unknown paths).
type RequestStats struct {
	Total        RequestCounts
	ByCredential map[string]RequestCounts
	ByEndpoint   map[string]RequestCounts
	// ByCredentialEndpoint is keyed "credential endpoint".
	ByCredentialEndpoint map[string]RequestCounts
}

type rateWindow struct {
	reset time.Time
	used  int
}

type pointsWindow struct {
	start  time.Time
	points int
}

type secondaryTrip struct {
	status     int
	retryAfter time.Duration
}

type rateState struct {
	mu       sync.Mutex
	windows  map[string]*rateWindow   // by credential
	points   map[string]*pointsWindow // by credential + endpoint
	inflight map[string]int           // by credential
	trips    []secondaryTrip
	stats    map[[2]string]RequestCounts // by credential, endpoint
}

// credential names who a request is for the rate limits, and its budget.
func (s *Server) credential(r *http.Request) (string, int) {
	rl := &s.opts.RateLimits
	tok := credentials(r)
	if tok == "" {
		return "unauthenticated", rl.Unauthenticated
	}
	for i, t := range s.opts.Tokens {
		if sameToken(t, tok) {
			return "token:" + strconv.Itoa(i+1), rl.Token
		}
	}
	s.mu.Lock()
	it, ok := s.instTokens[tok]
	s.mu.Unlock()
	if ok && rl.Now().Before(it.expires) {
		limit := rl.Installation
		if l, ok := rl.PerInstallation[it.installationID]; ok && l > 0 {
			limit = l
		}
		return "installation:" + strconv.FormatInt(it.installationID, 10), limit
	}
	if strings.HasPrefix(tok, "eyJ") && strings.Count(tok, ".") == 2 {
		return "app", rl.App
	}
	return "unauthenticated", rl.Unauthenticated
}

// windowLocked is the credential's current primary window; a window that
// has ended gives way to a new one.
func (st *rateState) windowLocked(cred string, now time.Time, length time.Duration) *rateWindow {
	w := st.windows[cred]
	if w == nil || !now.Before(w.reset) {
		// x-ratelimit-reset is in epoch seconds: the window ends on one.
		reset := now.Add(length)
		if r := reset.Truncate(time.Second); !r.Equal(reset) {
			reset = r.Add(time.Second)
		}
		w = &rateWindow{reset: reset}
		st.windows[cred] = w
	}
	return w
}

func (st *rateState) countLocked(cred, endpoint string, c RequestCounts) {
	k := [2]string{cred, endpoint}
	v := st.stats[k]
	v.add(c)
	st.stats[k] = v
}

// requestCost is a request's secondary-limit points (docs: "Most REST API
// GET, HEAD, and OPTIONS requests are worth 1 point. Most REST API POST,
// PATCH, PUT, or DELETE requests are worth 5 points").
func requestCost(method string) int {
	switch method {
	case http.MethodGet, http.MethodHead, http.MethodOptions:
		return 1
	}
	return 5
}

// rateLimited answers an API request within the rate limits: it may refuse
// it (primary or secondary), else runs next with the answer buffered, turns
// a matching conditional GET into 304, and sets the x-ratelimit headers.
func (s *Server) rateLimited(mux *http.ServeMux, w http.ResponseWriter, r *http.Request) {
	rl := &s.opts.RateLimits
	st := &s.rate
	now := rl.Now()
	cred, limit := s.credential(r)
	_, endpoint := mux.Handler(r)
	if endpoint == "" || endpoint == "/" {
		endpoint = "other"
	}
	// "Checking the status of your rate limit … does not count against
	// your primary rate limit."
	free := endpoint == "GET /rate_limit"

	st.mu.Lock()
	win := st.windowLocked(cred, now, rl.Window)
	if !free && win.used >= limit {
		st.countLocked(cred, endpoint, RequestCounts{Refused: 1, RefusedPrimary: 1})
		rateHeaders(w.Header(), limit, win)
		st.mu.Unlock()
		writeJSON(w, http.StatusForbidden, map[string]any{
			"message":           primaryMessage(cred),
			"documentation_url": rateDocsURL + "#about-the-primary-rate-limit",
		})
		return
	}
	var trip *secondaryTrip
	if len(st.trips) > 0 && !free {
		t := st.trips[0]
		st.trips = st.trips[1:]
		trip = &t
	}
	pk := cred + " " + endpoint
	pw := st.points[pk]
	if pw == nil || now.Sub(pw.start) >= time.Minute {
		pw = &pointsWindow{start: now}
		st.points[pk] = pw
	}
	cost := requestCost(r.Method)
	switch {
	case trip != nil:
	case st.inflight[cred] >= rl.Concurrent:
		trip = &secondaryTrip{status: rl.SecondaryStatus, retryAfter: rl.SecondaryRetryAfter}
	case pw.points+cost > rl.PointsPerMinute:
		// Wait for the endpoint's minute to end.
		trip = &secondaryTrip{status: rl.SecondaryStatus, retryAfter: max(pw.start.Add(time.Minute).Sub(now), time.Second)}
	}
	pw.points += cost
	if !free {
		// Every request is charged, a refused one too: GitHub does not
		// say it is not, so the fake takes the stricter reading.
		win.used++
	}
	if trip != nil {
		st.countLocked(cred, endpoint, RequestCounts{Refused: 1})
		rateHeaders(w.Header(), limit, win)
		st.mu.Unlock()
		if trip.retryAfter > 0 {
			w.Header().Set("Retry-After", strconv.Itoa(int((trip.retryAfter+time.Second-1)/time.Second)))
		}
		status := trip.status
		if status == 0 {
			status = rl.SecondaryStatus
		}
		writeJSON(w, status, map[string]any{
			"message":           "You have exceeded a secondary rate limit. Please wait a few minutes before you try again. If you reach out to GitHub Support for help, please include the request ID " + w.Header().Get("X-GitHub-Request-Id") + ".",
			"documentation_url": rateDocsURL + "#about-secondary-rate-limits",
		})
		return
	}
	st.inflight[cred]++
	st.mu.Unlock()

	buf := &bufferedWriter{header: http.Header{}, status: http.StatusOK}
	mux.ServeHTTP(buf, r)

	st.mu.Lock()
	st.inflight[cred]--
	counts := RequestCounts{Counted: 1}
	if free {
		counts = RequestCounts{Uncounted: 1}
	}
	if r.Method == http.MethodGet && buf.status == http.StatusOK {
		// GitHub's ETags are opaque; this one changes with the answer and
		// with who asks (GitHub answers "Vary: Accept, Authorization").
		sum := sha256.Sum256(append([]byte(cred+"\x00"), buf.body.Bytes()...))
		etag := `W/"` + hex.EncodeToString(sum[:16]) + `"`
		buf.header.Set("ETag", etag)
		if etagMatches(r.Header.Get("If-None-Match"), etag) {
			buf.status = http.StatusNotModified
			buf.body.Reset()
			buf.header.Del("Content-Type")
			buf.header.Del("Content-Length")
			if !free {
				win := st.windowLocked(cred, now, rl.Window)
				win.used = max(win.used-1, 0)
				counts = RequestCounts{NotModified: 1}
			}
		}
	}
	st.countLocked(cred, endpoint, counts)
	rateHeaders(buf.header, limit, st.windowLocked(cred, now, rl.Window))
	st.mu.Unlock()

	buf.header.Add("Vary", "Accept, Authorization, Cookie, X-GitHub-OTP")
	maps.Copy(w.Header(), buf.header)
	w.WriteHeader(buf.status)
	w.Write(buf.body.Bytes())
}

// rateHeaders sets GitHub's x-ratelimit-* headers ("The x-ratelimit-*
// headers are returned with every response"; all the fake's endpoints are
// in the "core" resource).
func rateHeaders(h http.Header, limit int, w *rateWindow) http.Header {
	h.Set("X-RateLimit-Limit", strconv.Itoa(limit))
	h.Set("X-RateLimit-Remaining", strconv.Itoa(max(limit-w.used, 0)))
	h.Set("X-RateLimit-Used", strconv.Itoa(w.used))
	h.Set("X-RateLimit-Reset", strconv.FormatInt(w.reset.Unix(), 10))
	h.Set("X-RateLimit-Resource", "core")
	return h
}

// primaryMessage is GitHub's text for an exhausted budget, which names the
// installation or user.
func primaryMessage(cred string) string {
	kind, id, _ := strings.Cut(cred, ":")
	switch kind {
	case "installation":
		return "API rate limit exceeded for installation ID " + id + "."
	case "token":
		return "API rate limit exceeded for user ID " + id + "."
	case "app":
		return "API rate limit exceeded for the GitHub App."
	}
	return "API rate limit exceeded for 127.0.0.1. (But here's the good news: Authenticated requests get a higher rate limit. Check out the documentation for more details.)"
}

// etagMatches is If-None-Match's weak comparison (RFC 9110 §13.1.2).
func etagMatches(header, etag string) bool {
	if header == "" {
		return false
	}
	want := strings.TrimPrefix(etag, "W/")
	for _, v := range strings.Split(header, ",") {
		v = strings.TrimSpace(v)
		if v == "*" || strings.TrimPrefix(v, "W/") == want {
			return true
		}
	}
	return false
}

type bufferedWriter struct {
	header http.Header
	status int
	wrote  bool
	body   bytes.Buffer
}

func (b *bufferedWriter) Header() http.Header { return b.header }
func (b *bufferedWriter) WriteHeader(code int) {
	if !b.wrote {
		b.status, b.wrote = code, true
	}
}
func (b *bufferedWriter) Write(p []byte) (int, error) {
	b.wrote = true
	return b.body.Write(p)
}

// RequestStats returns the API requests answered so far.
func (s *Server) RequestStats() RequestStats {
	st := &s.rate
	st.mu.Lock()
	defer st.mu.Unlock()
	out := RequestStats{
		ByCredential:         map[string]RequestCounts{},
		ByEndpoint:           map[string]RequestCounts{},
		ByCredentialEndpoint: map[string]RequestCounts{},
	}
	for k, c := range st.stats {
		out.Total.add(c)
		v := out.ByCredential[k[0]]
		v.add(c)
		out.ByCredential[k[0]] = v
		v = out.ByEndpoint[k[1]]
		v.add(c)
		out.ByEndpoint[k[1]] = v
		out.ByCredentialEndpoint[k[0]+" "+k[1]] = c
	}
	return out
}

// ResetRequestStats zeroes the counters of RequestStats (not the budgets).
func (s *Server) ResetRequestStats() {
	s.rate.mu.Lock()
	clear(s.rate.stats)
	s.rate.mu.Unlock()
}

// SetRateRemaining sets what is left of a credential's budget ("installation:ID",
// "token:N", "app") in its current window, starting a window if it has none:
// a test's shortcut to a budget nearly spent.
func (s *Server) SetRateRemaining(credential string, remaining int) {
	rl := &s.opts.RateLimits
	limit := rl.Installation
	switch kind, id, _ := strings.Cut(credential, ":"); kind {
	case "token":
		limit = rl.Token
	case "app":
		limit = rl.App
	case "unauthenticated":
		limit = rl.Unauthenticated
	case "installation":
		n, _ := strconv.ParseInt(id, 10, 64)
		if l, ok := rl.PerInstallation[n]; ok && l > 0 {
			limit = l
		}
	}
	st := &s.rate
	st.mu.Lock()
	defer st.mu.Unlock()
	w := st.windowLocked(credential, rl.Now(), rl.Window)
	w.used = max(limit-remaining, 0)
}

// TripSecondaryLimit refuses the next n API requests (GET /rate_limit
// aside) as over a secondary limit, with status (0: RateLimits'
// SecondaryStatus) and retry-after (none when negative, RateLimits'
// SecondaryRetryAfter when zero): a fault for tests, since GitHub also has
// secondary limits it does not disclose.
func (s *Server) TripSecondaryLimit(n, status int, retryAfter time.Duration) {
	if retryAfter == 0 {
		retryAfter = s.opts.RateLimits.SecondaryRetryAfter
	}
	s.rate.mu.Lock()
	defer s.rate.mu.Unlock()
	for range n {
		s.rate.trips = append(s.rate.trips, secondaryTrip{status: status, retryAfter: max(retryAfter, 0)})
	}
}

// rateStatus is a credential's primary window as GET /rate_limit shows it.
func (s *Server) rateStatus(cred string, limit int) map[string]any {
	rl := &s.opts.RateLimits
	st := &s.rate
	st.mu.Lock()
	defer st.mu.Unlock()
	w := st.windowLocked(cred, rl.Now(), rl.Window)
	return map[string]any{"limit": limit, "used": w.used, "remaining": max(limit-w.used, 0), "reset": w.reset.Unix()}
}

func (s *Server) initRate() {
	s.opts.RateLimits.setDefaults()
	s.rate = rateState{
		windows:  map[string]*rateWindow{},
		points:   map[string]*pointsWindow{},
		inflight: map[string]int{},
		stats:    map[[2]string]RequestCounts{},
	}
}

// RateWindow is a credential's primary window now: requests used and when
// it resets (a new window starts if the last one ended).
func (s *Server) RateWindow(credential string) (used int, reset time.Time) {
	st := &s.rate
	st.mu.Lock()
	defer st.mu.Unlock()
	w := st.windowLocked(credential, s.opts.RateLimits.Now(), s.opts.RateLimits.Window)
	return w.used, w.reset
}
