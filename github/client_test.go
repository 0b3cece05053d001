package github_test

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/crabbox/crabbox-runner/github"
	"github.com/crabbox/crabbox-runner/github/githubtest"
	"github.com/crabbox/crabbox-runner/provisioner"
)

const (
	testToken = "ghp_clienttesttoken0123456789abcdef"
	appID     = 4242
)

var (
	keyOnce sync.Once
	appKey  *rsa.PrivateKey
	appPEM  []byte
)

func testAppKey(t *testing.T) (*rsa.PrivateKey, []byte) {
	t.Helper()
	keyOnce.Do(func() {
		var err error
		appKey, err = rsa.GenerateKey(rand.Reader, 2048)
		if err != nil {
			panic(err)
		}
		appPEM = pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(appKey)})
	})
	return appKey, appPEM
}

func ctxFor(t *testing.T) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// recorder is a transport that notes each request's method and path.
type recorder struct {
	mu       sync.Mutex
	requests []string
}

func (r *recorder) RoundTrip(req *http.Request) (*http.Response, error) {
	r.mu.Lock()
	r.requests = append(r.requests, req.Method+" "+req.URL.Path)
	r.mu.Unlock()
	return http.DefaultTransport.RoundTrip(req)
}

func (r *recorder) count(request string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := 0
	for _, got := range r.requests {
		if got == request {
			n++
		}
	}
	return n
}

// mode is an authentication setup: a fake GitHub and a client for it.
type mode struct {
	name  string
	setup func(t *testing.T) (*githubtest.Server, *github.Client, *recorder)
}

var modes = []mode{
	{"token", func(t *testing.T) (*githubtest.Server, *github.Client, *recorder) {
		fake := githubtest.New(githubtest.Options{Tokens: []string{testToken}, Logf: t.Logf})
		t.Cleanup(fake.Close)
		rec := &recorder{}
		// No background ceiling: these tests call background listings
		// in bulk; the ceiling has tests of its own (scan_test.go).
		c, err := github.New(github.Config{APIURL: fake.URL(), Token: testToken, HTTPClient: &http.Client{Transport: rec}, JITPerMinute: -1,
			BackgroundPerMinute: -1})
		if err != nil {
			t.Fatal(err)
		}
		return fake, c, rec
	}},
	{"app", func(t *testing.T) (*githubtest.Server, *github.Client, *recorder) {
		key, pemBytes := testAppKey(t)
		fake := githubtest.New(githubtest.Options{
			AppID:         appID,
			AppPublicKey:  &key.PublicKey,
			Installations: map[string]int64{"acme": 11, "bob/tool": 12},
			Logf:          t.Logf,
		})
		t.Cleanup(fake.Close)
		rec := &recorder{}
		c, err := github.New(github.Config{APIURL: fake.URL() + "/", AppID: appID, AppPrivateKey: pemBytes, HTTPClient: &http.Client{Transport: rec}, JITPerMinute: -1,
			BackgroundPerMinute: -1})
		if err != nil {
			t.Fatal(err)
		}
		return fake, c, rec
	}},
}

func TestNewConfig(t *testing.T) {
	_, pemBytes := testAppKey(t)
	tests := []struct {
		name    string
		cfg     github.Config
		wantErr string
	}{
		{"token", github.Config{Token: testToken}, ""},
		{"token from a file, with newline", github.Config{Token: testToken + "\n"}, ""},
		{"app", github.Config{AppID: 1, AppPrivateKey: pemBytes}, ""},
		{"GHES", github.Config{Token: testToken, APIURL: "https://ghe.example.com/api/v3"}, ""},
		{"nothing", github.Config{}, "set CRABBOX_GITHUB_TOKEN or CRABBOX_GITHUB_APP_ID with CRABBOX_GITHUB_APP_PRIVATE_KEY"},
		{"both", github.Config{Token: testToken, AppID: 1, AppPrivateKey: pemBytes}, "not both"},
		{"app id without key", github.Config{AppID: 1}, "CRABBOX_GITHUB_APP_PRIVATE_KEY is missing"},
		{"key without app id", github.Config{AppPrivateKey: pemBytes}, "CRABBOX_GITHUB_APP_ID is missing"},
		{"negative app id", github.Config{AppID: -1, AppPrivateKey: pemBytes}, "positive"},
		{"key is not PEM", github.Config{AppID: 1, AppPrivateKey: []byte("-----BEGIN NOPE-----\nc2VjcmV0\n-----END NOPE-----\n")}, "CRABBOX_GITHUB_APP_PRIVATE_KEY"},
		{"token with a space", github.Config{Token: "ghp_a b"}, "whitespace"},
		{"plain http", github.Config{Token: testToken, APIURL: "http://api.github.com"}, "CRABBOX_GITHUB_API_URL"},
		{"user info", github.Config{Token: testToken, APIURL: "https://x:y@api.github.com"}, "user info"},
		{"query", github.Config{Token: testToken, APIURL: "https://api.github.com?a=b"}, "query"},
		{"fragment", github.Config{Token: testToken, APIURL: "https://api.github.com#x"}, "fragment"},
		{"negative group", github.Config{Token: testToken, RunnerGroupID: -2}, "runner group"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := github.New(tt.cfg)
			if tt.wantErr == "" {
				if err != nil || c == nil {
					t.Fatalf("New: %v", err)
				}
				return
			}
			if err == nil {
				t.Fatalf("New succeeded, want an error about %q", tt.wantErr)
			}
			if !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("error %q does not mention %q", err, tt.wantErr)
			}
			for _, secret := range []string{testToken, "c2VjcmV0", string(pemBytes[40:80])} {
				if strings.Contains(err.Error(), secret) {
					t.Errorf("error %q holds a secret", err)
				}
			}
		})
	}
}

