// Package vast rents GPU hosts on Vast.ai for crabbox-runner: a REST client
// for the part of Vast's API a provisioner needs (offer search, create,
// show, list, attach SSH key, label, destroy) and a provisioner.Provider on
// top of it.
//
// The client follows what Vast's own CLI sends rather than its OpenAPI
// document where the two disagree (trailing slashes, runtype spelling, env
// as an object, units in MB), decodes Vast's loosely typed answers
// tolerantly, spaces its calls per endpoint at Vast's documented
// thresholds (pacing.go), backs off a 429 as long as its text or its
// Retry-After says, and retries 5xx with jittered exponential backoff. The
// API key travels only in the Authorization header and never
// appears in an error or a log line of this package.
package vast

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync/atomic"
	"time"

	"github.com/cenkalti/backoff/v4"

	"github.com/crabbox/crabbox-runner/internal/apiurl"
)

// Defaults used when Config leaves a field zero.
const (
	DefaultAPIURL = "https://console.vast.ai"
	// DefaultTimeout bounds one HTTP attempt of any call but create.
	DefaultTimeout = 30 * time.Second
	// DefaultCreateTimeout bounds a create: Vast's own client waits 120 s
	// for it ("Conservative enough for slow operations like log retrieval
	// and instance creation", _DEFAULT_TIMEOUT_SECONDS in vast-ai/vast-cli
	// vastai/api/client.py), and creates that answer after 30 s or more are
	// seen. Giving up sooner leaves a host rented and unknown.
	DefaultCreateTimeout = 120 * time.Second
	// max429 bounds how many 429s one call waits out (each one as long as
	// the answer says) before it gives up; they do not use the retry
	// budget of Config.Retry, which is for failures.
	max429 = 12
)

// Limits on what is read from Vast. Variables so tests can lower them.
var (
	maxResponseBytes int64 = 16 << 20 // offer searches run to a few hundred KB
	maxErrorBytes    int64 = 64 << 10
)

const maxErrorMsg = 512

// Retry says how failed calls are retried. Zero fields take the defaults.
type Retry struct {
	MaxRetries int           // retries after the first attempt; default 5
	Initial    time.Duration // first wait; default 500ms
	Max        time.Duration // longest wait; default 10s
	MaxElapsed time.Duration // give up after; default 2m
}

func (r Retry) withDefaults() Retry {
	if r.MaxRetries == 0 {
		r.MaxRetries = 5
	}
	if r.Initial <= 0 {
		r.Initial = 500 * time.Millisecond
	}
	if r.Max <= 0 {
		r.Max = 10 * time.Second
	}
	if r.MaxElapsed <= 0 {
		r.MaxElapsed = 2 * time.Minute
	}
	return r
}

// Config configures a Client (and a Provider).
type Config struct {
	// APIKey is the Vast API key (VAST_API_KEY). Required.
	APIKey string
	// APIURL is the API base, DefaultAPIURL when empty: https, or http on a
	// loopback host; no user info, query or fragment.
	APIURL string
	// MinRequestInterval, when zero, spaces each endpoint's calls at Vast's
	// documented threshold for it (pacing.go); when positive, at this
	// interval instead (per endpoint); when negative, not at all (tests).
	// A 429 naming a longer threshold raises an endpoint's spacing to it.
	MinRequestInterval time.Duration
	// PaceFactor scales the documented thresholds (tests against a fake
	// whose limits run faster); 1 when zero.
	PaceFactor float64
	// Timeout bounds each HTTP attempt; DefaultTimeout when zero.
	Timeout time.Duration
	// CreateTimeout bounds a create's HTTP attempt; DefaultCreateTimeout
	// when zero.
	CreateTimeout time.Duration
	Retry         Retry
	// OnRequest, when set, is told of every HTTP attempt: the endpoint as
	// method and route template ("PUT /api/v0/asks/{id}/") and the status,
	// 0 when no answer came. It must not block.
	OnRequest func(endpoint string, status int)
	// HTTPClient supplies the transport; its redirect policy is replaced.
	HTTPClient *http.Client
	Logger     *slog.Logger

	// Provider settings, unused by the bare Client.

	// SSHUser is the user to log in as; "root", Vast's only user, when empty.
	SSHUser string
	// OfferLimit is how many offers one search asks for; default 64.
	OfferLimit int
	// StatusTTL is how long one listing of the account's instances
	// answers Get for every booting host; DefaultStatusTTL when zero, a
	// GET per call when negative.
	StatusTTL time.Duration
	// SearchTTL is how long one offer search answers every lease of the
	// same class; DefaultSearchTTL when zero, none when negative.
	SearchTTL time.Duration
	// CreateLookup is how long a create whose answer was lost is looked
	// for by its label before it is called uncertain; DefaultCreateLookup
	// when zero.
	CreateLookup time.Duration
}

