package lambda_test

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"

	"github.com/crabbox/crabbox-runner/providers/lambda"
	"github.com/crabbox/crabbox-runner/providers/lambda/lambdatest"
)

func newClient(t *testing.T, url, key string) *lambda.Client {
	t.Helper()
	c, err := lambda.NewClient(lambda.ClientConfig{APIURL: url, APIKey: key, MinRequestInterval: -1, LaunchInterval: -1, Retry: fastRetry})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// Every call of the client against the fake, which checks each request and
// answer against Lambda's OpenAPI document.
func TestClientCalls(t *testing.T) {
	fake := lambdatest.New(t, lambdatest.Options{})
	c := newClient(t, fake.URL(), fake.APIKey())
	ctx := context.Background()

	types, err := c.InstanceTypes(ctx)
	if err != nil {
		t.Fatal(err)
	}
	a100 := types["gpu_1x_a100_sxm4"]
	if a100.InstanceType.PriceCentsPerHour != 129 || a100.InstanceType.Specs.GPUs != 1 ||
		a100.InstanceType.GPUDescription != "A100 (40 GB SXM4)" || len(a100.RegionsWithCapacity) != 3 ||
		a100.RegionsWithCapacity[0].Name != "us-east-1" || a100.RegionsWithCapacity[0].Description == "" {
		t.Fatalf("gpu_1x_a100_sxm4 = %+v", a100)
	}
	if h := types["gpu_8x_h100_sxm5"]; h.RegionsWithCapacity == nil || len(h.RegionsWithCapacity) != 0 {
		t.Fatalf("a type without capacity: %+v", h)
	}

	images, err := c.Images(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.ContainsFunc(images, func(im lambda.Image) bool {
		return im.Family == lambda.DefaultImageFamily && im.Region.Name == "us-east-1" && im.ID != "" && !im.CreatedTime.IsZero()
	}) {
		t.Fatalf("no %s image in us-east-1: %+v", lambda.DefaultImageFamily, images[:2])
	}

	pub, _ := keyPair(t, "client-test")
	key, err := c.AddSSHKey(ctx, "crabbox-test-key", pub)
	if err != nil {
		t.Fatal(err)
	}
	keys, err := c.SSHKeys(ctx)
	if err != nil || len(keys) != 1 || keys[0].ID != key.ID || keys[0].Name != "crabbox-test-key" || keys[0].PublicKey != pub {
		t.Fatalf("SSHKeys = %+v, %v", keys, err)
	}

	id, err := c.Launch(ctx, lambda.LaunchRequest{
		RegionName: "us-east-1", InstanceTypeName: "gpu_1x_a10", SSHKeyNames: []string{"crabbox-test-key"},
		Name: "client-test", Image: &lambda.ImageSpec{Family: "gpu-base-24-04"},
		Tags: []lambda.Tag{{Key: "crabbox-lease", Value: "l1"}},
	})
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, "instance active", 30e9, func() bool { return fake.Status(id) == lambda.StatusActive })
	inst, err := c.Instance(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	if inst.Status != lambda.StatusActive || inst.IP == "" || inst.Name != "client-test" || inst.Region.Name != "us-east-1" ||
		inst.InstanceType.Name != "gpu_1x_a10" || len(inst.Tags) != 1 || inst.SSHKeyNames[0] != "crabbox-test-key" {
		t.Fatalf("Instance = %+v", inst)
	}
	all, err := c.Instances(ctx)
	if err != nil || len(all) != 1 || all[0].ID != id {
		t.Fatalf("Instances = %+v, %v", all, err)
	}
	term, err := c.Terminate(ctx, id)
	if err != nil || len(term) != 1 || term[0].Status != lambda.StatusTerminating {
		t.Fatalf("Terminate = %+v, %v", term, err)
	}
	waitFor(t, "host stopped", 30e9, func() bool { return len(fake.Live()) == 0 })
	if _, err := c.Instance(ctx, id); !lambda.IsCode(err, lambda.CodeNotFound) || lambda.StatusOf(err) != 404 {
		t.Fatalf("Instance after terminate = %v, want 404 %s", err, lambda.CodeNotFound)
	}
	if err := c.DeleteSSHKey(ctx, key.ID); err != nil {
		t.Fatal(err)
	}
	if keys, err := c.SSHKeys(ctx); err != nil || len(keys) != 0 {
		t.Fatalf("keys after delete: %+v, %v", keys, err)
	}
	if err := c.DeleteSSHKey(ctx, key.ID); lambda.StatusOf(err) != 400 {
		t.Fatalf("deleting an unknown key = %v, want the 400 the document gives", err)
	}
}

// Faults and how the client takes them: 429s and server errors are retried
// with backoff whatever their body, except that a launch is not retried
// after a server error (it may have happened); client errors are typed by
// their code and not retried.
func TestClientFaults(t *testing.T) {
	launch := lambda.LaunchRequest{RegionName: "us-east-1", InstanceTypeName: "gpu_1x_a10", SSHKeyNames: []string{"k"}}
	cases := []struct {
		name     string
		faults   []lambdatest.Fault
		launch   bool
		wantErr  bool
		status   int
		code     string
		requests int // requests the fake saw
	}{
		{name: "429 empty body", faults: []lambdatest.Fault{{Status: 429}}, requests: 2},
		{name: "429 plain text", faults: []lambdatest.Fault{{Status: 429, Body: "Too Many Requests"}}, requests: 2},
		{name: "429 with Retry-After", faults: []lambdatest.Fault{{Status: 429, RetryAfter: "1"}}, requests: 2},
		{name: "500 empty object", faults: []lambdatest.Fault{{Status: 500, Body: "{}"}}, requests: 2},
		{name: "502 html", faults: []lambdatest.Fault{{Status: 502, Body: "<html><body>Bad Gateway</body></html>"}}, requests: 2},
		{name: "503 provider error", faults: []lambdatest.Fault{{Status: 503,
			Body: `{"error":{"code":"provider/internal-unavailable","message":"Provider unavailable","suggestion":"Try again shortly"}}`}}, requests: 2},
		{name: "three 429s", faults: []lambdatest.Fault{{Status: 429}, {Status: 429}, {Status: 429}}, requests: 4},
		{name: "429 forever", faults: repeat(lambdatest.Fault{Status: 429}, 20), wantErr: true, status: 429, requests: 8},
		{name: "launch 429 retried", launch: true, faults: []lambdatest.Fault{{Status: 429}}, requests: 3},
		{name: "launch 500 not retried", launch: true, faults: []lambdatest.Fault{{Status: 500, Body: "{}"}}, wantErr: true, status: 500, requests: 2},
		{name: "launch capacity", launch: true, wantErr: true, status: 400, code: lambda.CodeInsufficientCapacity, requests: 2},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			fake := lambdatest.New(t, lambdatest.Options{})
			c := newClient(t, fake.URL(), fake.APIKey())
			ctx := context.Background()
			var err error
			if tc.launch {
				pub, _ := keyPair(t, "k")
				if _, err := c.AddSSHKey(ctx, "k", pub); err != nil {
					t.Fatal(err)
				}
				if tc.code == lambda.CodeInsufficientCapacity {
					fake.NoCapacity("gpu_1x_a10", "us-east-1")
				}
				resetFaults(fake, tc.faults, "/launch")
				_, err = c.Launch(ctx, launch)
			} else {
				resetFaults(fake, tc.faults, "")
				_, err = c.InstanceTypes(ctx)
			}
			if (err != nil) != tc.wantErr {
				t.Fatalf("err = %v, want error %v", err, tc.wantErr)
			}
			if tc.wantErr {
				var ae *lambda.APIError
				if !errors.As(err, &ae) || ae.Status != tc.status || ae.Code != tc.code {
					t.Fatalf("err = %#v, want status %d code %q", err, tc.status, tc.code)
				}
			}
			if n := len(fake.Requests()); n != tc.requests {
				t.Fatalf("the fake saw %d requests, want %d", n, tc.requests)
			}
		})
	}
}