func TestAppModeResolvesAndCachesInstallations(t *testing.T) {
	fake, c, rec := modes[1].setup(t)
	ctx := ctxFor(t)
	org := provisioner.Scope{Org: "acme"}
	repo := provisioner.Scope{Repo: "bob/tool"}

	for range 3 {
		if _, err := c.ListRunners(ctx, org); err != nil {
			t.Fatal(err)
		}
		if _, err := c.ListRunners(ctx, repo); err != nil {
			t.Fatal(err)
		}
	}
	// An explicit installation id needs no lookup and shares the token.
	if _, err := c.ListRunners(ctx, provisioner.Scope{Repo: "acme/app", InstallationID: 11}); err != nil {
		t.Fatal(err)
	}
	for req, want := range map[string]int{
		"GET /orgs/acme/installation":              1,
		"GET /repos/bob/tool/installation":         1,
		"GET /repos/acme/app/installation":         0,
		"POST /app/installations/11/access_tokens": 1,
		"POST /app/installations/12/access_tokens": 1,
		"GET /orgs/acme/actions/runners":           3,
		"GET /repos/bob/tool/actions/runners":      3,
		"GET /repos/acme/app/actions/runners":      1,
	} {
		if got := rec.count(req); got != want {
			t.Errorf("%s sent %d times, want %d", req, got, want)
		}
	}

	// Where the App is not installed: a clear error, and not ErrNotFound,
	// which callers would read as "the runner is gone".
	err := c.RemoveRunner(ctx, provisioner.Scope{Org: "stranger"}, 1)
	if err == nil || !strings.Contains(err.Error(), "not installed on org:stranger") || errors.Is(err, provisioner.ErrNotFound) {
		t.Errorf("RemoveRunner where the App is not installed: %v", err)
	}
	// An installation token used outside its installation is refused.
	if _, err := c.ListRunners(ctx, provisioner.Scope{Org: "other", InstallationID: 12}); err == nil || !strings.Contains(err.Error(), "403") {
		t.Errorf("ListRunners outside the installation: %v", err)
	}
	_ = fake
}

func TestAppModeConcurrentInstallations(t *testing.T) {
	fake, c, _ := modes[1].setup(t)
	_ = fake
	ctx := ctxFor(t)
	scopes := []provisioner.Scope{{Org: "acme"}, {Repo: "bob/tool"}, {Org: "acme", InstallationID: 11}, {Repo: "bob/tool", InstallationID: 12}}
	var wg sync.WaitGroup
	errs := make(chan error, 40)
	for i := range 40 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, err := c.ListRunners(ctx, scopes[i%len(scopes)])
			errs <- err
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Error(err)
		}
	}
}

func TestRedirectToAnotherHostIsRefused(t *testing.T) {
	fake := githubtest.New(githubtest.Options{Tokens: []string{testToken}})
	t.Cleanup(fake.Close)
	var mu sync.Mutex
	var elsewhere int
	other := newServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		elsewhere++
		mu.Unlock()
		w.WriteHeader(200)
	}))
	// The same port on "localhost" is another host than 127.0.0.1.
	redirector := newServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Query().Get("hop") == "" {
			http.Redirect(w, r, r.URL.Path+"?hop=1", http.StatusFound) // same host: fine
			return
		}
		http.Redirect(w, r, strings.Replace(other.URL, "127.0.0.1", "localhost", 1)+r.URL.Path, http.StatusTemporaryRedirect)
	}))

	c, err := github.New(github.Config{APIURL: redirector.URL, Token: testToken})
	if err != nil {
		t.Fatal(err)
	}
	_, err = c.ListRunners(ctxFor(t), provisioner.Scope{Org: "acme"})
	if err == nil || !strings.Contains(err.Error(), "refusing redirect to another host") {
		t.Fatalf("ListRunners through a redirect: %v", err)
	}
	if strings.Contains(err.Error(), testToken) {
		t.Errorf("error holds the token: %v", err)
	}
	mu.Lock()
	defer mu.Unlock()
	if elsewhere != 0 {
		t.Errorf("the other host got %d requests", elsewhere)
	}
}

func TestJITConfigStringHidesTheSecret(t *testing.T) {
	_, c, _ := modes[0].setup(t)
	jit, err := c.GenerateJITConfig(ctxFor(t), provisioner.Scope{Org: "acme"}, "r1", []string{"gpu"})
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range []string{jit.String(), fmtV(jit)} {
		if strings.Contains(s, jit.Encoded) {
			t.Errorf("%q shows the JIT config", s)
		}
	}
	if !slices.Contains([]string{"r1"}, jit.RunnerName) || jit.RunnerID == 0 || jit.Encoded == "" {
		t.Errorf("jit = %s id=%d", jit, jit.RunnerID)
	}
}