// Client is a Vast.ai REST client. It is safe for concurrent use; its
// calls share one pacer, which spaces each endpoint on its own.
type Client struct {
	base          *url.URL
	key           string
	http          *http.Client
	timeout       time.Duration
	createTimeout time.Duration
	pace          *pacer
	retry         Retry
	onRequest     atomic.Pointer[func(endpoint string, status int)]
	log           *slog.Logger
}

// NewClient checks cfg and returns a Client. It does not contact Vast.
func NewClient(cfg Config) (*Client, error) {
	key, err := apiurl.Key("vast", "VAST_API_KEY", cfg.APIKey)
	if err != nil {
		return nil, err
	}
	raw := cfg.APIURL
	if raw == "" {
		raw = DefaultAPIURL
	}
	base, err := apiurl.Validate(raw, DefaultAPIURL)
	if err != nil {
		return nil, fmt.Errorf("vast: CRABBOX_VAST_API_URL: %w", err)
	}
	base.Path = strings.TrimSuffix(base.Path, "/")

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
	if timeout <= 0 {
		timeout = DefaultTimeout
	}
	createTimeout := cfg.CreateTimeout
	if createTimeout <= 0 {
		createTimeout = DefaultCreateTimeout
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	c := &Client{
		base: base,
		key:  key,
		// Each attempt gets its own deadline (send), as a create
		// waits longer than the other calls.
		http: &http.Client{
			Transport:     transport,
			CheckRedirect: apiurl.SameHostRedirects("vast", base, 5),
		},
		timeout:       timeout,
		createTimeout: createTimeout,
		pace:          newPacer(cfg.MinRequestInterval, cfg.PaceFactor),
		retry:         cfg.Retry.withDefaults(),
		log:           log,
	}
	if cfg.OnRequest != nil {
		c.CountRequests(cfg.OnRequest)
	}
	return c, nil
}

// CountRequests sets the callback told of every HTTP attempt (see
// Config.OnRequest), for a caller that has it only after the client was
// built.
func (c *Client) CountRequests(f func(endpoint string, status int)) {
	if f == nil {
		c.onRequest.Store(nil)
		return
	}
	c.onRequest.Store(&f)
}

// APIError is an error answer from Vast: a non-2xx status, or a 2xx whose
// body says "success": false. It never contains the API key.
type APIError struct {
	Status int    // HTTP status
	Code   string // Vast's machine code ("no_such_ask", "auth_error"), if any
	Msg    string // human text, capped
	Method string
	Path   string
	// RetryAfter is the answer's Retry-After, when it had one.
	RetryAfter time.Duration
}

func (e *APIError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "vast: %s %s: HTTP %d", e.Method, e.Path, e.Status)
	if e.Code != "" {
		b.WriteString(" " + e.Code)
	}
	if e.Msg != "" {
		b.WriteString(": " + e.Msg)
	}
	return b.String()
}

// Temporary reports whether retrying the same call later may succeed.
func (e *APIError) Temporary() bool {
	return e.Status == http.StatusTooManyRequests || e.Status >= 500
}

// has reports whether the error carries the code, in the code field or in
// the text (Vast's create puts "no_such_ask" only in msg on some paths).
func (e *APIError) has(code string) bool {
	return e.Code == code || strings.Contains(e.Msg, code)
}

// IsAPIError returns the *APIError in err's chain, if any.
func IsAPIError(err error) (*APIError, bool) {
	var ae *APIError
	ok := errors.As(err, &ae)
	return ae, ok
}

