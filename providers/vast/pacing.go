package vast

import (
	"context"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Vast limits each endpoint separately, "enforced as a minimum interval
// between requests for a given endpoint and identity" (vast-ai/docs
// api-reference/rate-limits-and-errors.mdx), and answers 429 below it. The
// intervals below are the thresholds the 429 examples of Vast's OpenAPI
// document print per operation (vast-ai/docs api-reference/openapi.yaml;
// units unstated, read as seconds, the stricter reading). Search and key
// attach print none: they get 2 s, the threshold of their nearest siblings
// (show instance, detach SSH key). A looser real service costs only some
// waiting; a stricter one teaches the client its threshold through the
// 429's text (see pacer.backoff).
var documentedIntervals = map[string]time.Duration{
	"POST /api/v0/bundles/":             2 * time.Second,         // searchOffers: no example
	"PUT /api/v0/asks/{id}/":            4500 * time.Millisecond, // createInstance: threshold=4.5
	"GET /api/v0/instances/{id}/":       2 * time.Second,         // showInstance: threshold=2.0
	"GET /api/v1/instances/":            time.Second,             // showInstances: threshold=1.0
	"PUT /api/v0/instances/{id}/":       time.Second,             // manageInstance: threshold=1.0
	"DELETE /api/v0/instances/{id}/":    3 * time.Second,         // destroyInstance: threshold=3.0
	"POST /api/v0/instances/{id}/ssh/":  2 * time.Second,         // attachSshKey: no example; detachSshKey says 2.0
	"DELETE /api/v0/instances/{id}/ssh": 2 * time.Second,         // not used; listed for completeness
}

// defaultInterval paces an endpoint missing from the table.
const defaultInterval = 2 * time.Second

// maxLearned caps an interval learned from a 429, so a garbled threshold
// cannot stall an endpoint for long.
const maxLearned = time.Minute

// pacer spaces calls per endpoint (method + route template). Each endpoint
// keeps the earliest time its next call may start; a caller reserves the
// next slot and waits for it, so concurrent callers queue in order rather
// than race and collect 429s.
type pacer struct {
	// scale multiplies every interval (tests run Vast's limits faster);
	// fixed, when non-zero, replaces the table: > 0 one interval for every
	// endpoint, < 0 no pacing but for the retry policy's backoff on 429.
	scale float64
	fixed time.Duration

	mu  sync.Mutex
	eps map[string]*endpointPace
}

type endpointPace struct {
	interval time.Duration // current spacing, learned upwards from 429s
	next     time.Time     // earliest start of the next call
	// epoch counts 429s: a caller whose slot was reserved before one
	// queues again behind the new pace rather than go at the old one.
	epoch int
}

// jitterMargin is added to every interval: the server measures arrivals,
// the client spaces departures, and a request that has to dial a new
// connection arrives later than one on a warm connection.
const jitterMargin = 20 * time.Millisecond

func newPacer(fixed time.Duration, scale float64) *pacer {
	if scale <= 0 {
		scale = 1
	}
	return &pacer{scale: scale, fixed: fixed, eps: map[string]*endpointPace{}}
}

func (p *pacer) endpoint(ep string) *endpointPace {
	e, ok := p.eps[ep]
	if !ok {
		iv := p.fixed
		if iv == 0 {
			d, ok := documentedIntervals[ep]
			if !ok {
				d = defaultInterval
			}
			iv = time.Duration(float64(d) * p.scale)
			iv += iv/10 + jitterMargin
		}
		if iv < 0 {
			iv = 0
		}
		e = &endpointPace{interval: iv}
		p.eps[ep] = e
	}
	return e
}

// wait reserves the endpoint's next slot and sleeps until it comes.
func (p *pacer) wait(ctx context.Context, ep string) error {
	for {
		p.mu.Lock()
		e := p.endpoint(ep)
		slot := time.Now()
		if e.next.After(slot) {
			slot = e.next
		}
		e.next = slot.Add(e.interval)
		epoch := e.epoch
		p.mu.Unlock()
		if d := time.Until(slot); d > 0 {
			t := time.NewTimer(d)
			select {
			case <-ctx.Done():
				t.Stop()
				return ctx.Err()
			case <-t.C:
			}
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		p.mu.Lock()
		again := e.epoch != epoch
		p.mu.Unlock()
		if !again {
			return nil
		}
	}
}

// interval is the endpoint's current spacing (for tests and logs).
func (p *pacer) interval(ep string) time.Duration {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.endpoint(ep).interval
}

// backoff takes in a 429: the endpoint's spacing grows to the threshold the
// answer names (never shrinks), and its next call waits at least that long,
// the Retry-After when one came, or the fallback when the answer says
// nothing. It returns how long the next call on the endpoint will wait.
func (p *pacer) backoff(ep string, threshold, retryAfter, fallback time.Duration) time.Duration {
	p.mu.Lock()
	defer p.mu.Unlock()
	e := p.endpoint(ep)
	e.epoch++
	if threshold > 0 && p.fixed >= 0 {
		threshold = min(threshold+threshold/10+jitterMargin, maxLearned)
		if threshold > e.interval {
			e.interval = threshold
		}
	}
	wait := max(threshold, retryAfter)
	if wait <= 0 || p.fixed < 0 {
		// Unpaced (tests): back off by the retry policy alone.
		wait = fallback
	}
	now := time.Now()
	if until := now.Add(wait); until.After(e.next) {
		e.next = until
	}
	return time.Until(e.next)
}

// reThreshold finds "threshold=4.5" in Vast's 429 text ("API requests too
// frequent endpoint threshold=4.5", or with a colon after "frequent").
var reThreshold = regexp.MustCompile(`threshold\s*=\s*([0-9]+(?:\.[0-9]+)?)`)

// parseThreshold reads the interval a 429 names, in seconds; 0 if none.
func parseThreshold(msg string) time.Duration {
	m := reThreshold.FindStringSubmatch(msg)
	if m == nil {
		return 0
	}
	f, err := strconv.ParseFloat(m[1], 64)
	if err != nil || f <= 0 {
		return 0
	}
	return time.Duration(f * float64(time.Second))
}

// parseRetryAfter reads a Retry-After header: delay-seconds or an HTTP
// date. Vast sends one on some 429s (the daily search quota, whose value
// can be hours away; rate-limits-and-errors.mdx).
func parseRetryAfter(h http.Header) time.Duration {
	v := strings.TrimSpace(h.Get("Retry-After"))
	if v == "" {
		return 0
	}
	if n, err := strconv.ParseFloat(v, 64); err == nil {
		if n <= 0 {
			return 0
		}
		return time.Duration(n * float64(time.Second))
	}
	if t, err := http.ParseTime(v); err == nil {
		return max(time.Until(t), 0)
	}
	return 0
}
