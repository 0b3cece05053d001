package status_test

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/crabbox/crabbox-runner/github"
	"github.com/crabbox/crabbox-runner/provisioner"
	"github.com/crabbox/crabbox-runner/status"
	"github.com/crabbox/crabbox-runner/store/sqlite"
)

// now is the page's clock in these tests: 15:00 UTC, so "today" is the
// last 15 hours.
var now = time.Date(2026, 11, 23, 15, 0, 0, 0, time.UTC)

const (
	hostileJob   = `train <script>alert("job")</script>`
	hostileError = `boot timeout <img src=x onerror=alert(1)> after 10m`
	testToken    = "status-token-0123456789abcdef"
)

// step is one move of a seeded lease, at a given time.
type step struct {
	at  time.Time
	to  provisioner.State
	mut func(*provisioner.Lease)
}

type seeded struct {
	st  *sqlite.Store
	mu  sync.Mutex
	clk time.Time
}

func (s *seeded) set(t time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.clk = t
}

func (s *seeded) now() time.Time {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.clk
}

// lease inserts a lease at created and walks it through steps, each at its
// own time, so that its history (and so its cost) is known exactly.
func (s *seeded) lease(t *testing.T, l *provisioner.Lease, created time.Time, steps ...step) {
	t.Helper()
	ctx := context.Background()
	s.set(created)
	l.State, l.RunnerName = provisioner.StatePending, "crabbox-test-"+l.ID
	if err := s.st.InTx(ctx, func(tx provisioner.Tx) error { return tx.InsertLease(ctx, l) }); err != nil {
		t.Fatal(err)
	}
	for _, st := range steps {
		s.set(st.at)
		err := s.st.InTx(ctx, func(tx provisioner.Tx) error {
			_, err := tx.Transition(ctx, l.ID, st.to, "test", st.mut)
			return err
		})
		if err != nil {
			t.Fatalf("lease %s to %s: %v", l.ID, st.to, err)
		}
	}
}

func (s *seeded) job(t *testing.T, j *provisioner.Job) {
	t.Helper()
	ctx := context.Background()
	if err := s.st.InTx(ctx, func(tx provisioner.Tx) error { return tx.PutJob(ctx, j) }); err != nil {
		t.Fatal(err)
	}
}

func at(h, m int) time.Time { return time.Date(2026, 11, 23, h, m, 0, 0, time.UTC) }

func yesterday(h, m int) time.Time { return at(h, m).Add(-24 * time.Hour) }

func host(id string) func(*provisioner.Lease) {
	return func(l *provisioner.Lease) { l.InstanceID = "i-" + id }
}

func released(t time.Time, reason string) func(*provisioner.Lease) {
	return func(l *provisioner.Lease) { l.ReleasedAt, l.ReleaseReason = t, reason }
}

