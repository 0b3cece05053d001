package vasttest

import (
	mrand "math/rand/v2"
	"net/http"
	"net/http/httptest"
	"strconv"
	"time"
)

// DocumentedLimits are Vast's per-endpoint minimum intervals, scaled by
// factor (0.01 runs them a hundred times faster). Vast "applies rate limits
// per endpoint and per identity … enforced as a minimum interval between
// requests for a given endpoint and identity" (vast-ai/docs
// api-reference/rate-limits-and-errors.mdx). The values are the thresholds
// the 429 examples of Vast's OpenAPI document print per operation
// (vast-ai/docs api-reference/openapi.yaml): createInstance 4.5,
// showInstance 2.0, showInstances 1.0, manageInstance 1.0, destroyInstance
// 3.0. Units are unstated; the fake takes the stricter reading, seconds.
// searchOffers and attachSshKey print no example: the fake takes 2.0, the
// threshold of detachSshKey and showInstance, rather than let them run
// unlimited.
func DocumentedLimits(factor float64) map[Op]time.Duration {
	if factor <= 0 {
		factor = 1
	}
	s := func(sec float64) time.Duration { return time.Duration(sec * factor * float64(time.Second)) }
	return map[Op]time.Duration{
		OpSearch:  s(2.0),
		OpCreate:  s(4.5),
		OpShow:    s(2.0),
		OpList:    s(1.0),
		OpManage:  s(1.0),
		OpDestroy: s(3.0),
		OpAttach:  s(2.0),
	}
}

// SlowCreates answers every create after 30 to 90 s, scaled by factor:
// the create answer times issue 14 reports from Vast (a client that gives
// up at 30 s rents a host it does not know about). Use as CreateDelay.
func SlowCreates(factor float64) func(n int) time.Duration {
	if factor <= 0 {
		factor = 1
	}
	return func(int) time.Duration {
		return time.Duration(factor * float64(30*time.Second+mrand.N(60*time.Second)))
	}
}

// limitKey is one endpoint for one identity: the docs name the bearer
// token (with session user, api_key parameter and client IP; all the same
// for a test's one client).
type limitKey struct {
	op       Op
	identity string
}

// limited answers 429 when the call comes sooner than the endpoint's
// interval after the previous call let through; s.mu is held. Only calls
// let through count, so a client that backs off gets in.
func (s *Server) limited(w http.ResponseWriter, r *http.Request, rec Request) (int, bool) {
	interval := s.opts.MinInterval
	if d, ok := s.opts.RateLimits[rec.Op]; ok {
		interval = d
	}
	if interval <= 0 {
		return 0, false
	}
	k := limitKey{rec.Op, r.Header.Get("Authorization")}
	last, seen := s.limits[k]
	if seen && rec.At.Sub(last) < interval {
		s.limited429++
		return write(w, tooFrequent(interval, s.limited429)), true
	}
	s.limits[k] = rec.At
	return 0, false
}

// tooFrequent is Vast's 429: "often plain text …, in certain cases JSON
// with success/error/msg" (rate-limits-and-errors.mdx); the text is the
// OpenAPI examples' "API requests too frequent endpoint threshold=4.5",
// with the threshold in the (scaled) seconds the fake enforces. Every
// third one comes as JSON. No Retry-After: the docs promise it only for
// the daily search quota.
func tooFrequent(interval time.Duration, n int) *apiErr {
	msg := "API requests too frequent endpoint threshold=" + strconv.FormatFloat(interval.Seconds(), 'f', -1, 64)
	if n%3 == 0 {
		return jsonErr(429, map[string]any{"success": false, "error": "rate_limit_exceeded", "msg": msg})
	}
	return &apiErr{status: 429, body: msg}
}

// createAnswer holds back a create's answer after the create took effect:
// CreateDelay makes it slow (Vast's own client waits up to 120 s for a
// create, _DEFAULT_TIMEOUT_SECONDS in vast-ai/vast-cli vastai/api/client.py,
// and issue 14 saw answers after 30 to 90 s); LoseCreate makes it never
// come (the connection hangs until the client gives up), as when the
// gateway loses it after the instance was made.
func (s *Server) createAnswer(w http.ResponseWriter, r *http.Request, rec *httptest.ResponseRecorder, n int) int {
	hold := func(d time.Duration) bool {
		t := time.NewTimer(d)
		defer t.Stop()
		select {
		case <-t.C:
			return true
		case <-r.Context().Done():
		case <-s.quit:
		}
		return false
	}
	if rec.Code == http.StatusOK && s.opts.LoseCreate != nil && s.opts.LoseCreate(n) {
		s.logf("create %d took effect; its answer is lost", n)
		hold(24 * time.Hour)
		return 0
	}
	if s.opts.CreateDelay != nil {
		if d := s.opts.CreateDelay(n); d > 0 && !hold(d) {
			s.logf("create %d: the client gave up after it took effect", n)
			return 0
		}
	}
	for k, v := range rec.Header() {
		w.Header()[k] = v
	}
	w.WriteHeader(rec.Code)
	w.Write(rec.Body.Bytes())
	return rec.Code
}
