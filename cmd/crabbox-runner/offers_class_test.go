package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/crabbox/crabbox-runner/providers/lambda/lambdatest"
	"github.com/crabbox/crabbox-runner/providers/vast/vasttest"
)

// TestOffersClassAcrossProviders: `offers --class` for a class on Vast and
// Lambda asks both fakes and merges their offers into one list, cheapest
// first, each with its provider, in the table and as JSON. A provider that
// fails is named, the other's offers are still listed, and the exit status
// says something went wrong.
func TestOffersClassAcrossProviders(t *testing.T) {
	v := vasttest.New(vasttest.Options{Dir: t.TempDir(), Logf: t.Logf})
	t.Cleanup(v.Close)
	l := lambdatest.New(t, lambdatest.Options{})
	dir := t.TempDir()
	cfg := filepath.Join(dir, "c.yaml")
	os.WriteFile(cfg, []byte(`providers: {vast: {min_request_interval: 1ms}, lambda: {min_request_interval: 1ms}}
classes:
  - name: a100
    labels: [self-hosted, a100]
    gpu: {name: A100, min_memory_gb: 40}
    providers: [lambda, vast]
    max_price_per_hour: 2
    min_reliability: 0.95
    disk_gb: 40
`), 0o600)
	env := map[string]string{"CRABBOX_CONFIG": cfg,
		"VAST_API_KEY": v.APIKey(), "CRABBOX_VAST_API_URL": v.URL(),
		"LAMBDA_API_KEY": l.APIKey(), "CRABBOX_LAMBDA_API_URL": l.URL()}

	code, out, errs := runCLI(t, env, "offers", "--class", "a100")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errs)
	}
	t.Logf("offers --class a100:\n%s", out)
	lines := strings.Split(strings.TrimSpace(out), "\n")
	want := [][]string{
		{"Cheapest offers for 1x A100 ≥40 GB ≤$2.00/h, 40 GB disk on lambda, vast"},
		{"PROVIDER", "OFFER", "GPU", "MEM/GPU", "$/HOUR", "REGION", "RELIABILITY"},
		{"vast", "5000201", "1x A100 PCIE", "0.811"},
		{"vast", "5000202", "1x A100 SXM4", "1.111"},
		{"lambda", "gpu_1x_a100_sxm4@us-east-1", "1x A100 SXM4", "1.290"},
		{"lambda", "gpu_1x_a100_sxm4@us-south-1", "1x A100 SXM4", "1.290"},
		{"lambda", "gpu_1x_a100_sxm4@us-west-2", "1x A100 SXM4", "1.290"},
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

	code, out, errs = runCLI(t, env, "offers", "--class", "a100", "--output", "json", "--limit", "4")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errs)
	}
	var offers []offerJSON
	if err := json.Unmarshal([]byte(out), &offers); err != nil {
		t.Fatalf("json: %v\n%s", err, out)
	}
	var got []string
	for i, o := range offers {
		got = append(got, o.Provider+" "+o.OfferID)
		if i > 0 && o.PricePerHour < offers[i-1].PricePerHour {
			t.Errorf("offer %d is cheaper than the one before it: %+v", i, offers)
		}
	}
	if strings.Join(got, ", ") != "vast 5000201, vast 5000202, lambda gpu_1x_a100_sxm4@us-east-1, lambda gpu_1x_a100_sxm4@us-south-1" {
		t.Errorf("offers: %s", strings.Join(got, ", "))
	}

	// --provider narrows the class to one of its providers.
	code, out, _ = runCLI(t, env, "offers", "--class", "a100", "--provider", "lambda", "--output", "json")
	if err := json.Unmarshal([]byte(out), &offers); code != 0 || err != nil || len(offers) != 3 || offers[0].Provider != "lambda" {
		t.Errorf("--provider lambda: exit %d, %v, %+v", code, err, offers)
	}

	// Lambda refuses its key: Vast's offers are still listed, Lambda's
	// failure is named, and the exit status is 1.
	env["LAMBDA_API_KEY"] = "lambda-wrong-key-0123456789"
	code, out, errs = runCLI(t, env, "offers", "--class", "a100", "--output", "json")
	if err := json.Unmarshal([]byte(out), &offers); code != 1 || err != nil || len(offers) != 2 || offers[0].Provider != "vast" ||
		!strings.Contains(errs, "lambda:") || !strings.Contains(errs, "401") {
		t.Errorf("with a bad Lambda key: exit %d, %v, %+v, stderr %q", code, err, offers, errs)
	}
	if strings.Contains(out+errs, "lambda-wrong-key") || strings.Contains(out+errs, v.APIKey()) {
		t.Error("an API key was printed")
	}
	// Both fail: nothing to list.
	env["VAST_API_KEY"] = "vast-wrong-key-0123456789"
	code, out, errs = runCLI(t, env, "offers", "--class", "a100")
	if code != 1 || out != "" || !strings.Contains(errs, "vast:") || !strings.Contains(errs, "lambda:") {
		t.Errorf("with both keys bad: exit %d, stdout %q, stderr %q", code, out, errs)
	}
}
