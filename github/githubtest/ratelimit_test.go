package githubtest

import (
	"crypto/rsa"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"sync"
	"testing"
	"time"

	jwtlib "github.com/golang-jwt/jwt/v4"
)

// fakeClock is a clock tests move by hand.
type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}

func getWith(t *testing.T, s *Server, path, tok string, hdr map[string]string) response {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, s.URL()+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	if tok != "" {
		req.Header.Set("Authorization", "Bearer "+tok)
	}
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return response{status: resp.StatusCode, header: resp.Header, body: body}
}

// instToken makes an installation token with the App's JWT.
func instToken(t *testing.T, s *Server, appID, id int64) string {
	t.Helper()
	key, _ := testKeys(t)
	now := time.Now()
	jwt := signJWT(t, key, jwtlib.SigningMethodRS256, strconv.FormatInt(appID, 10), now.Add(-30*time.Second), now.Add(2*time.Minute))
	r := call(t, http.MethodPost, s.URL()+"/app/installations/"+strconv.FormatInt(id, 10)+"/access_tokens", "Bearer "+jwt, nil)
	var tok struct{ Token string }
	r.json(t, &tok)
	if r.status != http.StatusCreated || tok.Token == "" {
		t.Fatalf("installation token: %d %s", r.status, r.body)
	}
	return tok.Token
}

func headerInt(t *testing.T, r response, name string) int {
	t.Helper()
	v, err := strconv.Atoi(r.header.Get(name))
	if err != nil {
		t.Fatalf("%s: %q is not a number", name, r.header.Get(name))
	}
	return v
}

func TestPrimaryRateLimitPerTokenWithReset(t *testing.T) {
	clock := &fakeClock{now: time.Unix(1_800_000_000, 0)}
	s := newTestServer(t, Options{RateLimits: RateLimits{Token: 3, Window: time.Hour, Now: clock.Now}})
	const path = "/orgs/acme/actions/runners"

	for i := 1; i <= 3; i++ {
		r := getWith(t, s, path, testToken, nil)
		if r.status != http.StatusOK {
			t.Fatalf("request %d: %d %s", i, r.status, r.body)
		}
		if got := headerInt(t, r, "X-RateLimit-Remaining"); got != 3-i {
			t.Errorf("request %d: remaining %d, want %d", i, got, 3-i)
		}
		if headerInt(t, r, "X-RateLimit-Used") != i || headerInt(t, r, "X-RateLimit-Limit") != 3 ||
			r.header.Get("X-RateLimit-Resource") != "core" ||
			r.header.Get("X-RateLimit-Reset") != fmt.Sprint(clock.Now().Add(time.Hour).Unix()) {
			t.Errorf("request %d: headers %v", i, r.header)
		}
	}
	// GET /rate_limit is free and shows the window.
	rl := getWith(t, s, "/rate_limit", testToken, nil)
	var status struct {
		Rate struct{ Limit, Used, Remaining int }
	}
	rl.json(t, &status)
	if rl.status != 200 || status.Rate.Limit != 3 || status.Rate.Used != 3 || status.Rate.Remaining != 0 {
		t.Errorf("GET /rate_limit: %d %s", rl.status, rl.body)
	}

	r := getWith(t, s, path, testToken, nil)
	if r.status != http.StatusForbidden || r.header.Get("X-RateLimit-Remaining") != "0" {
		t.Fatalf("over the budget: %d %v %s", r.status, r.header, r.body)
	}
	if msg := r.message(t); msg != "API rate limit exceeded for user ID 1." {
		t.Errorf("message %q", msg)
	}
	// Still refused just before the reset, a new window after it.
	clock.Advance(time.Hour - time.Second)
	if r := getWith(t, s, path, testToken, nil); r.status != http.StatusForbidden {
		t.Fatalf("before the reset: %d", r.status)
	}
	clock.Advance(time.Second)
	r = getWith(t, s, path, testToken, nil)
	if r.status != http.StatusOK || headerInt(t, r, "X-RateLimit-Remaining") != 2 {
		t.Fatalf("after the reset: %d %v", r.status, r.header)
	}

	st := s.RequestStats()
	c := st.ByCredential["token:1"]
	if c.Counted != 4 || c.Refused != 2 || c.RefusedPrimary != 2 || c.Uncounted != 1 || c.NotModified != 0 {
		t.Errorf("stats %+v", c)
	}
	if e := st.ByEndpoint["GET /orgs/{org}/actions/runners"]; e.Counted != 4 || e.Refused != 2 {
		t.Errorf("endpoint stats %+v (all: %+v)", e, st.ByEndpoint)
	}
}

func TestPrimaryRateLimitPerInstallation(t *testing.T) {
	s := newTestServer(t, Options{
		Tokens:        []string{},
		AppID:         7,
		AppPublicKey:  &appPublicKey(t).PublicKey,
		Installations: map[string]int64{"acme": 11, "bob": 12},
		RateLimits:    RateLimits{PerInstallation: map[int64]int{11: 2}},
	})
	acme := instToken(t, s, 7, 11)
	bob := instToken(t, s, 7, 12)
	for range 2 {
		if r := getWith(t, s, "/orgs/acme/actions/runners", acme, nil); r.status != 200 {
			t.Fatalf("%d %s", r.status, r.body)
		}
	}
	r := getWith(t, s, "/orgs/acme/actions/runners", acme, nil)
	if r.status != http.StatusForbidden || r.message(t) != "API rate limit exceeded for installation ID 11." {
		t.Fatalf("installation 11 over its budget: %d %s", r.status, r.body)
	}
	// Another installation has its own budget, GitHub's 5,000.
	r = getWith(t, s, "/orgs/bob/actions/runners", bob, nil)
	if r.status != 200 || headerInt(t, r, "X-RateLimit-Limit") != 5000 || headerInt(t, r, "X-RateLimit-Remaining") != 4999 {
		t.Fatalf("installation 12: %d %v", r.status, r.header)
	}
	// The JWT requests that made the tokens count for the App alone.
	st := s.RequestStats()
	if st.ByCredential["app"].Counted != 2 || st.ByCredential["installation:11"].Counted != 2 ||
		st.ByCredential["installation:11"].RefusedPrimary != 1 || st.ByCredential["installation:12"].Counted != 1 {
		t.Errorf("stats %+v", st.ByCredential)
	}
}

