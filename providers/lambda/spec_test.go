package lambda_test

import (
	"context"
	"encoding/json"
	"io"
	"maps"
	"net/http"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/crabbox/crabbox-runner/providers/lambda"
	"github.com/crabbox/crabbox-runner/providers/lambda/lambdatest"
	"github.com/crabbox/crabbox-runner/provisioner"
)

// capture is a transport that records the client's requests and answers
// each with a canned, minimal answer: it lets every request the client can
// make be checked against the OpenAPI document without the fake.
type capture struct {
	mu   sync.Mutex
	reqs []captured
}

type captured struct {
	req  *http.Request
	body []byte
}

const cannedInstance = `{"id":"i1","name":"crabbox:dep:l1:1900000000","ip":"203.0.113.7","status":"active",
"ssh_key_names":["crabbox-dep-l1"],"file_system_names":[],"region":{"name":"us-east-1","description":"Virginia, USA"},
"instance_type":{"name":"gpu_1x_a10","description":"1x A10 (24 GB PCIe)","gpu_description":"A10 (24 GB PCIe)","price_cents_per_hour":75,
"specs":{"vcpus":30,"memory_gib":200,"storage_gib":1400,"gpus":1}},"actions":{}}`

func (c *capture) RoundTrip(r *http.Request) (*http.Response, error) {
	var body []byte
	if r.Body != nil {
		body, _ = io.ReadAll(r.Body)
		r.Body.Close()
	}
	c.mu.Lock()
	c.reqs = append(c.reqs, captured{req: r.Clone(context.Background()), body: body})
	c.mu.Unlock()
	data := "{}"
	switch p := r.URL.Path; {
	case p == "/api/v1/instance-types":
		data = `{"gpu_1x_a10":{"instance_type":{"name":"gpu_1x_a10","description":"1x A10 (24 GB PCIe)","gpu_description":"A10 (24 GB PCIe)",
"price_cents_per_hour":75,"specs":{"vcpus":30,"memory_gib":200,"storage_gib":1400,"gpus":1}},
"regions_with_capacity_available":[{"name":"us-east-1","description":"Virginia, USA"}]}}`
	case p == "/api/v1/images":
		data = `[{"id":"5ca753ed-0408-480d-a749-c17935e83072","created_time":"2025-11-13T19:45:33.104000+00:00",
"updated_time":"2025-11-13T19:45:33.104000+00:00","name":"GPU Base 24.04","description":"GPU Base 24.04",
"family":"gpu-base-24-04","version":"24.4.2-1459","architecture":"x86_64","region":{"name":"us-east-1","description":"Virginia, USA"}}]`
	case r.Method == http.MethodGet && p == "/api/v1/ssh-keys":
		data = `[{"id":"k1","name":"crabbox-dep-l1","public_key":"ssh-ed25519 AAAA"}]`
	case r.Method == http.MethodPost && p == "/api/v1/ssh-keys":
		var req map[string]string
		json.Unmarshal(body, &req)
		b, _ := json.Marshal(map[string]string{"id": "k1", "name": req["name"], "public_key": req["public_key"]})
		data = string(b)
	case p == "/api/v1/instance-operations/launch":
		data = `{"instance_ids":["i1"]}`
	case p == "/api/v1/instances":
		data = "[" + cannedInstance + "]"
	case strings.HasPrefix(p, "/api/v1/instances/"):
		data = cannedInstance
	case p == "/api/v1/instance-operations/terminate":
		data = `{"terminated_instances":[` + cannedInstance + `]}`
	}
	return &http.Response{StatusCode: 200, Header: http.Header{"Content-Type": {"application/json"}},
		Body: io.NopCloser(strings.NewReader(`{"data":` + data + `}`)), Request: r}, nil
}

