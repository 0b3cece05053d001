package lambdatest

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"testing"
)

func TestEmbeddedSpecIsTheReference(t *testing.T) {
	sum := sha256.Sum256(specJSON)
	if got := hex.EncodeToString(sum[:]); got != SpecSHA256 {
		t.Fatalf("embedded document sha256 %s, want %s", got, SpecSHA256)
	}
	var head struct {
		OpenAPI string                   `json:"openapi"`
		Info    struct{ Version string } `json:"info"`
	}
	if err := json.Unmarshal(specJSON, &head); err != nil || head.OpenAPI != "3.1.0" || head.Info.Version != "1.8.3" {
		t.Fatalf("document: openapi %q version %q, %v", head.OpenAPI, head.Info.Version, err)
	}
	// The shared reference, where this checkout has it, is the same file.
	if ref, err := os.ReadFile("../../../../shared/reference/lambda-openapi.json"); err == nil && !bytes.Equal(ref, specJSON) {
		t.Fatal("testdata/lambda-openapi.json differs from reference/lambda-openapi.json")
	}
}

func request(method, path, body string) (*http.Request, []byte) {
	r := httptest.NewRequest(method, "http://127.0.0.1:1"+path, nil)
	r.Header.Set("Authorization", "Bearer k")
	r.Header.Set("Accept", "application/json")
	if body != "" {
		r.Header.Set("Content-Type", "application/json")
		return r, []byte(body)
	}
	return r, nil
}

const launchPath = "/api/v1/instance-operations/launch"