func repeat(f lambdatest.Fault, n int) []lambdatest.Fault {
	out := make([]lambdatest.Fault, n)
	for i := range out {
		out[i] = f
	}
	return out
}

// resetFaults replaces the fake's queued faults with fs, limited to path.
func resetFaults(fake *lambdatest.Server, fs []lambdatest.Fault, path string) {
	fake.ClearFaults()
	for _, f := range fs {
		f.Path = path
		fake.FailNext(1, f)
	}
}

func TestClientTypedErrors(t *testing.T) {
	fake := lambdatest.New(t, lambdatest.Options{})
	ctx := context.Background()

	bad := newClient(t, fake.URL(), "secret_wrong_key_0000000000000000")
	_, err := bad.SSHKeys(ctx)
	var ae *lambda.APIError
	if !errors.As(err, &ae) || ae.Status != 401 || ae.Code != lambda.CodeInvalidAPIKey || ae.Suggestion == "" {
		t.Fatalf("wrong key: %#v", err)
	}
	if n := len(fake.Requests()); n != 1 {
		t.Fatalf("a 401 was retried: %d requests", n)
	}

	c := newClient(t, fake.URL(), fake.APIKey())
	if _, err := c.Instance(ctx, "0920582c7ff041399e34823a0be62549"); !lambda.IsCode(err, lambda.CodeNotFound) || lambda.StatusOf(err) != 404 {
		t.Fatalf("unknown instance: %v", err)
	}
	_, err = c.Launch(ctx, lambda.LaunchRequest{RegionName: "us-east-1", InstanceTypeName: "gpu_1x_a10", SSHKeyNames: []string{"nobody"}})
	if !lambda.IsCode(err, lambda.CodeNotFound) {
		t.Fatalf("launch with an unknown key: %v", err)
	}
	// Checked before sending: the document requires exactly one key.
	if _, err := c.Launch(ctx, lambda.LaunchRequest{RegionName: "us-east-1", InstanceTypeName: "gpu_1x_a10"}); err == nil {
		t.Fatal("launch without a key was sent")
	}
	if _, err := c.Launch(ctx, lambda.LaunchRequest{RegionName: "us-east-1", InstanceTypeName: "gpu_1x_a10", SSHKeyNames: []string{"k"},
		UserData: strings.Repeat("x", lambda.MaxUserDataBytes+1)}); err == nil || !strings.Contains(err.Error(), "user-data") {
		t.Fatalf("oversized user-data: %v", err)
	}
}

