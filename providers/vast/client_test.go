package vast

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/crabbox/crabbox-runner/provisioner"
)

const testKey = "vk_internal-test-key-7f3a9c"

func testClient(t *testing.T, url string, mutate ...func(*Config)) *Client {
	t.Helper()
	cfg := Config{APIKey: testKey, APIURL: url, MinRequestInterval: -1,
		Retry: Retry{MaxRetries: 3, Initial: time.Millisecond, Max: 5 * time.Millisecond, MaxElapsed: 5 * time.Second}}
	for _, m := range mutate {
		m(&cfg)
	}
	c, err := NewClient(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestNewClientRefusesBadSettings(t *testing.T) {
	cases := []struct {
		name, key, url, want string
	}{
		{"no key", "", "https://console.vast.ai", "VAST_API_KEY is not set"},
		{"key with a newline", "abc\ndef", "", "whitespace"},
		{"plain http off loopback", testKey, "http://console.vast.ai", "https"},
		{"user info", testKey, "https://user:pass@console.vast.ai", "user info"},
		{"query", testKey, "https://console.vast.ai/?api_key=x", "query"},
		{"fragment", testKey, "https://console.vast.ai/#x", "fragment"},
		{"relative", testKey, "console.vast.ai", "absolute"},
		{"other scheme", testKey, "ftp://console.vast.ai", "scheme"},
	}
	for _, tc := range cases {
		_, err := NewClient(Config{APIKey: tc.key, APIURL: tc.url})
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want an error about %q", tc.name, err, tc.want)
			continue
		}
		if tc.key != "" && strings.Contains(err.Error(), tc.key) {
			t.Errorf("%s: the error shows the key", tc.name)
		}
	}
	for _, ok := range []string{"", "https://console.vast.ai", "http://127.0.0.1:8080", "http://localhost:1/base/", "http://[::1]:9"} {
		if _, err := NewClient(Config{APIKey: testKey, APIURL: ok}); err != nil {
			t.Errorf("%q refused: %v", ok, err)
		}
	}
}

// TestErrorBodies: every body style of reference §2 decodes into an
// APIError with its status, code and message.
func TestErrorBodies(t *testing.T) {
	cases := []struct {
		name        string
		status      int
		contentType string
		body        string
		code, msg   string
	}{
		{"error and msg", 400, "application/json", `{"success": false, "error": "invalid_args", "msg": "Invalid args: disk"}`, "invalid_args", "Invalid args: disk"},
		{"msg only", 404, "application/json", `{"msg": "Invalid user key"}`, "", "Invalid user key"},
		{"message", 403, "application/json", `{"error": "not_authorized", "message": "scoped key"}`, "not_authorized", "scoped key"},
		{"detail string", 429, "application/json", `{"detail": "API requests too frequent endpoint threshold=2.0"}`, "", "API requests too frequent endpoint threshold=2.0"},
		{"detail list", 422, "application/json", `{"detail": [{"loc": ["body", "disk"], "msg": "not a number"}]}`, "", `[{"loc":["body","disk"],"msg":"not a number"}]`},
		{"plain text", 429, "text/plain", "API requests too frequent\n", "", "API requests too frequent"},
		{"html", 404, "text/html", "<html><h1>Not Found</h1></html>", "", "<html><h1>Not Found</h1></html>"},
		{"empty", 401, "", "", "", ""},
		{"200 with success false", 200, "application/json", `{"success": false, "error": "no_capacity", "msg": "try later"}`, "no_capacity", "try later"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if tc.contentType != "" {
					w.Header().Set("Content-Type", tc.contentType)
				}
				w.WriteHeader(tc.status)
				io.WriteString(w, tc.body)
			}))
			defer srv.Close()
			c := testClient(t, srv.URL, func(c *Config) { c.Retry.MaxRetries = -1 })
			err := c.DestroyInstance(context.Background(), 99)
			if tc.status == 404 {
				// Destroy treats 404 as done; look at the same answer on get.
				_, err = c.GetInstance(context.Background(), 99)
				if !errors.Is(err, provisioner.ErrNotFound) {
					t.Fatalf("get on 404: %v", err)
				}
				err = c.AttachSSHKey(context.Background(), 99, "ssh-ed25519 AAAA x")
			}
			ae, ok := IsAPIError(err)
			if !ok {
				t.Fatalf("error %v (%T) is not an APIError", err, err)
			}
			if ae.Status != tc.status || ae.Code != tc.code || ae.Msg != tc.msg {
				t.Fatalf("APIError{%d %q %q}, want {%d %q %q}", ae.Status, ae.Code, ae.Msg, tc.status, tc.code, tc.msg)
			}
		})
	}
}

