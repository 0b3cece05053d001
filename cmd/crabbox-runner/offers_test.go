package main

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func runCLI(t *testing.T, env map[string]string, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errb bytes.Buffer
	code = run(context.Background(), args, &out, &errb, func(k string) string { return env[k] })
	return code, out.String(), errb.String()
}

func TestOffersLocal(t *testing.T) {
	dir := t.TempDir()
	cfg := filepath.Join(dir, "c.yaml")
	os.WriteFile(cfg, []byte(`providers: {local: {dir: `+dir+`}}
classes:
  - name: a100
    labels: [self-hosted, a100]
    gpu: {name: A100, min_memory_gb: 40}
    providers: [local]
    max_price_per_hour: 2
`), 0o600)
	env := map[string]string{"CRABBOX_CONFIG": cfg}

	code, out, errs := runCLI(t, env, "offers", "--class", "a100")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errs)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	// A100 PCIE $0.89 then A100 SXM4 $1.29; the 2x and H100 do not fit.
	if len(lines) != 4 || !strings.Contains(lines[2], "A100 PCIE") || !strings.Contains(lines[3], "A100 SXM4") {
		t.Fatalf("table:\n%s", out)
	}

	code, out, errs = runCLI(t, env, "offers", "--provider", "local", "--gpu", "H100", "--output", "json")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errs)
	}
	var offers []offerJSON
	if err := json.Unmarshal([]byte(out), &offers); err != nil {
		t.Fatalf("json: %v\n%s", err, out)
	}
	if len(offers) != 1 || offers[0].GPU != "H100 SXM" || offers[0].PricePerHour != 2.49 {
		t.Fatalf("offers %+v", offers)
	}

	for _, bad := range [][]string{
		{"offers"},
		{"offers", "--class", "nope"},
		{"offers", "--gpu", "A100", "--provider", "aws"},
		{"offers", "--class", "a100", "--output", "yaml"},
	} {
		if code, _, errs := runCLI(t, env, bad...); code == 0 || errs == "" {
			t.Errorf("%v: exit %d, stderr %q", bad, code, errs)
		}
	}
}

func TestVersionAndHelp(t *testing.T) {
	code, out, _ := runCLI(t, nil, "version")
	if code != 0 || !strings.HasPrefix(out, "crabbox-runner ") {
		t.Fatalf("version: %d %q", code, out)
	}
	for _, sub := range []string{"serve", "demo", "offers", "version", "gc", "leases", "release", "doctor", "action"} {
		code, out, _ := runCLI(t, nil, sub, "--help")
		if code != 0 || !strings.Contains(out, "Usage:") {
			t.Errorf("%s --help: %d %q", sub, code, out)
		}
	}
}

func TestServeRefusesBadConfig(t *testing.T) {
	dir := t.TempDir()
	cfg := filepath.Join(dir, "c.yaml")
	os.WriteFile(cfg, []byte("deployment: x\nclasses: []\n"), 0o600)
	code, _, errs := runCLI(t, map[string]string{"CRABBOX_CONFIG": cfg}, "serve")
	if code == 0 || !strings.Contains(errs, "config: ") {
		t.Fatalf("serve with a bad config: exit %d, %q", code, errs)
	}
	if strings.Count(strings.TrimSpace(errs), "\n") != 0 {
		t.Fatalf("want one clear line, got:\n%s", errs)
	}
}
