// Package vast rents GPU hosts on Vast.ai for crabbox-runner: a REST client
// for the part of Vast's API a provisioner needs (offer search, create,
// show, list, attach SSH key, label, destroy) and a provisioner.Provider on
// top of it.
//
// The client follows what Vast's own CLI sends rather than its OpenAPI
// document where the two disagree (trailing slashes, runtype spelling, env
// as an object, units in MB), decodes Vast's loosely typed answers
// tolerantly, spaces its calls with one rate limiter per provider and
// retries 429 and 5xx with jittered exponential backoff, since Vast sends no
// Retry-After. The API key travels only in the Authorization header and never
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
	"time"

	"github.com/cenkalti/backoff/v4"
	"golang.org/x/time/rate"

	"github.com/crabbox/crabbox-runner/internal/apiurl"
)

// Defaults used when Config leaves a field zero.
const (
	DefaultAPIURL = "https://console.vast.ai"
	// DefaultMinRequestInterval spaces calls across all leases. Vast limits
	// each endpoint to a minimum interval per caller and answers 429 below
	// it; its published thresholds are 1 to 5.5 (units unstated). Two calls
	// a second, plus backoff on 429, stays clear of them for a provisioner
	// polling a handful of booting hosts.
	DefaultMinRequestInterval = 500 * time.Millisecond
	DefaultTimeout            = 30 * time.Second
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
	// MinRequestInterval spaces API calls; DefaultMinRequestInterval when
	// zero, no spacing when negative (tests).
	MinRequestInterval time.Duration
	// Timeout bounds each HTTP attempt; DefaultTimeout when zero.
	Timeout time.Duration
	Retry   Retry
	// HTTPClient supplies the transport; its redirect policy is replaced.
	HTTPClient *http.Client
	Logger     *slog.Logger

	// Provider settings, unused by the bare Client.

	// SSHUser is the user to log in as; "root", Vast's only user, when empty.
	SSHUser string
	// OfferLimit is how many offers one search asks for; default 64.
	OfferLimit int
}

// Client is a Vast.ai REST client. It is safe for concurrent use; all its
// calls share one rate limiter.
type Client struct {
	base    *url.URL
	key     string
	http    *http.Client
	limiter *rate.Limiter
	retry   Retry
	log     *slog.Logger
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
	interval := cfg.MinRequestInterval
	if interval == 0 {
		interval = DefaultMinRequestInterval
	}
	limit := rate.Inf
	if interval > 0 {
		limit = rate.Every(interval)
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Client{
		base: base,
		key:  key,
		http: &http.Client{
			Transport:     transport,
			Timeout:       timeout,
			CheckRedirect: apiurl.SameHostRedirects("vast", base, 5),
		},
		limiter: rate.NewLimiter(limit, 1),
		retry:   cfg.Retry.withDefaults(),
		log:     log,
	}, nil
}

// APIError is an error answer from Vast: a non-2xx status, or a 2xx whose
// body says "success": false. It never contains the API key.
type APIError struct {
	Status int    // HTTP status
	Code   string // Vast's machine code ("no_such_ask", "auth_error"), if any
	Msg    string // human text, capped
	Method string
	Path   string
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
	query  url.Values
	body   any // JSON-encoded when not nil
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

// call sends one API call with rate limiting and retries, and decodes a
// successful JSON answer into out (when not nil).
func (c *Client) call(ctx context.Context, o callOpts, out any) error {
	var body []byte
	if o.body != nil {
		var err error
		if body, err = json.Marshal(o.body); err != nil {
			return fmt.Errorf("vast: encoding %s %s: %w", o.method, o.path, err)
		}
	}
	eb := backoff.NewExponentialBackOff()
	eb.InitialInterval = c.retry.Initial
	eb.MaxInterval = c.retry.Max
	eb.MaxElapsedTime = c.retry.MaxElapsed
	eb.Multiplier = 2
	eb.RandomizationFactor = 0.5
	policy := backoff.WithContext(backoff.WithMaxRetries(eb, uint64(max(c.retry.MaxRetries, 0))), ctx)

	attempt := 0
	var last error
	op := func() error {
		attempt++
		if err := c.limiter.Wait(ctx); err != nil {
			return backoff.Permanent(err)
		}
		data, err := c.send(ctx, o, body)
		if err != nil {
			last = err
			if ctx.Err() != nil {
				return backoff.Permanent(ctx.Err())
			}
			if ae, ok := IsAPIError(err); ok {
				if ae.Status == http.StatusTooManyRequests || (o.idempotent && ae.Status >= 500) {
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
		if out == nil {
			return nil
		}
		if err := json.Unmarshal(data, out); err != nil {
			return backoff.Permanent(fmt.Errorf("vast: %s %s: decoding the answer: %w", o.method, o.path, err))
		}
		return nil
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
	if err != nil {
		return nil, fmt.Errorf("vast: %s %s: %w", o.method, o.path, c.scrub(err))
	}
	defer resp.Body.Close()
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		data, _ := io.ReadAll(io.LimitReader(resp.Body, maxErrorBytes))
		return nil, c.apiError(o, resp.StatusCode, data)
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
