package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/crabbox/crabbox-runner/providers/lambda/lambdatest"
)

// TestOffersLambda runs `crabbox-runner offers --provider lambda` against
// the fake Lambda, as an operator would before writing a class: every
// fitting instance type in every region with capacity, priced from
// price_cents_per_hour, cheapest first, in a table and as JSON. Nothing is
// launched.
func TestOffersLambda(t *testing.T) {
	fake := lambdatest.New(t, lambdatest.Options{})
	dir := t.TempDir()
	cfg := filepath.Join(dir, "c.yaml")
	os.WriteFile(cfg, []byte(`providers: {lambda: {min_request_interval: 1ms}}
classes:
  - name: a100
    labels: [self-hosted, a100]
    gpu: {name: A100, min_memory_gb: 40}
    providers: [lambda]
    max_price_per_hour: 2
`), 0o600)
	env := map[string]string{"CRABBOX_CONFIG": cfg, "LAMBDA_API_KEY": fake.APIKey(), "CRABBOX_LAMBDA_API_URL": fake.URL()}

	code, out, errs := runCLI(t, env, "offers", "--class", "a100")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errs)
	}
	t.Logf("offers --class a100:\n%s", out)
	lines := strings.Split(strings.TrimSpace(out), "\n")
	want := [][]string{
		{"Cheapest offers for 1x A100 ≥40 GB ≤$2.00/h on lambda"},
		{"PROVIDER", "OFFER", "GPU", "MEM/GPU", "$/HOUR", "REGION", "RELIABILITY", "IMAGE"},
		{"lambda", "gpu_1x_a100_sxm4@us-east-1", "1x A100 SXM4", "40 GB", "1.290", "us-east-1", "1.000", "gpu-base-24-04@x86_64"},
		{"lambda", "gpu_1x_a100_sxm4@us-south-1", "1x A100 SXM4", "40 GB", "1.290", "us-south-1", "1.000", "gpu-base-24-04@x86_64"},
		{"lambda", "gpu_1x_a100_sxm4@us-west-2", "1x A100 SXM4", "40 GB", "1.290", "us-west-2", "1.000", "gpu-base-24-04@x86_64"},
	}
	if len(lines) != len(want) {
		t.Fatalf("table:\n%s", out)
	}
	for i, cells := range want {
		for _, c := range cells {
			if !strings.Contains(lines[i], c) {
				t.Errorf("line %d %q lacks %q", i, lines[i], c)
			}
		}
	}

	code, out, errs = runCLI(t, env, "offers", "--provider", "lambda", "--gpu", "H100", "--output", "json")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errs)
	}
	t.Logf("offers --provider lambda --gpu H100 --output json:\n%s", out)
	var offers []offerJSON
	if err := json.Unmarshal([]byte(out), &offers); err != nil {
		t.Fatalf("json: %v\n%s", err, out)
	}
	// gpu_8x_h100_sxm5 has no capacity anywhere and is not a 1-GPU type;
	// the H100 PCIe and the H100 SXM5 are in two regions each. GH200 is
	// not an H100. The machine id is the pool, type@region (Lambda names
	// no physical machine; providers/lambda/offers.go).
	wantJSON := []offerJSON{
		{Provider: "lambda", OfferID: "gpu_1x_h100_pcie@us-south-2", GPU: "H100 PCIe", GPUCount: 1, GPUMemoryGB: 80, PricePerHour: 2.49, Region: "us-south-2", Reliability: 1, MachineID: "gpu_1x_h100_pcie@us-south-2", Image: "gpu-base-24-04@x86_64"},
		{Provider: "lambda", OfferID: "gpu_1x_h100_pcie@us-west-3", GPU: "H100 PCIe", GPUCount: 1, GPUMemoryGB: 80, PricePerHour: 2.49, Region: "us-west-3", Reliability: 1, MachineID: "gpu_1x_h100_pcie@us-west-3", Image: "gpu-base-24-04@x86_64"},
		{Provider: "lambda", OfferID: "gpu_1x_h100_sxm5@us-south-2", GPU: "H100 SXM5", GPUCount: 1, GPUMemoryGB: 80, PricePerHour: 3.29, Region: "us-south-2", Reliability: 1, MachineID: "gpu_1x_h100_sxm5@us-south-2", Image: "gpu-base-24-04@x86_64"},
		{Provider: "lambda", OfferID: "gpu_1x_h100_sxm5@us-south-3", GPU: "H100 SXM5", GPUCount: 1, GPUMemoryGB: 80, PricePerHour: 3.29, Region: "us-south-3", Reliability: 1, MachineID: "gpu_1x_h100_sxm5@us-south-3", Image: "gpu-base-24-04@x86_64"},
	}
	if !slices.Equal(offers, wantJSON) {
		t.Fatalf("offers %+v\nwant %+v", offers, wantJSON)
	}

	if code, _, errs := runCLI(t, map[string]string{"CRABBOX_CONFIG": cfg}, "offers", "--class", "a100"); code == 0 || !strings.Contains(errs, "LAMBDA_API_KEY") {
		t.Errorf("without a key: exit %d, %q", code, errs)
	}
	for _, r := range fake.Requests() {
		if r.Method != "GET" || (r.Path != "/api/v1/instance-types" && r.Path != "/api/v1/images") || r.Status != 200 {
			t.Errorf("unexpected request %s %s (%d)", r.Method, r.Path, r.Status)
		}
	}
	if strings.Contains(errs+out, fake.APIKey()) {
		t.Error("the API key was printed")
	}
}
