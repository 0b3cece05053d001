package lambda

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/cenkalti/backoff/v4"

	"github.com/crabbox/crabbox-runner/internal/apiurl"
)

// DefaultAPIURL is Lambda's API host; every path starts with /api/v1.
const DefaultAPIURL = "https://cloud.lambda.ai"

// Defaults of ClientConfig.
const (
	// DefaultMinRequestInterval is Lambda's documented general limit: about
	// one request per second.
	DefaultMinRequestInterval = time.Second
	// DefaultLaunchInterval is Lambda's documented launch limit: one launch
	// per 12 seconds, five per minute.
	DefaultLaunchInterval = 12 * time.Second
	DefaultTimeout        = 30 * time.Second
	// MaxResponseBytes caps every response body read. The largest answer,
	// GET /instances, is a few KB per instance.
	MaxResponseBytes = 8 << 20
	// MaxUserDataBytes is Lambda's limit on launch user-data ("1MB").
	MaxUserDataBytes = 1_000_000
)

const apiPrefix = "/api/v1"

// ClientConfig configures a Client.
type ClientConfig struct {
	// APIURL is Lambda's base URL, DefaultAPIURL when empty. It must be
	// https (http only on loopback, for tests) without user info, query or
	// fragment. A trailing /api/v1 is accepted and ignored.
	APIURL string
	// APIKey authenticates every request (Authorization: Bearer). Secret:
	// it never appears in an error or a log line.
	APIKey string
	// HTTPClient supplies the transport; its CheckRedirect is replaced.
	HTTPClient *http.Client
	// Timeout bounds each request; DefaultTimeout when zero.
	Timeout time.Duration
	// MinRequestInterval spaces all requests of the client;
	// DefaultMinRequestInterval when zero, no spacing when negative.
	MinRequestInterval time.Duration
	// LaunchInterval spaces launch requests, on top of MinRequestInterval;
	// DefaultLaunchInterval when zero, no spacing when negative.
	LaunchInterval time.Duration
	// Retry is how 429s, 5xx answers and network errors are retried.
	Retry  RetryPolicy
	Logger *slog.Logger
	// OnRequest, when set, is called after every HTTP attempt with the
	// endpoint ("POST /api/v1/instance-operations/launch", ids replaced by
	// {id}) and the answer's status, 0 when none came. It feeds
	// crabbox_provider_requests_total.
	OnRequest func(endpoint string, status int)
}

// RetryPolicy is a capped exponential backoff with jitter. Zero fields take
// the defaults noted.
type RetryPolicy struct {
	InitialInterval time.Duration // 1s
	MaxInterval     time.Duration // 30s
	MaxElapsedTime  time.Duration // 2m; the context may end it sooner
	MaxAttempts     int           // 8
}

func (r RetryPolicy) withDefaults() RetryPolicy {
	if r.InitialInterval <= 0 {
		r.InitialInterval = time.Second
	}
	if r.MaxInterval <= 0 {
		r.MaxInterval = 30 * time.Second
	}
	if r.MaxElapsedTime <= 0 {
		r.MaxElapsedTime = 2 * time.Minute
	}
	if r.MaxAttempts <= 0 {
		r.MaxAttempts = 8
	}
	return r
}

// Client calls Lambda's Cloud API. It is safe for concurrent use, and all
// its callers share its rate limiters, so one Client per API key is the
// unit that respects Lambda's limits.
type Client struct {
	base  *url.URL
	key   string
	http  *http.Client
	limit *limiter
	retry RetryPolicy
	log   *slog.Logger

	onRequest atomic.Pointer[func(endpoint string, status int)]
}

// NewClient checks cfg and returns a Client. It does not contact Lambda.
func NewClient(cfg ClientConfig) (*Client, error) {
	key, err := apiurl.Key("lambda", "LAMBDA_API_KEY", cfg.APIKey)
	if err != nil {
		return nil, err
	}
	raw := cfg.APIURL
	if raw == "" {
		raw = DefaultAPIURL
	}
	base, err := validateBaseURL(raw)
	if err != nil {
		return nil, fmt.Errorf("lambda: CRABBOX_LAMBDA_API_URL: %w", err)
	}
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
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	c := &Client{
		base: base,
		key:  key,
		http: &http.Client{
			Transport:     transport,
			Timeout:       timeout,
			CheckRedirect: sameHostRedirects(base),
		},
		limit: newLimiter(interval(cfg.MinRequestInterval, DefaultMinRequestInterval), interval(cfg.LaunchInterval, DefaultLaunchInterval)),
		retry: cfg.Retry.withDefaults(),
		log:   log,
	}
	c.CountRequests(cfg.OnRequest)
	return c, nil
}