// callOpts describe one API call.
type callOpts struct {
	method string
	path   string // under the base, with its trailing slash
	// route is the path's template ("/api/v0/asks/{id}/"): with the method,
	// the endpoint Vast paces and OnRequest counts.
	route string
	// timeout bounds one attempt; the client's Timeout when zero.
	timeout time.Duration
	query   url.Values
	body    any // JSON-encoded when not nil
	// idempotent calls are retried on 5xx and transport errors; others
	// (create) only on 429 and on failures to connect, where the server
	// cannot have acted.
	idempotent bool
}

// errAmbiguous marks a failed call that may have reached the server, so
// its effect is unknown.
type errAmbiguous struct{ err error }

func (e *errAmbiguous) Error() string { return e.err.Error() }
func (e *errAmbiguous) Unwrap() error { return e.err }

// call sends one API call, paced per endpoint, with retries, and decodes
// a successful JSON answer into out (when not nil).
//
// A 429 is waited out as long as the answer says (its threshold or its
// Retry-After) and tried again, up to max429 times, without using the
// failure retries: a create held back by the rate limit has not failed.
func (c *Client) call(ctx context.Context, o callOpts, out any) error {
	var body []byte
	if o.body != nil {
		var err error
		if body, err = json.Marshal(o.body); err != nil {
			return fmt.Errorf("vast: encoding %s %s: %w", o.method, o.path, err)
		}
	}
	ep := o.endpoint()
	eb := backoff.NewExponentialBackOff()
	eb.InitialInterval = c.retry.Initial
	eb.MaxInterval = c.retry.Max
	eb.MaxElapsedTime = c.retry.MaxElapsed
	eb.Multiplier = 2
	eb.RandomizationFactor = 0.5
	policy := backoff.WithContext(backoff.WithMaxRetries(eb, uint64(max(c.retry.MaxRetries, 0))), ctx)

	attempt, limited := 0, 0
	var last error
	op := func() error {
		for {
			attempt++
			if err := c.pace.wait(ctx, ep); err != nil {
				return backoff.Permanent(err)
			}
			data, err := c.send(ctx, o, body)
			if err == nil {
				if out == nil {
					return nil
				}
				if err := json.Unmarshal(data, out); err != nil {
					return backoff.Permanent(fmt.Errorf("vast: %s %s: decoding the answer: %w", o.method, o.path, err))
				}
				return nil
			}
			last = err
			if ctx.Err() != nil {
				return backoff.Permanent(ctx.Err())
			}
			ae, isAPI := IsAPIError(err)
			if isAPI && ae.Status == http.StatusTooManyRequests {
				limited++
				fallback := min(c.retry.Initial<<min(limited-1, 10), c.retry.Max)
				wait := c.pace.backoff(ep, parseThreshold(ae.Msg), ae.RetryAfter, fallback)
				if limited > max429 || ae.RetryAfter > c.retry.MaxElapsed {
					// A quota that resets hours away, or a limit that
					// does not let up: give up rather than hold a lease.
					return backoff.Permanent(err)
				}
				c.log.Debug("vast: rate limited; waiting", "endpoint", ep, "wait", wait.Round(time.Millisecond), "error", err)
				continue
			}
			if isAPI {
				if o.idempotent && ae.Status >= 500 {
					return err
				}
				if ae.Status >= 500 {
					return backoff.Permanent(&errAmbiguous{err})
				}
				return backoff.Permanent(err)
			}
			// Transport error.
			if o.idempotent || isDialError(err) {
				return err
			}
			return backoff.Permanent(&errAmbiguous{err})
		}
	}
	notify := func(err error, wait time.Duration) {
		c.log.Debug("vast: retrying", "method", o.method, "path", o.path, "attempt", attempt, "wait", wait.Round(time.Millisecond), "error", err)
	}
	err := backoff.RetryNotify(op, policy, notify)
	if err == nil {
		return nil
	}
	if ctx.Err() != nil && last != nil {
		return fmt.Errorf("%w (last error: %v)", ctx.Err(), last)
	}
	return err
}

// endpoint is the call's method and route template.
func (o callOpts) endpoint() string {
	r := o.route
	if r == "" {
		r = o.path
	}
	return o.method + " " + r
}

// isDialError reports a failure to connect, after which the server cannot
// have seen the request.
func isDialError(err error) bool {
	var oe *net.OpError
	return errors.As(err, &oe) && oe.Op == "dial"
}