func TestConditionalRequestsAreFree(t *testing.T) {
	s := newTestServer(t, Options{})
	const path = "/orgs/acme/actions/runners"
	first := getWith(t, s, path, testToken, nil)
	etag := first.header.Get("ETag")
	if first.status != 200 || etag == "" {
		t.Fatalf("first GET: %d, ETag %q", first.status, etag)
	}
	used := headerInt(t, first, "X-RateLimit-Used")

	same := getWith(t, s, path, testToken, map[string]string{"If-None-Match": etag})
	if same.status != http.StatusNotModified || len(same.body) != 0 || same.header.Get("ETag") != etag {
		t.Fatalf("conditional GET: %d %q ETag %q", same.status, same.body, same.header.Get("ETag"))
	}
	if got := headerInt(t, same, "X-RateLimit-Used"); got != used {
		t.Errorf("a 304 used the budget: used %d, was %d", got, used)
	}

	// A change gives a new ETag and a full answer, which counts.
	register(t, s, "/orgs/acme", "r-1", "gpu")
	changed := getWith(t, s, path, testToken, map[string]string{"If-None-Match": etag})
	if changed.status != 200 || changed.header.Get("ETag") == etag || len(changed.body) == 0 {
		t.Fatalf("after a change: %d ETag %q", changed.status, changed.header.Get("ETag"))
	}
	st := s.RequestStats().ByCredential["token:1"]
	if st.NotModified != 1 || st.Counted != 3 { // two listings and the registration
		t.Errorf("stats %+v", st)
	}
}

func TestSecondaryLimitPointsPerEndpoint(t *testing.T) {
	clock := &fakeClock{now: time.Unix(1_800_000_000, 0)}
	s := newTestServer(t, Options{RateLimits: RateLimits{PointsPerMinute: 12, Now: clock.Now}})
	// Two POSTs are 10 points; a third would be 15.
	register(t, s, "/orgs/acme", "r-1", "gpu")
	register(t, s, "/orgs/acme", "r-2", "gpu")
	r := call(t, http.MethodPost, s.URL()+"/orgs/acme/actions/runners/generate-jitconfig", "Bearer "+testToken,
		map[string]any{"name": "r-3", "runner_group_id": 1, "labels": []string{"gpu"}})
	if r.status != http.StatusForbidden || r.header.Get("Retry-After") != "60" {
		t.Fatalf("third POST: %d retry-after %q %s", r.status, r.header.Get("Retry-After"), r.body)
	}
	var e struct {
		DocumentationURL string `json:"documentation_url"`
	}
	r.json(t, &e)
	if e.DocumentationURL != rateDocsURL+"#about-secondary-rate-limits" {
		t.Errorf("documentation_url %q", e.DocumentationURL)
	}
	// Another endpoint has its own points.
	if g := getWith(t, s, "/orgs/acme/actions/runners", testToken, nil); g.status != 200 {
		t.Fatalf("GET: %d", g.status)
	}
	clock.Advance(time.Minute)
	register(t, s, "/orgs/acme", "r-3", "gpu")
	if c := s.RequestStats().ByEndpoint["POST /orgs/{org}/actions/runners/generate-jitconfig"]; c.Refused != 1 || c.Counted != 3 {
		t.Errorf("stats %+v", c)
	}
}

func TestTripSecondaryLimit(t *testing.T) {
	s := newTestServer(t, Options{})
	s.TripSecondaryLimit(1, http.StatusTooManyRequests, -1)
	s.TripSecondaryLimit(1, 0, 3*time.Second)
	r := getWith(t, s, "/orgs/acme/actions/runners", testToken, nil)
	if r.status != http.StatusTooManyRequests || r.header.Get("Retry-After") != "" {
		t.Fatalf("first: %d %v", r.status, r.header)
	}
	if headerInt(t, r, "X-RateLimit-Remaining") == 0 {
		t.Error("a secondary refusal says the primary budget is gone")
	}
	r = getWith(t, s, "/orgs/acme/actions/runners", testToken, nil)
	if r.status != http.StatusForbidden || r.header.Get("Retry-After") != "3" {
		t.Fatalf("second: %d %v", r.status, r.header)
	}
	if r := getWith(t, s, "/orgs/acme/actions/runners", testToken, nil); r.status != 200 {
		t.Fatalf("third: %d", r.status)
	}
}

func TestSetRateRemaining(t *testing.T) {
	s := newTestServer(t, Options{})
	s.SetRateRemaining("token:1", 1)
	if r := getWith(t, s, "/orgs/acme/actions/runners", testToken, nil); r.status != 200 || r.header.Get("X-RateLimit-Remaining") != "0" {
		t.Fatalf("last request: %d %v", r.status, r.header)
	}
	if r := getWith(t, s, "/orgs/acme/actions/runners", testToken, nil); r.status != http.StatusForbidden {
		t.Fatalf("exhausted: %d", r.status)
	}
}

func appPublicKey(t *testing.T) *rsa.PrivateKey {
	key, _ := testKeys(t)
	return key
}
