package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/crabbox/crabbox-runner/providers/lambda/lambdatest"
)

// TestOffersShowTheImage: `offers` says what each host would run. A GH200
// (an arm64 host) gets the arm64 image its region has, Lambda Stack 24.04
// in us-east-3 (the region's only arm64 images in Lambda's recorded GET
// /images); a class whose lambda_image the region lacks for arm64 gets no
// GH200 offer at all.
func TestOffersShowTheImage(t *testing.T) {
	fake := lambdatest.New(t, lambdatest.Options{})
	cfg := filepath.Join(t.TempDir(), "c.yaml")
	os.WriteFile(cfg, []byte(`providers: {lambda: {min_request_interval: 1ms}}
classes:
  - name: gh200
    labels: [self-hosted, linux, arm64, crabbox, gh200]
    gpu: {name: GH200, count: 1}
    providers: [lambda]
  - name: gh200-gpu-base
    labels: [self-hosted, linux, arm64, crabbox, gh200-base]
    gpu: {name: GH200, count: 1}
    providers: [lambda]
    lambda_image: gpu-base-24-04
  - name: old-style
    labels: [self-hosted, linux, x64, crabbox, old-style]
    gpu: {name: A100, count: 1}
    providers: [lambda]
    image: lambda-stack-22-04
`), 0o600)
	env := map[string]string{"CRABBOX_CONFIG": cfg, "LAMBDA_API_KEY": fake.APIKey(), "CRABBOX_LAMBDA_API_URL": fake.URL()}

	code, out, errs := runCLI(t, env, "offers", "--class", "gh200")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errs)
	}
	t.Logf("offers --class gh200:\n%s", out)
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 3 || !strings.HasSuffix(lines[1], "IMAGE") ||
		!strings.Contains(lines[2], "gpu_1x_gh200@us-east-3") || !strings.HasSuffix(lines[2], "lambda-stack-24-04@arm64") {
		t.Fatalf("table:\n%s", out)
	}
	code, out, errs = runCLI(t, env, "offers", "--class", "gh200", "--output", "json")
	var offers []offerJSON
	if code != 0 || json.Unmarshal([]byte(out), &offers) != nil || len(offers) != 1 || offers[0].Image != "lambda-stack-24-04@arm64" {
		t.Fatalf("json: exit %d %s %s", code, out, errs)
	}
	code, out, errs = runCLI(t, env, "offers", "--class", "gh200-gpu-base")
	t.Logf("offers --class gh200-gpu-base:\n%s", out)
	if code != 0 || !strings.Contains(out, "no offer fits") {
		t.Fatalf("a GPU Base GH200: exit %d %s %s", code, out, errs)
	}
	// A lambda-only class that names its Lambda image with image still
	// works, with a deprecation naming lambda_image.
	code, out, errs = runCLI(t, env, "offers", "--class", "old-style")
	t.Logf("offers --class old-style:\n%s%s", out, errs)
	if code != 0 || !strings.Contains(out, "lambda-stack-22-04@x86_64") || !strings.Contains(errs, "write it as lambda_image") {
		t.Fatalf("old-style class: exit %d %s %s", code, out, errs)
	}
	if launches := fake.Launches(); len(launches) != 0 {
		t.Fatalf("offers launched %d instances", len(launches))
	}
}