// send makes one HTTP attempt and returns the body of a successful answer.
func (c *Client) send(ctx context.Context, o callOpts, body []byte) ([]byte, error) {
	u := *c.base
	u.Path = c.base.Path + o.path
	if len(o.query) > 0 {
		u.RawQuery = o.query.Encode()
	}
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	timeout := o.timeout
	if timeout <= 0 {
		timeout = c.timeout
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, o.method, u.String(), rd)
	if err != nil {
		return nil, fmt.Errorf("vast: %s %s: %w", o.method, o.path, err)
	}
	req.Header.Set("Authorization", "Bearer "+c.key)
	req.Header.Set("Accept", "application/json")
	req.Header.Set("User-Agent", "crabbox-runner")
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := c.http.Do(req)
	if f := c.onRequest.Load(); f != nil {
		status := 0
		if err == nil {
			status = resp.StatusCode
		}
		(*f)(o.endpoint(), status)
	}
	if err != nil {
		if errors.Is(err, context.DeadlineExceeded) && ctx.Err() != nil {
			err = fmt.Errorf("no answer within %s: %w", timeout, err)
		}
		return nil, fmt.Errorf("vast: %s %s: %w", o.method, o.path, c.scrub(err))
	}
	defer resp.Body.Close()
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		data, _ := io.ReadAll(io.LimitReader(resp.Body, maxErrorBytes))
		e := c.apiError(o, resp.StatusCode, data)
		e.RetryAfter = parseRetryAfter(resp.Header)
		return nil, e
	}
	data, err := io.ReadAll(io.LimitReader(resp.Body, maxResponseBytes+1))
	if err != nil {
		return nil, fmt.Errorf("vast: %s %s: reading the answer: %w", o.method, o.path, c.scrub(err))
	}
	if int64(len(data)) > maxResponseBytes {
		return nil, fmt.Errorf("vast: %s %s: answer larger than %d bytes", o.method, o.path, maxResponseBytes)
	}
	// Some endpoints answer 200 with "success": false.
	var env struct {
		Success *bool `json:"success"`
	}
	if json.Unmarshal(data, &env) == nil && env.Success != nil && !*env.Success {
		return nil, c.apiError(o, resp.StatusCode, data)
	}
	return data, nil
}

// apiError decodes Vast's varied error bodies: JSON with error and msg (or
// message), msg alone, FastAPI's detail (a string or a list), or plain
// text (429s often are).
func (c *Client) apiError(o callOpts, status int, data []byte) *APIError {
	e := &APIError{Status: status, Method: o.method, Path: o.path}
	var obj map[string]json.RawMessage
	if json.Unmarshal(data, &obj) == nil && obj != nil {
		e.Code = jsonText(obj["error"])
		for _, k := range []string{"msg", "message", "detail"} {
			if m := jsonText(obj[k]); m != "" {
				e.Msg = m
				break
			}
		}
		if e.Code == "" && e.Msg == "" {
			e.Msg = strings.TrimSpace(string(data))
		}
	} else {
		e.Msg = strings.TrimSpace(string(data))
	}
	e.Code = c.clean(e.Code, 64)
	e.Msg = c.clean(e.Msg, maxErrorMsg)
	return e
}

// jsonText renders a JSON value as text: strings as themselves, anything
// else (a detail list) as compact JSON.
func jsonText(raw json.RawMessage) string {
	if len(raw) == 0 || string(raw) == "null" {
		return ""
	}
	var s string
	if json.Unmarshal(raw, &s) == nil {
		return s
	}
	var buf bytes.Buffer
	if json.Compact(&buf, raw) == nil {
		return buf.String()
	}
	return string(raw)
}

// clean removes the key (should a server echo it), control characters and
// excess length from text that goes into an error.
func (c *Client) clean(s string, n int) string {
	s = strings.ReplaceAll(s, c.key, "[REDACTED]")
	s = strings.Map(func(r rune) rune {
		if r < ' ' || r == 0x7f {
			return ' '
		}
		return r
	}, s)
	s = strings.Join(strings.Fields(s), " ")
	if len(s) > n {
		s = s[:n] + "…"
	}
	return s
}

// scrub keeps the key out of transport errors; none should carry it, but
// this is the net under that.
func (c *Client) scrub(err error) error {
	if err == nil || !strings.Contains(err.Error(), c.key) {
		return err
	}
	return errors.New(strings.ReplaceAll(err.Error(), c.key, "[REDACTED]"))
}