func TestRetriesAndWhatIsNotRetried(t *testing.T) {
	var calls atomic.Int32
	fail := atomic.Int32{}
	status := atomic.Int32{}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		calls.Add(1)
		if fail.Add(-1) >= 0 {
			w.WriteHeader(int(status.Load()))
			io.WriteString(w, "API requests too frequent")
			return
		}
		io.WriteString(w, `{"success": true, "new_contract": 77, "instances": {"id": 5}}`)
	}))
	defer srv.Close()
	c := testClient(t, srv.URL)
	ctx := context.Background()
	cases := []struct {
		name      string
		status    int
		fails     int
		call      func() error
		wantCalls int32
		wantErr   bool
	}{
		{"get retries 429", 429, 2, func() error { _, err := c.GetInstance(ctx, 5); return err }, 3, false},
		{"get retries 502", 502, 3, func() error { _, err := c.GetInstance(ctx, 5); return err }, 4, false},
		{"get gives up", 503, 10, func() error { _, err := c.GetInstance(ctx, 5); return err }, 4, true},
		{"get does not retry 400", 400, 1, func() error { _, err := c.GetInstance(ctx, 5); return err }, 1, true},
		{"create retries 429", 429, 2, func() error { _, err := c.CreateInstance(ctx, 1, CreateParams{Image: "x"}); return err }, 3, false},
		{"create does not retry 500", 500, 1, func() error { _, err := c.CreateInstance(ctx, 1, CreateParams{Image: "x"}); return err }, 1, true},
	}
	for _, tc := range cases {
		calls.Store(0)
		fail.Store(int32(tc.fails))
		status.Store(int32(tc.status))
		err := tc.call()
		if (err != nil) != tc.wantErr || calls.Load() != tc.wantCalls {
			t.Errorf("%s: %d calls, error %v; want %d calls, error %v", tc.name, calls.Load(), err, tc.wantCalls, tc.wantErr)
		}
	}
	// A create that failed with 5xx may have gone through: say so.
	calls.Store(0)
	fail.Store(1)
	status.Store(500)
	_, err := c.CreateInstance(ctx, 1, CreateParams{Image: "x"})
	var amb *errAmbiguous
	if !errors.As(err, &amb) {
		t.Errorf("create 500: %v is not marked ambiguous", err)
	}
}

func TestTimeoutIsRetried(t *testing.T) {
	release := make(chan struct{})
	var calls atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if calls.Add(1) == 1 {
			select {
			case <-release:
			case <-r.Context().Done():
			}
			return
		}
		io.WriteString(w, `{"instances": {"id": 5, "actual_status": "running"}}`)
	}))
	defer srv.Close()
	defer close(release)
	c := testClient(t, srv.URL, func(c *Config) { c.Timeout = 100 * time.Millisecond })
	in, err := c.GetInstance(context.Background(), 5)
	if err != nil || in.ActualStatus != "running" || calls.Load() != 2 {
		t.Fatalf("got %+v, %v after %d calls", in, err, calls.Load())
	}
}

func TestRedirectToAnotherHostRefused(t *testing.T) {
	var leaked atomic.Bool
	other := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		leaked.Store(true)
	}))
	defer other.Close()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/api/v0/instances/5/" {
			http.Redirect(w, r, other.URL+"/steal", http.StatusTemporaryRedirect)
			return
		}
		http.Redirect(w, r, "/api/v0/instances/5/", http.StatusFound) // same host: fine
	}))
	defer srv.Close()
	c := testClient(t, srv.URL, func(c *Config) { c.Retry.MaxRetries = -1 })
	_, err := c.GetInstance(context.Background(), 6)
	if err == nil || !strings.Contains(err.Error(), "refusing redirect") {
		t.Fatalf("err = %v, want a refused redirect", err)
	}
	if leaked.Load() {
		t.Fatal("the request followed the redirect to another host")
	}
}