// seedStore writes a day of leases into a fresh SQLite store:
//
//	l-busy    a100 vast   $2/h   billed since yesterday 23:30, busy on job 101   $31 so far, $30 today
//	l-boot    h100 lambda $3/h   billed since 13:30, bootstrapping for job 102   $4.50
//	l-pend    a100        —      pending for job 103 (not in the store)          $0
//	l-failed  a100 vast   $0.5/h billed since 14:00, failed                      $0.50
//	l-rel     a100 vast   $1/h   billed 09:00–11:00, released today, an error    $2
//	l-old     a100 vast   $1/h   released yesterday: not on the page
func seedStore(t *testing.T) *seeded {
	t.Helper()
	st, err := sqlite.Open(context.Background(), filepath.Join(t.TempDir(), "status.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	s := &seeded{st: st}
	st.SetNow(s.now)
	org := provisioner.Scope{Org: "acme", InstallationID: 7}
	vast := func(id string, price float64) *provisioner.Lease {
		return &provisioner.Lease{ID: id, Class: "a100", Scope: org, Provider: "vast", GPU: "A100 SXM4", PricePerHour: price}
	}

	s.job(t, &provisioner.Job{ID: 101, RunAttempt: 1, RunID: 9001, Name: hostileJob, WorkflowName: "gpu tests",
		Repo: "acme/vision", Scope: org, Class: "a100", Status: provisioner.JobInProgress})
	s.job(t, &provisioner.Job{ID: 102, RunAttempt: 2, RunID: 9002, Name: "bench", WorkflowName: "nightly",
		Repo: "acme/llm", Scope: org, Class: "h100", Status: provisioner.JobQueued})

	busy := vast("l-busy", 2)
	busy.JobID, busy.RunAttempt = 101, 1
	s.lease(t, busy, yesterday(23, 0),
		step{yesterday(23, 10), provisioner.StateProvisioning, nil},
		step{yesterday(23, 30), provisioner.StateBooting, host("busy")},
		step{yesterday(23, 40), provisioner.StateBootstrapping, nil},
		step{yesterday(23, 50), provisioner.StateIdle, nil},
		step{at(1, 0), provisioner.StateBusy, func(l *provisioner.Lease) { l.BoundJobID = 101 }})

	boot := &provisioner.Lease{ID: "l-boot", Class: "h100", Scope: org, Provider: "lambda", GPU: "H100 PCIe",
		PricePerHour: 3, JobID: 102, RunAttempt: 2}
	s.lease(t, boot, at(13, 0),
		step{at(13, 5), provisioner.StateProvisioning, nil},
		step{at(13, 30), provisioner.StateBooting, host("boot")},
		step{at(14, 50), provisioner.StateBootstrapping, nil})

	s.lease(t, &provisioner.Lease{ID: "l-pend", Class: "a100", Scope: org, JobID: 103, RunAttempt: 1}, at(14, 59))

	failed := vast("l-failed", 0.5)
	s.lease(t, failed, at(13, 55),
		step{at(13, 56), provisioner.StateProvisioning, nil},
		step{at(14, 0), provisioner.StateBooting, host("failed")},
		step{at(14, 20), provisioner.StateBootstrapping, nil},
		step{at(14, 40), provisioner.StateFailed, func(l *provisioner.Lease) { l.Error = "GPU check failed: nvidia-smi saw no GPU" }})

	rel := vast("l-rel", 1)
	rel.Interruptible = true // a bid host (classes[].interruptible)
	s.lease(t, rel, at(8, 50),
		step{at(8, 55), provisioner.StateProvisioning, nil},
		step{at(9, 0), provisioner.StateBooting, host("rel")},
		step{at(10, 50), provisioner.StateFailed, func(l *provisioner.Lease) { l.Error = hostileError }},
		step{at(10, 55), provisioner.StateReleasing, nil},
		step{at(11, 0), provisioner.StateReleased, released(at(11, 0), "boot timeout")})

	old := vast("l-old", 1)
	s.lease(t, old, yesterday(9, 50),
		step{yesterday(9, 55), provisioner.StateProvisioning, nil},
		step{yesterday(10, 0), provisioner.StateBooting, host("old")},
		step{yesterday(11, 0), provisioner.StateReleasing, nil},
		step{yesterday(12, 0), provisioner.StateReleased, released(yesterday(12, 0), "job completed")})

	return s
}

func newHandler(t *testing.T, r status.Reader, token string, recent *status.Recent) *status.Handler {
	t.Helper()
	h, err := status.New(status.Config{Store: r, Token: token, Deployment: "acme-gpu", Recent: recent,
		WebURL: github.WebURL("https://api.github.com"), Now: func() time.Time { return now },
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	return h
}

func get(t testing.TB, h http.Handler, req func(*http.Request)) (*http.Response, string) {
	t.Helper()
	r := httptest.NewRequest(http.MethodGet, "/", nil)
	if req != nil {
		req(r)
	}
	w := httptest.NewRecorder()
	h.ServeHTTP(w, r)
	resp := w.Result()
	b, _ := io.ReadAll(resp.Body)
	return resp, string(b)
}

// recentWithRecords is a Recent fed through a logger as serve feeds it.
func recentWithRecords() *status.Recent {
	recent := status.NewRecent(10)
	log := slog.New(recent.Handler(slog.NewTextHandler(io.Discard, nil)))
	log.Info("an info line is not kept")
	log.With("component", "provisioner").Warn("destroy failed <b>bold</b>", "lease_id", "l-rel", "job_id", int64(101),
		"error", errors.New("vast: 503 Service Unavailable"), "jit_config", "must-not-show")
	log.Error("store unreachable", "error", "dial tcp: connection refused")
	return recent
}

// row returns the HTML of the table row with the given id.
func row(t *testing.T, body, id string) string {
	t.Helper()
	i := strings.Index(body, `id="`+id+`"`)
	if i < 0 {
		t.Fatalf("no row %s in the page", id)
	}
	end := strings.Index(body[i:], "</tr>")
	return body[i : i+end]
}

func TestPageShowsLeasesCostsSpendAndErrors(t *testing.T) {
	s := seedStore(t)
	h := newHandler(t, s.st, "", recentWithRecords())
	resp, body := get(t, h, nil)
	if resp.StatusCode != 200 {
		t.Fatalf("GET /: %d\n%s", resp.StatusCode, body)
	}
	if ct := resp.Header.Get("Content-Type"); ct != "text/html; charset=utf-8" {
		t.Fatalf("Content-Type %q", ct)
	}
	if resp.Header.Get("Cache-Control") != "no-store" || !strings.Contains(resp.Header.Get("Content-Security-Policy"), "default-src 'none'") {
		t.Fatalf("headers %v", resp.Header)
	}

	// The live leases, each with its state, job, age and cost so far.
	busy := row(t, body, "lease-l-busy")
	for _, want := range []string{">busy<", `href="https://github.com/acme/vision/actions/runs/9001/job/101"`,
		"acme/vision", "gpu tests", "16h 00m", "$31.00", "$2.00/h", "vast", "A100 SXM4"} {
		if !strings.Contains(busy, want) {
			t.Errorf("busy lease's row lacks %q:\n%s", want, busy)
		}
	}
	boot := row(t, body, "lease-l-boot")
	for _, want := range []string{">bootstrapping<", ">for <", `href="https://github.com/acme/llm/actions/runs/9002/job/102"`,
		">bench</a>", "2h 00m", "$4.50", "$3.00/h"} {
		if !strings.Contains(boot, want) {
			t.Errorf("bootstrapping lease's row lacks %q:\n%s", want, boot)
		}
	}
	pend := row(t, body, "lease-l-pend")
	for _, want := range []string{">pending<", "job 103", "choosing an offer", "1m 00s", "$0.00"} {
		if !strings.Contains(pend, want) {
			t.Errorf("pending lease's row lacks %q:\n%s", want, pend)
		}
	}
	if strings.Contains(pend, "href=") {
		t.Errorf("a job the store does not know got a link:\n%s", pend)
	}
	if rel := row(t, body, "lease-l-rel"); !strings.Contains(rel, `vast<span class="dim">/bid</span>`) {
		t.Errorf("the bid lease's row does not say so:\n%s", rel)
	}
	if strings.Contains(busy, "/bid") {
		t.Errorf("an on-demand lease shown as a bid:\n%s", busy)
	}
	failed := row(t, body, "lease-l-failed")
	for _, want := range []string{">failed<", "GPU check failed", "$0.50"} {
		if !strings.Contains(failed, want) {
			t.Errorf("failed lease's row lacks %q:\n%s", want, failed)
		}
	}
	// Released today: in its own table; released yesterday: nowhere.
	rel := row(t, body, "lease-l-rel")
	for _, want := range []string{">released<", "$2.00", "2h 10m"} {
		if !strings.Contains(rel, want) {
			t.Errorf("released lease's row lacks %q:\n%s", want, rel)
		}
	}
	if strings.Index(body, `id="lease-l-rel"`) < strings.Index(body, `id="released"`) {
		t.Error("the released lease is among the live ones")
	}
	if strings.Contains(body, "l-old") {
		t.Error("a lease released yesterday is on the page")
	}

	// Today's spend: a100/vast = 30 (l-busy since midnight) + 2 (l-rel) +
	// 0.5 (l-failed); h100/lambda = 4.5; rate now 2 + 3 + 0.5.
	for _, want := range []string{
		`<tr class="spend-row"><td>a100</td><td>vast</td><td class="num">2</td><td class="num">$2.50/h</td><td class="num">$32.50</td></tr>`,
		`<tr class="spend-row"><td>h100</td><td>lambda</td><td class="num">1</td><td class="num">$3.00/h</td><td class="num">$4.50</td></tr>`,
		`<span class="value" id="spend-rate">$5.50/h</span>`,
		`<span class="value" id="spent-today">$37.00</span>`,
		`<span class="value" id="live-count">4</span>`,
	} {
		if !strings.Contains(body, want) {
			t.Errorf("page lacks %s", want)
		}
	}

	// The last errors: the leases' and the log's.
	errs := body[strings.Index(body, `id="errors"`):]
	for _, want := range []string{"GPU check failed: nvidia-smi saw no GPU", "boot timeout &lt;img src=x",
		"destroy failed &lt;b&gt;bold&lt;/b&gt;", "vast: 503 Service Unavailable", `<span class="k">lease_id</span> l-rel`,
		`<span class="k">job_id</span> 101`, "store unreachable", ">ERROR<", ">WARN<"} {
		if !strings.Contains(errs, want) {
			t.Errorf("errors section lacks %q", want)
		}
	}
	if strings.Contains(body, "an info line") || strings.Contains(body, "jit_config") || strings.Contains(body, "must-not-show") {
		t.Error("the page shows a log record or attribute it should not keep")
	}
	if strings.Index(errs, "store unreachable") > strings.Index(errs, "destroy failed") {
		t.Error("log records are not newest first")
	}

	// Hostile strings are text, never markup.
	for _, raw := range []string{"<script>", "<img src=x", "<b>bold"} {
		if strings.Contains(body, raw) {
			t.Errorf("page contains %q unescaped", raw)
		}
	}
	if !strings.Contains(body, "train &lt;script&gt;alert(&#34;job&#34;)&lt;/script&gt;") {
		t.Error("the hostile job name is not shown escaped")
	}
	if strings.Contains(strings.ToLower(body), "<script") {
		t.Error("the page has a script element")
	}
}

func TestPageNeedsTheTokenWhenSet(t *testing.T) {
	s := seedStore(t)
	h := newHandler(t, s.st, testToken, nil)
	basic := func(user, pw string) func(*http.Request) {
		return func(r *http.Request) { r.SetBasicAuth(user, pw) }
	}
	header := func(v string) func(*http.Request) {
		return func(r *http.Request) { r.Header.Set("Authorization", v) }
	}
	cases := []struct {
		name string
		req  func(*http.Request)
		want int
	}{
		{"none", nil, 401},
		{"bearer", header("Bearer " + testToken), 200},
		{"bearer lower-case scheme", header("bearer " + testToken), 200},
		{"basic, token as password", basic("me", testToken), 200},
		{"basic, no user", basic("", testToken), 200},
		{"wrong bearer", header("Bearer " + testToken + "x"), 401},
		{"bearer prefix of the token", header("Bearer " + testToken[:10]), 401},
		{"empty bearer", header("Bearer "), 401},
		{"token as basic user", basic(testToken, ""), 401},
		{"wrong basic", basic("me", "hunter2"), 401},
		{"token without a scheme", header(testToken), 401},
	}
	for _, tc := range cases {
		resp, body := get(t, h, tc.req)
		if resp.StatusCode != tc.want {
			t.Errorf("%s: %d, want %d", tc.name, resp.StatusCode, tc.want)
			continue
		}
		if tc.want == 401 {
			if got := resp.Header.Get("WWW-Authenticate"); !strings.HasPrefix(got, `Basic realm="crabbox-runner"`) {
				t.Errorf("%s: WWW-Authenticate %q", tc.name, got)
			}
			if strings.Contains(body, "l-busy") || strings.Contains(body, testToken) {
				t.Errorf("%s: a refused request got %q", tc.name, body)
			}
		} else if !strings.Contains(body, "lease-l-busy") {
			t.Errorf("%s: the page lacks the leases", tc.name)
		}
	}

	// Without a token the page is open.
	if resp, _ := get(t, newHandler(t, s.st, "", nil), nil); resp.StatusCode != 200 {
		t.Fatalf("no token: %d", resp.StatusCode)
	}
}

func TestPageRefusesOtherMethodsAndAnswersHead(t *testing.T) {
	h := newHandler(t, seedStore(t).st, "", nil)
	w := httptest.NewRecorder()
	h.ServeHTTP(w, httptest.NewRequest(http.MethodPost, "/", strings.NewReader("x")))
	if w.Code != http.StatusMethodNotAllowed {
		t.Fatalf("POST: %d", w.Code)
	}
	w = httptest.NewRecorder()
	h.ServeHTTP(w, httptest.NewRequest(http.MethodHead, "/", nil))
	if w.Code != 200 || w.Body.Len() != 0 {
		t.Fatalf("HEAD: %d with %d bytes", w.Code, w.Body.Len())
	}
}

// The Content-Security-Policy allows the page's own style and nothing else;
// the hash it names must be the style's, or browsers would drop it.
func TestStyleMatchesItsPolicy(t *testing.T) {
	resp, body := get(t, newHandler(t, seedStore(t).st, "", nil), nil)
	m := regexp.MustCompile(`(?s)<style>(.*?)</style>`).FindStringSubmatch(body)
	if m == nil {
		t.Fatal("no style element")
	}
	sum := sha256.Sum256([]byte(m[1]))
	want := "style-src 'sha256-" + base64.StdEncoding.EncodeToString(sum[:]) + "'"
	if csp := resp.Header.Get("Content-Security-Policy"); !strings.Contains(csp, want) {
		t.Fatalf("policy %q lacks %s", csp, want)
	}
	for _, ext := range []string{"http://", "https://", "//"} {
		if strings.Contains(m[1], ext) {
			t.Fatalf("the style refers to %s…", ext)
		}
	}
}

// counting counts the reads a view makes.
type counting struct {
	status.Reader
	mu                   sync.Mutex
	leases, events, jobs int
	// asked is how many lease histories the view asked for.
	asked int
	fail  error
}

func (c *counting) Leases(ctx context.Context, f provisioner.LeaseFilter) ([]*provisioner.Lease, error) {
	c.mu.Lock()
	c.leases++
	fail := c.fail
	c.mu.Unlock()
	if fail != nil {
		return nil, fail
	}
	if f.ReleasedSince.IsZero() {
		return nil, errors.New("the page must ask only for today's released leases")
	}
	return c.Reader.Leases(ctx, f)
}

func (c *counting) LeaseEventsOf(ctx context.Context, ids []string) (map[string][]provisioner.Event, error) {
	c.mu.Lock()
	c.events++
	c.asked += len(ids)
	c.mu.Unlock()
	return c.Reader.LeaseEventsOf(ctx, ids)
}

func (c *counting) LatestJob(ctx context.Context, id int64) (*provisioner.Job, error) {
	c.mu.Lock()
	c.jobs++
	c.mu.Unlock()
	return c.Reader.LatestJob(ctx, id)
}

func (c *counting) reset() (leases, events, asked, jobs int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	leases, events, asked, jobs = c.leases, c.events, c.asked, c.jobs
	c.leases, c.events, c.asked, c.jobs = 0, 0, 0, 0
	return
}

// A view is one lease query and one history query; a released lease's
// history and a job are read once.
func TestPageReadsLittle(t *testing.T) {
	c := &counting{Reader: seedStore(t).st}
	h := newHandler(t, c, "", nil)
	if resp, _ := get(t, h, nil); resp.StatusCode != 200 {
		t.Fatalf("GET: %d", resp.StatusCode)
	}
	// Five leases are on the page (busy, boot, pend, failed, rel), read
	// in one query; three jobs are named.
	if l, e, a, j := c.reset(); l != 1 || e != 1 || a != 5 || j != 3 {
		t.Fatalf("first view: %d lease queries, %d history queries for %d leases, %d jobs; want 1, 1 for 5, 3", l, e, a, j)
	}
	if resp, _ := get(t, h, nil); resp.StatusCode != 200 {
		t.Fatalf("GET: %d", resp.StatusCode)
	}
	// The live leases' histories go on (four); l-rel's is kept. Job 103 is
	// unknown and is asked again; nothing else is.
	if l, e, a, j := c.reset(); l != 1 || e != 1 || a != 4 || j != 1 {
		t.Fatalf("second view: %d lease queries, %d history queries for %d leases, %d jobs; want 1, 1 for 4, 1", l, e, a, j)
	}
}

func TestStoreErrorIsNotShown(t *testing.T) {
	c := &counting{Reader: seedStore(t).st, fail: errors.New("dial postgres://crabbox:s3cret@db:5432 refused")}
	resp, body := get(t, newHandler(t, c, "", nil), nil)
	if resp.StatusCode != http.StatusServiceUnavailable || strings.Contains(body, "s3cret") || strings.Contains(body, "postgres") {
		t.Fatalf("%d %q", resp.StatusCode, body)
	}
}

func TestEmptyPage(t *testing.T) {
	st, err := sqlite.Open(context.Background(), filepath.Join(t.TempDir(), "empty.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	resp, body := get(t, newHandler(t, st, "", status.NewRecent(5)), nil)
	if resp.StatusCode != 200 {
		t.Fatalf("%d", resp.StatusCode)
	}
	for _, want := range []string{"No live leases", "No host has been billed today", "No lease errors",
		"Nothing logged at WARN or above", "No lease was released today", `<span class="value" id="spent-today">$0.00</span>`} {
		if !strings.Contains(body, want) {
			t.Errorf("empty page lacks %q", want)
		}
	}
}

func TestNewRefusesBadConfig(t *testing.T) {
	if _, err := status.New(status.Config{}); err == nil {
		t.Error("no store: no error")
	}
	st := seedStore(t).st
	for _, u := range []string{"javascript:alert(1)", "ftp://host", "not a url", "https://"} {
		if _, err := status.New(status.Config{Store: st, WebURL: u}); err == nil {
			t.Errorf("web URL %q: no error", u)
		}
	}
}

// Job links follow the configured GitHub: a GHES API base makes GHES links.
func TestJobLinksFollowGHES(t *testing.T) {
	s := seedStore(t)
	h, err := status.New(status.Config{Store: s.st, WebURL: github.WebURL("https://ghe.example.com/api/v3"),
		Now: func() time.Time { return now }})
	if err != nil {
		t.Fatal(err)
	}
	if _, body := get(t, h, nil); !strings.Contains(body, `href="https://ghe.example.com/acme/vision/actions/runs/9001/job/101"`) {
		t.Error("no GHES job link")
	}
}
