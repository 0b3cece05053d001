package github

// Background requests (reconcile scans, the deliveries sweep, job
// refreshes, the installations list) share a ceiling of requests in any
// window (60 a minute by default), 304s included: GitHub's secondary limits
// count every request, answered from cache or not ("Rate limits for the
// REST API", secondary rate limits; reference §4.3). Calls that serve jobs
// (generate-jitconfig, runner get/delete) are never held to it. A
// background request over the ceiling is not sent: it fails with an error
// that is provisioner.ErrDeferred, and the reconcile does that work on a
// later pass.

import (
	"fmt"
	"net/http"
	"slices"
	"sync"
	"time"

	"github.com/crabbox/crabbox-runner/provisioner"
)

// DefaultBackgroundPerMinute is the ceiling of background requests in any
// minute (Config.BackgroundPerMinute).
const DefaultBackgroundPerMinute = 60

// ceilingError is a background request refused before it was sent: a
// provisioner.BudgetError that is ErrDeferred.
func ceilingError(req *http.Request, w *window, wait time.Duration) *provisioner.BudgetError {
	return &provisioner.BudgetError{
		Endpoint: req.Method + " " + req.URL.Path, Until: time.Now().Add(wait), Deferred: true,
		Reason: fmt.Sprintf("background ceiling (%d requests in any %s)", w.n, w.per),
	}
}

// window admits at most n requests in any span of length per: it keeps
// the times of the last n admitted.
type window struct {
	mu    sync.Mutex
	n     int
	per   time.Duration
	times []time.Time // ring of the last n admissions, oldest at next
	next  int
	now   func() time.Time
}

func newWindow(n int, per time.Duration) *window {
	return &window{n: n, per: per, times: make([]time.Time, 0, n), now: time.Now}
}

// take admits one request now, or says how long until one may go.
func (w *window) take() (bool, time.Duration) {
	w.mu.Lock()
	defer w.mu.Unlock()
	now := w.now()
	if len(w.times) < w.n {
		w.times = append(w.times, now)
		return true, 0
	}
	oldest := w.times[w.next]
	if wait := oldest.Add(w.per).Sub(now); wait > 0 {
		return false, wait
	}
	w.times[w.next] = now
	w.next = (w.next + 1) % w.n
	return true, 0
}

// free is how many requests could go now.
func (w *window) free() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	now, busy := w.now(), 0
	for _, t := range w.times {
		if now.Before(t.Add(w.per)) {
			busy++
		}
	}
	return w.n - busy
}

// until is how long until at least k requests could go.
func (w *window) until(k int) time.Duration {
	w.mu.Lock()
	defer w.mu.Unlock()
	now := w.now()
	var busy []time.Time
	for _, t := range w.times {
		if now.Before(t.Add(w.per)) {
			busy = append(busy, t)
		}
	}
	over := len(busy) - (w.n - k) // how many must age out first
	if over <= 0 {
		return 0
	}
	if over > len(busy) {
		return w.per // k > n: never within one window
	}
	slices.SortFunc(busy, func(a, b time.Time) int { return a.Compare(b) })
	return busy[over-1].Add(w.per).Sub(now)
}

// backgroundCap is the transport layer that holds background requests to
// the window; everything else passes straight through. It sits above the
// budget layer (budget.go), which sees only what the ceiling lets through,
// and tells the budget's observer what it refuses.
type backgroundCap struct {
	next   http.RoundTripper
	win    *window
	cred   string
	budget *budget
}

// capped puts the background ceiling (when there is one) above a
// credential's transport.
func (c *Client) capped(cred string, next http.RoundTripper) http.RoundTripper {
	if c.bgWindow == nil {
		return next
	}
	return &backgroundCap{next: next, win: c.bgWindow, cred: cred, budget: c.budget}
}

func (b *backgroundCap) RoundTrip(req *http.Request) (*http.Response, error) {
	if provisioner.IsBackground(req.Context()) {
		if ok, wait := b.win.take(); !ok {
			if req.Body != nil {
				req.Body.Close()
			}
			err := ceilingError(req, b.win, wait)
			err.Credential, err.Endpoint = b.cred, b.budget.route(req)
			b.budget.obs.Refused(b.cred, err.Endpoint, "ceiling")
			return nil, err
		}
	}
	return b.next.RoundTrip(req)
}

// backgroundFree is how many background requests may go now (a large
// number when there is no ceiling).
func (c *Client) backgroundFree() int {
	if c.bgWindow == nil {
		return 1 << 30
	}
	return c.bgWindow.free()
}