func TestClientRefusesRedirectToAnotherHost(t *testing.T) {
	var elsewhere int
	other := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		elsewhere++
		w.Write([]byte(`{"data":[]}`))
	}))
	defer other.Close()
	var same int
	var srv *httptest.Server
	srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/api/v1/ssh-keys":
			http.Redirect(w, r, other.URL+r.URL.Path, http.StatusFound)
		case "/api/v1/images":
			http.Redirect(w, r, srv.URL+"/api/v1/moved", http.StatusFound)
		case "/api/v1/moved":
			same++
			w.Write([]byte(`{"data":[]}`))
		}
	}))
	defer srv.Close()
	c := newClient(t, srv.URL, "secret_redirect_key_00000000000000")
	_, err := c.SSHKeys(context.Background())
	if err == nil || !strings.Contains(err.Error(), "refusing redirect") || elsewhere != 0 {
		t.Fatalf("redirect to another host: err %v, the other host saw %d requests", err, elsewhere)
	}
	if _, err := c.Images(context.Background()); err != nil || same != 1 {
		t.Fatalf("redirect on the same host: %v (%d)", err, same)
	}
}

func TestClientCapsReads(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Write([]byte(`{"data":"`))
		chunk := []byte(strings.Repeat("x", 1<<20))
		for range 10 {
			w.Write(chunk)
		}
		w.Write([]byte(`"}`))
	}))
	defer srv.Close()
	c := newClient(t, srv.URL, "secret_cap_key_0000000000000000")
	if _, err := c.Images(context.Background()); err == nil || !strings.Contains(err.Error(), "larger than") {
		t.Fatalf("a 10 MB answer: %v", err)
	}
}

func TestClientConfig(t *testing.T) {
	cases := []struct {
		url, key string
		ok       bool
	}{
		{"", "k", true},
		{"https://cloud.lambda.ai", "k", true},
		{"https://cloud.lambda.ai/api/v1/", "k", true},
		{"http://127.0.0.1:8080", "k", true},
		{"http://localhost:8080", "k", true},
		{"http://cloud.lambda.ai", "k", false},
		{"https://user:pass@cloud.lambda.ai", "k", false},
		{"https://cloud.lambda.ai?x=1", "k", false},
		{"https://cloud.lambda.ai#frag", "k", false},
		{"ftp://cloud.lambda.ai", "k", false},
		{"cloud.lambda.ai", "k", false},
		{"https://cloud.lambda.ai", "", false},
		{"https://cloud.lambda.ai", "two words", false},
	}
	for _, tc := range cases {
		c, err := lambda.NewClient(lambda.ClientConfig{APIURL: tc.url, APIKey: tc.key})
		if (err == nil) != tc.ok {
			t.Errorf("NewClient(%q, %q) = %v, want ok %v", tc.url, tc.key, err, tc.ok)
		}
		if err == nil && strings.HasSuffix(c.BaseURL(), "/api/v1") {
			t.Errorf("base %q keeps /api/v1", c.BaseURL())
		}
		if err != nil && strings.Contains(err.Error(), "pass") {
			t.Errorf("error repeats the URL's user info: %v", err)
		}
	}
}