// Every request the client can send, made through the client and the
// provider with every option a class can set, is checked against Lambda's
// OpenAPI document (and the strict reading that refuses undeclared fields),
// without the fake in between.
func TestEveryRequestMatchesTheOpenAPIDocument(t *testing.T) {
	v, err := lambdatest.NewValidator()
	if err != nil {
		t.Fatal(err)
	}
	tr := &capture{}
	p, err := lambda.New(lambda.Options{
		APIURL: "https://cloud.lambda.ai", APIKey: "secret_spec_key_000000000000000000",
		HTTPClient: &http.Client{Transport: tr}, MinRequestInterval: -1, LaunchInterval: -1, Retry: fastRetry,
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	c := p.Client()
	pub, _ := keyPair(t, "spec")
	marker := provisioner.Marker{Deployment: "dep", LeaseID: "l1", Expires: time.Unix(1900000000, 0)}

	if _, err := c.Images(ctx); err != nil {
		t.Fatal(err)
	}
	offers, err := p.Offers(ctx, provisioner.Class{GPU: provisioner.GPURequirement{Name: "A10", Count: 1}})
	if err != nil || len(offers) != 1 {
		t.Fatalf("offers %v, %v", offers, err)
	}
	classes := []provisioner.Class{
		{Name: "plain"},
		{Name: "everything", LambdaImage: "43336648-096d-4cba-9aa2-f9bb7727639d",
			FirewallRulesets: []string{"c4d291f47f9d436fa39f58493ce3b50d"}, FileSystems: []string{"datasets"}},
		{Name: "family", LambdaImage: "family:lambda-stack-22-04"},
	}
	for _, class := range classes {
		ud := "#cloud-config\nssh_authorized_keys:\n  - " + pub + "\n"
		if _, err := p.Create(ctx, provisioner.CreateRequest{Offer: offers[0], Class: class, Marker: marker, SSHPublicKey: pub, UserData: ud}); err != nil {
			t.Fatalf("create (%s): %v", class.Name, err)
		}
	}
	if _, err := p.Get(ctx, "i1"); err != nil {
		t.Fatal(err)
	}
	if _, err := p.ListOwned(ctx, "dep"); err != nil {
		t.Fatal(err)
	}
	if err := p.Destroy(ctx, &provisioner.Instance{ID: "i1", Marker: marker}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.AddSSHKey(ctx, "another", pub); err != nil {
		t.Fatal(err)
	}
	// The destroyed lease's key is deleted once no instance uses it, in
	// the background; the calls that does are made here.
	if _, err := c.SSHKeys(ctx); err != nil {
		t.Fatal(err)
	}
	if err := c.DeleteSSHKey(ctx, "k1"); err != nil {
		t.Fatal(err)
	}

	ops := map[string]bool{}
	for _, r := range tr.reqs {
		ops[r.req.Method+" "+regexp.MustCompile(`/(ssh-keys|instances)/[^/]+$`).ReplaceAllString(r.req.URL.Path, "/$1/{id}")] = true
		for _, problem := range v.ValidateRequest(r.req, r.body) {
			t.Errorf("%s %s %s: %s", r.req.Method, r.req.URL.Path, r.body, problem)
		}
		if got := r.req.Header.Get("Authorization"); got != "Bearer secret_spec_key_000000000000000000" {
			t.Errorf("%s %s: Authorization %q", r.req.Method, r.req.URL.Path, got)
		}
	}
	want := []string{
		"GET /api/v1/instance-types", "GET /api/v1/images", "GET /api/v1/ssh-keys", "POST /api/v1/ssh-keys",
		"DELETE /api/v1/ssh-keys/{id}", "POST /api/v1/instance-operations/launch", "GET /api/v1/instances",
		"GET /api/v1/instances/{id}", "POST /api/v1/instance-operations/terminate",
	}
	if got := slices.Sorted(maps.Keys(ops)); !slices.Equal(got, slices.Sorted(slices.Values(want))) {
		t.Errorf("operations exercised:\n%v\nwant:\n%v", got, want)
	}
}

// The request types carry exactly the properties the document declares:
// none it lacks (so nothing like quantity or image_id can be sent), and
// every one it has (so nothing Lambda offers was overlooked).
func TestRequestTypesMatchTheSchemas(t *testing.T) {
	var doc struct {
		Components struct {
			Schemas map[string]struct {
				Properties map[string]json.RawMessage `json:"properties"`
				Required   []string                   `json:"required"`
			} `json:"schemas"`
		} `json:"components"`
	}
	if err := json.Unmarshal(lambdatest.Spec(), &doc); err != nil {
		t.Fatal(err)
	}
	full := lambda.LaunchRequest{
		RegionName: "us-east-1", InstanceTypeName: "t", SSHKeyNames: []string{"k"}, FileSystemNames: []string{"f"},
		FileSystemMounts: []lambda.FileSystemMount{{MountPoint: "/data/x", FileSystemID: "id"}}, Hostname: "h", Name: "n",
		Image: &lambda.ImageSpec{ID: "i"}, UserData: "u", Tags: []lambda.Tag{{Key: "k", Value: "v"}},
		FirewallRulesets: []lambda.FirewallRulesetEntry{{ID: "f"}},
	}
	cases := []struct {
		schema string
		value  any
	}{
		{"InstanceLaunchRequest", full},
		{"AddSSHKeyRequest", lambda.AddSSHKeyRequest{Name: "n", PublicKey: "p"}},
		{"ImageSpecificationID", lambda.ImageSpec{ID: "i"}},
		{"ImageSpecificationFamily", lambda.ImageSpec{Family: "f"}},
		{"RequestedTagEntry", lambda.Tag{Key: "k", Value: "v"}},
		{"FirewallRulesetEntry", lambda.FirewallRulesetEntry{ID: "f"}},
		{"RequestedFilesystemMountEntry", lambda.FileSystemMount{MountPoint: "/data/x", FileSystemID: "i"}},
	}
	for _, tc := range cases {
		b, _ := json.Marshal(tc.value)
		var got map[string]any
		json.Unmarshal(b, &got)
		schema, ok := doc.Components.Schemas[tc.schema]
		if !ok {
			t.Fatalf("no schema %s", tc.schema)
		}
		if g, w := slices.Sorted(maps.Keys(got)), slices.Sorted(maps.Keys(schema.Properties)); !slices.Equal(g, w) {
			t.Errorf("%s: the type sends %v, the schema declares %v", tc.schema, g, w)
		}
	}
	// Optional fields are left out when unset; required ones never are.
	b, _ := json.Marshal(lambda.LaunchRequest{})
	var min map[string]any
	json.Unmarshal(b, &min)
	if g, w := slices.Sorted(maps.Keys(min)), slices.Sorted(slices.Values(doc.Components.Schemas["InstanceLaunchRequest"].Required)); !slices.Equal(g, w) {
		t.Errorf("an empty launch request sends %v, want only the required %v", g, w)
	}
}
