package main

import (
	"strings"
	"testing"
)

const strictConfig = `deployment: e2e
runner: {version: "2.330.0", sha256: "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"}
classes:
  - name: a100
    labels: [self-hosted, a100]
    providers: [local]
`

// TestServeRefusesWeakWebhookSecret: serve used to start with
// CRABBOX_WEBHOOK_SECRET=a. It now exits with how to make a secret, without
// echoing the one it was given.
func TestServeRefusesWeakWebhookSecret(t *testing.T) {
	path := t.TempDir() + "/c.yaml"
	writeFile(t, path, strictConfig)
	weak := "short-secret"
	code, _, errs := runCLI(t, map[string]string{"CRABBOX_CONFIG": path, "CRABBOX_WEBHOOK_SECRET": weak, "CRABBOX_GITHUB_TOKEN": "t"},
		"serve", "--listen", "127.0.0.1:0")
	if code == 0 || !strings.Contains(errs, "webhook.secret_file") || !strings.Contains(errs, "openssl rand -hex 32") {
		t.Fatalf("serve with a %d-byte secret: exit %d, %s", len(weak), code, errs)
	}
	if strings.Contains(errs, weak) {
		t.Fatalf("the secret is in the error: %s", errs)
	}
}

// TestServeRefusesNaNCaps: .nan as a price or spend cap meant no cap.
func TestServeRefusesNaNCaps(t *testing.T) {
	for _, tc := range []struct{ extra, key string }{
		{"    max_price_per_hour: .nan\n", "classes[0] (a100).max_price_per_hour"},
		{"limits: {max_spend_per_hour: .nan}\n", "limits.max_spend_per_hour"},
		{"retention: {deliveries: 1h}\n", "retention.deliveries"},
	} {
		path := t.TempDir() + "/c.yaml"
		writeFile(t, path, strictConfig+tc.extra)
		code, _, errs := runCLI(t, map[string]string{"CRABBOX_CONFIG": path, "CRABBOX_WEBHOOK_SECRET": "0123456789abcdef", "CRABBOX_GITHUB_TOKEN": "t"},
			"serve", "--listen", "127.0.0.1:0")
		if code == 0 || !strings.Contains(errs, tc.key) {
			t.Fatalf("%s: exit %d, %s", tc.extra, code, errs)
		}
	}
}