// The validator enforces the JSON Schema 2020-12 constructs OpenAPI 3.1
// uses: anyOf (image), const (error codes), pattern (tag keys, hostname),
// enum (region codes), integer, required, maxLength, and the envelope's
// additionalProperties: false. Each case is a mistake an earlier client
// made or could make, and must be caught.
func TestValidatorCatchesMistakes(t *testing.T) {
	v, err := NewValidator()
	if err != nil {
		t.Fatal(err)
	}
	base := `"region_name":"us-east-1","instance_type_name":"gpu_1x_a10","ssh_key_names":["k"]`
	requests := []struct {
		name, body string
		strictOnly bool // accepted by the published document, refused by the strict reading
	}{
		{"image as a string", `{` + base + `,"image":"gpu-base-24-04"}`, false},
		{"image without id or family (anyOf)", `{` + base + `,"image":{}}`, false},
		{"image with a number id", `{` + base + `,"image":{"id":5}}`, false},
		{"firewall rulesets as names", `{` + base + `,"firewall_rulesets":["web"]}`, false},
		{"tag key with capitals (pattern)", `{` + base + `,"tags":[{"key":"Crabbox_Lease","value":"x"}]}`, false},
		{"tag key of one letter (pattern)", `{` + base + `,"tags":[{"key":"c","value":"x"}]}`, false},
		{"tag without value (required)", `{` + base + `,"tags":[{"key":"crabbox-lease"}]}`, false},
		{"hostname with underscore (pattern)", `{` + base + `,"hostname":"crabbox_1"}`, false},
		{"name over 64 (maxLength)", `{` + base + `,"name":"` + strings.Repeat("n", 65) + `"}`, false},
		{"unknown region (enum)", `{"region_name":"mars-1","instance_type_name":"gpu_1x_a10","ssh_key_names":["k"]}`, false},
		{"region as an object", `{"region_name":{"name":"us-east-1"},"instance_type_name":"gpu_1x_a10","ssh_key_names":["k"]}`, false},
		{"no ssh_key_names (required)", `{"region_name":"us-east-1","instance_type_name":"gpu_1x_a10"}`, false},
		{"quantity", `{` + base + `,"quantity":1}`, true},
		{"image_id", `{` + base + `,"image_id":"x"}`, true},
		{"image_family", `{` + base + `,"image_family":"x"}`, true},
		{"firewall_ruleset_name", `{` + base + `,"firewall_ruleset_name":"web"}`, true},
		{"image with id and family", `{` + base + `,"image":{"id":"i","family":"f"}}`, true},
	}
	for _, tc := range requests {
		r, body := request(http.MethodPost, launchPath, tc.body)
		problems := v.ValidateRequest(r, body)
		if len(problems) == 0 {
			t.Errorf("%s: accepted", tc.name)
			continue
		}
		strict := strings.Contains(problems[0], "strict fake")
		if strict != tc.strictOnly {
			t.Errorf("%s: strict-only %v, want %v: %s", tc.name, strict, tc.strictOnly, problems[0])
		}
	}
	good := `{` + base + `,"image":{"family":"gpu-base-24-04"},"tags":[{"key":"crabbox-lease","value":"l1"}],"hostname":"crabbox-l1",` +
		`"name":"crabbox:d:l1:1900000000","firewall_rulesets":[{"id":"f"}],"file_system_names":["fs"],"user_data":"#cloud-config\n"}`
	if r, body := request(http.MethodPost, launchPath, good); len(v.ValidateRequest(r, body)) != 0 {
		t.Errorf("a good launch is refused: %v", v.ValidateRequest(r, body))
	}
	if r, body := request(http.MethodPost, "/api/v1/ssh-keys", `{"name":""}`); len(v.ValidateRequest(r, body)) == 0 {
		t.Error("an empty key name (minLength) is accepted")
	}
	if r, body := request(http.MethodGet, "/api/v1/no-such-thing", ""); len(v.ValidateRequest(r, body)) == 0 {
		t.Error("an unknown path is accepted")
	}

	types := func(item string) string { return `{"data":{"gpu_1x_a10":` + item + `}}` }
	it := `{"name":"gpu_1x_a10","description":"1x A10 (24 GB PCIe)","gpu_description":"A10 (24 GB PCIe)","price_cents_per_hour":75,"specs":{"vcpus":30,"memory_gib":200,"storage_gib":1400,"gpus":1}}`
	responses := []struct {
		name, method, path string
		status             int
		body               string
		ok                 bool
	}{
		{"instance types", "GET", "/api/v1/instance-types", 200, types(`{"instance_type":` + it + `,"regions_with_capacity_available":[{"name":"us-east-1","description":"Virginia, USA"}]}`), true},
		{"regions as strings", "GET", "/api/v1/instance-types", 200, types(`{"instance_type":` + it + `,"regions_with_capacity_available":["us-east-1"]}`), false},
		{"price as a float (integer)", "GET", "/api/v1/instance-types", 200, types(`{"instance_type":` + strings.Replace(it, "75", "75.5", 1) + `,"regions_with_capacity_available":[]}`), false},
		{"types as a list", "GET", "/api/v1/instance-types", 200, `{"data":[` + it + `]}`, false},
		{"envelope with extra member", "GET", "/api/v1/ssh-keys", 200, `{"data":[],"count":0}`, false},
		{"no envelope", "GET", "/api/v1/ssh-keys", 200, `[]`, false},
		{"404 with its code", "GET", "/api/v1/instances/x", 404, `{"error":{"code":"global/object-does-not-exist","message":"gone"}}`, true},
		{"404 with another code (const)", "GET", "/api/v1/instances/x", 404, `{"error":{"code":"global/not-found","message":"gone"}}`, false},
		{"capacity 400 (anyOf of consts)", "POST", launchPath, 400, `{"error":{"code":"instance-operations/launch/insufficient-capacity","message":"no"}}`, true},
		{"launch 400 with an unknown code", "POST", launchPath, 400, `{"error":{"code":"instance-operations/launch/sold-out","message":"no"}}`, false},
		{"401 without suggestion (required)", "GET", "/api/v1/instances", 401, `{"error":{"code":"global/invalid-api-key","message":"bad"}}`, false},
		{"instance status outside the enum", "GET", "/api/v1/instances/x", 200, `{"data":{"id":"x","status":"running","ssh_key_names":[],"file_system_names":[],` +
			`"region":{"name":"us-east-1","description":"d"},"instance_type":` + it + `,"actions":{"migrate":{"available":true},"rebuild":{"available":true},` +
			`"restart":{"available":true},"cold_reboot":{"available":true},"terminate":{"available":true}}}}`, false},
		{"status 429 is not in the document", "GET", "/api/v1/instances", 429, `{}`, false},
	}
	for _, tc := range responses {
		r, _ := request(tc.method, tc.path, "")
		problems := v.ValidateResponse(r, tc.status, http.Header{"Content-Type": {"application/json"}}, []byte(tc.body))
		if (len(problems) == 0) != tc.ok {
			t.Errorf("%s: problems %v, want ok %v", tc.name, problems, tc.ok)
		}
	}
}

// The strict reading closes object schemas that list their properties and
// leaves alone those that say otherwise (the instance-types map).
func TestStrictDocument(t *testing.T) {
	out, err := strictDocument(specJSON)
	if err != nil {
		t.Fatal(err)
	}
	var doc struct {
		Components struct {
			Schemas map[string]map[string]any `json:"schemas"`
		} `json:"components"`
	}
	if err := json.Unmarshal(out, &doc); err != nil {
		t.Fatal(err)
	}
	s := doc.Components.Schemas
	for _, name := range []string{"InstanceLaunchRequest", "ImageSpecificationID", "RequestedTagEntry", "Instance", "EmptyResponse"} {
		if s[name]["additionalProperties"] != false {
			t.Errorf("%s: additionalProperties = %v, want false", name, s[name]["additionalProperties"])
		}
	}
	if _, ok := s["InstanceTypes"]["additionalProperties"].(map[string]any); !ok {
		t.Errorf("InstanceTypes lost its map schema: %v", s["InstanceTypes"]["additionalProperties"])
	}
}