func TestResponseSizeCapped(t *testing.T) {
	old := maxResponseBytes
	maxResponseBytes = 1 << 10
	defer func() { maxResponseBytes = old }()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, `{"offers": [`+strings.Repeat(`{"id": 1},`, 500)+`{"id": 2}]}`)
	}))
	defer srv.Close()
	_, err := testClient(t, srv.URL).SearchOffers(context.Background(), SearchQuery{})
	if err == nil || !strings.Contains(err.Error(), "larger than") {
		t.Fatalf("err = %v", err)
	}
}

func TestFiltersAreChecked(t *testing.T) {
	c := testClient(t, "http://127.0.0.1:9")
	for _, f := range []Filters{
		{"gpu_name": Cond{"like": "A100"}},
		{"gpu_name": Cond{"in": "A100"}},
		{"": Cond{"eq": 1}},
		{"num_gpus": Cond{}},
	} {
		if _, err := c.SearchOffers(context.Background(), SearchQuery{Filters: f}); err == nil || !strings.Contains(err.Error(), "vast: ") {
			t.Errorf("%v: %v, want refused before sending", f, err)
		}
	}
}

// TestKeyNeverInErrorsOrLogs drives every failure path of the client with
// a debug logger and checks neither errors nor logs carry the key, even
// when the server echoes it back.
func TestKeyNeverInErrorsOrLogs(t *testing.T) {
	var mode atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		auth := r.Header.Get("Authorization")
		switch mode.Load() {
		case 0: // echo the header in an error
			w.WriteHeader(401)
			fmt.Fprintf(w, `{"success": false, "error": "auth_error", "msg": "Invalid user key %s"}`, auth)
		case 1: // echo it in plain text on a retried status
			w.WriteHeader(503)
			fmt.Fprintf(w, "overloaded for %s", auth)
		case 2: // echo it in a 200 with success false
			fmt.Fprintf(w, `{"success": false, "msg": "%s"}`, auth)
		case 3: // redirect elsewhere with it in the URL
			http.Redirect(w, r, "http://127.0.0.2:1/?k="+strings.TrimPrefix(auth, "Bearer "), http.StatusFound)
		}
	}))
	defer srv.Close()
	var logs bytes.Buffer
	log := slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	p, err := New(Config{APIKey: testKey, APIURL: srv.URL, MinRequestInterval: -1, Logger: log,
		Retry: Retry{MaxRetries: 2, Initial: time.Millisecond, Max: 2 * time.Millisecond}})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	var errs []error
	for m := range int32(4) {
		mode.Store(m)
		_, err := p.Get(ctx, "5")
		errs = append(errs, err)
		_, err = p.Offers(ctx, provisioner.Class{Name: "x", GPU: provisioner.GPURequirement{Name: "A100", Count: 1}})
		errs = append(errs, err)
		errs = append(errs, p.Destroy(ctx, &provisioner.Instance{ID: "5"}))
		_, err = p.Create(ctx, provisioner.CreateRequest{Offer: provisioner.Offer{ID: "9"}, Marker: provisioner.Marker{Deployment: "d", LeaseID: "l", Expires: time.Now()},
			SSHPublicKey: "ssh-ed25519 AAAA k"})
		errs = append(errs, err)
		_, err = p.ListOwned(ctx, "d")
		errs = append(errs, err)
	}
	n := 0
	for _, err := range errs {
		if err == nil {
			continue
		}
		n++
		if strings.Contains(err.Error(), testKey) {
			t.Errorf("error carries the key: %v", err)
		}
	}
	if n < 15 {
		t.Fatalf("only %d calls failed; the check proves little", n)
	}
	if strings.Contains(logs.String(), testKey) {
		t.Errorf("logs carry the key:\n%s", logs.String())
	}
	if !strings.Contains(logs.String(), "retrying") {
		t.Errorf("no retry was logged; the log check proves little:\n%s", logs.String())
	}
}