// CountRequests sets (or, with nil, clears) the OnRequest callback of
// ClientConfig after the client is made: serve builds its metrics after
// its providers.
func (c *Client) CountRequests(f func(endpoint string, status int)) {
	if f == nil {
		c.onRequest.Store(nil)
		return
	}
	c.onRequest.Store(&f)
}

// endpointOf is the route template of a call: the path with its ids
// replaced by {id}, so that the metric's label values stay few.
func endpointOf(cl call) string {
	p := cl.path
	for _, prefix := range []string{"/ssh-keys/", "/instances/"} {
		if strings.HasPrefix(p, prefix) && len(p) > len(prefix) {
			p = prefix + "{id}"
		}
	}
	return cl.method + " " + apiPrefix + p
}

func (c *Client) count(cl call, status int) {
	if f := c.onRequest.Load(); f != nil {
		(*f)(endpointOf(cl), status)
	}
}

// interval reads a configured spacing: zero is the default, negative none.
func interval(v, def time.Duration) time.Duration {
	switch {
	case v < 0:
		return 0
	case v == 0:
		return def
	}
	return v
}

// BaseURL is the API base the client talks to, without /api/v1.
func (c *Client) BaseURL() string { return c.base.String() }

// validateBaseURL applies DESIGN.md §5 (package apiurl) and drops a
// trailing /api/v1, which every call adds.
func validateBaseURL(raw string) (*url.URL, error) {
	u, err := apiurl.Validate(raw, DefaultAPIURL)
	if err != nil {
		return nil, err
	}
	u.Path = strings.TrimSuffix(strings.TrimSuffix(u.Path, "/"), apiPrefix)
	u.Path = strings.TrimSuffix(u.Path, "/")
	u.RawPath = ""
	return u, nil
}

// sameHostRedirects refuses any redirect off the API's scheme and host, so
// the key is never sent to a server we were not pointed at; the error type
// tells the retry loop not to try again.
func sameHostRedirects(base *url.URL) func(*http.Request, []*http.Request) error {
	check := apiurl.SameHostRedirects("lambda", base, 5)
	return func(req *http.Request, via []*http.Request) error {
		if err := check(req, via); err != nil {
			return &redirectError{err}
		}
		return nil
	}
}

// call describes one API operation.
type call struct {
	method string
	path   string // below /api/v1, e.g. /instances
	body   any    // JSON request body, nil for none
	out    any    // where the envelope's data goes, nil to discard
	// launch: the call also waits for the launch limiter, and is not
	// retried after a 5xx or a network error, which may hide a launch that
	// happened (a retry could rent a second host).
	launch bool
}

// do performs the call with rate limiting and retries.
func (c *Client) do(ctx context.Context, cl call) error {
	var body []byte
	if cl.body != nil {
		var err error
		if body, err = json.Marshal(cl.body); err != nil {
			return fmt.Errorf("lambda: encoding %s %s: %w", cl.method, cl.path, err)
		}
	}
	bo := backoff.NewExponentialBackOff()
	bo.InitialInterval = c.retry.InitialInterval
	bo.MaxInterval = c.retry.MaxInterval
	bo.MaxElapsedTime = c.retry.MaxElapsedTime
	bo.Multiplier = 2
	bo.RandomizationFactor = 0.5
	bo.Reset()
	for attempt := 1; ; attempt++ {
		if err := c.limit.wait(ctx, cl.launch); err != nil {
			return fmt.Errorf("lambda: %s %s: waiting for the rate limit: %w", cl.method, apiPrefix+cl.path, err)
		}
		retryAfter, err := c.once(ctx, cl, body)
		if err == nil {
			return nil
		}
		if !c.retryable(cl, err) || attempt >= c.retry.MaxAttempts {
			return err
		}
		wait := bo.NextBackOff()
		if wait == backoff.Stop {
			return err
		}
		if retryAfter > wait {
			wait = min(retryAfter, c.retry.MaxInterval)
		}
		c.log.Info("lambda: retrying", "method", cl.method, "path", apiPrefix+cl.path,
			"attempt", attempt, "wait", wait.Round(time.Millisecond), "error", err.Error())
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return fmt.Errorf("%w (gave up: %w)", err, ctx.Err())
		case <-t.C:
		}
	}
}

// retryable: rate limits always (the request was refused, not run); server
// errors and network failures unless the call is a launch.
func (c *Client) retryable(cl call, err error) bool {
	var ae *APIError
	if errors.As(err, &ae) {
		if ae.Status == http.StatusTooManyRequests {
			return true
		}
		return ae.Temporary() && !cl.launch
	}
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return false
	}
	var re *redirectError
	if errors.As(err, &re) {
		return false
	}
	var ne *networkError
	return errors.As(err, &ne) && !cl.launch
}

// networkError is a request that got no HTTP answer.
type networkError struct{ err error }

func (e *networkError) Error() string { return e.err.Error() }
func (e *networkError) Unwrap() error { return e.err }

// redirectError is a refused redirect: never retried.
type redirectError struct{ err error }

func (e *redirectError) Error() string { return e.err.Error() }
func (e *redirectError) Unwrap() error { return e.err }

// once sends one request. It returns how long the server asked us to wait,
// if it did.
func (c *Client) once(ctx context.Context, cl call, body []byte) (time.Duration, error) {
	u := *c.base
	u.Path = c.base.Path + apiPrefix + cl.path
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, cl.method, u.String(), rd)
	if err != nil {
		return 0, fmt.Errorf("lambda: %s %s: %w", cl.method, apiPrefix+cl.path, err)
	}
	req.Header.Set("Authorization", "Bearer "+c.key)
	req.Header.Set("Accept", "application/json")
	req.Header.Set("User-Agent", "crabbox-runner")
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := c.http.Do(req)
	if err != nil {
		c.count(cl, 0)
		// url.Error names the URL, which holds no secret: the key travels
		// only in the header.
		var re *redirectError
		if errors.As(err, &re) {
			return 0, &redirectError{fmt.Errorf("lambda: %s %s: %w", cl.method, apiPrefix+cl.path, re.err)}
		}
		if ctx.Err() != nil {
			return 0, fmt.Errorf("lambda: %s %s: %w", cl.method, apiPrefix+cl.path, ctx.Err())
		}
		return 0, &networkError{fmt.Errorf("lambda: %s %s: %w", cl.method, apiPrefix+cl.path, err)}
	}
	defer resp.Body.Close()
	c.count(cl, resp.StatusCode)
	data, err := io.ReadAll(io.LimitReader(resp.Body, MaxResponseBytes+1))
	if err != nil {
		return 0, &networkError{fmt.Errorf("lambda: %s %s: reading the answer: %w", cl.method, apiPrefix+cl.path, err)}
	}
	if len(data) > MaxResponseBytes {
		return 0, fmt.Errorf("lambda: %s %s: answer larger than %d bytes", cl.method, apiPrefix+cl.path, MaxResponseBytes)
	}
	if resp.StatusCode >= 200 && resp.StatusCode < 300 {
		return 0, c.decodeData(cl, data)
	}
	return retryAfter(resp.Header.Get("Retry-After")), c.decodeError(cl, resp.StatusCode, data)
}

// decodeData unwraps {"data": …} into cl.out.
func (c *Client) decodeData(cl call, data []byte) error {
	var env struct {
		Data json.RawMessage `json:"data"`
	}
	if err := json.Unmarshal(data, &env); err != nil {
		return fmt.Errorf("lambda: %s %s: answer is not JSON: %w", cl.method, apiPrefix+cl.path, err)
	}
	if len(env.Data) == 0 || string(env.Data) == "null" {
		return fmt.Errorf("lambda: %s %s: answer has no data", cl.method, apiPrefix+cl.path)
	}
	if cl.out == nil {
		return nil
	}
	if err := json.Unmarshal(env.Data, cl.out); err != nil {
		return fmt.Errorf("lambda: %s %s: unexpected answer: %w", cl.method, apiPrefix+cl.path, err)
	}
	return nil
}

// decodeError reads Lambda's {"error": {code, message, suggestion}}, and
// anything else (an empty 429, a proxy's HTML 502) as an error without code.
func (c *Client) decodeError(cl call, status int, data []byte) error {
	ae := &APIError{Method: cl.method, Path: apiPrefix + cl.path, Status: status}
	var env struct {
		Error *struct {
			Code       string `json:"code"`
			Message    string `json:"message"`
			Suggestion string `json:"suggestion"`
		} `json:"error"`
	}
	if err := json.Unmarshal(data, &env); err == nil && env.Error != nil {
		ae.Code = cleanText(env.Error.Code, c.key)
		ae.Message = cleanText(env.Error.Message, c.key)
		ae.Suggestion = cleanText(env.Error.Suggestion, c.key)
	} else if len(bytes.TrimSpace(data)) > 0 {
		ae.Message = cleanText(string(data), c.key)
	}
	return ae
}

// retryAfter reads a Retry-After header in seconds; Lambda does not
// document one, but honouring it costs nothing.
func retryAfter(v string) time.Duration {
	if v == "" {
		return 0
	}
	if n, err := strconv.Atoi(strings.TrimSpace(v)); err == nil && n > 0 {
		return time.Duration(n) * time.Second
	}
	if t, err := http.ParseTime(v); err == nil {
		if d := time.Until(t); d > 0 {
			return d
		}
	}
	return 0
}
