package config_test

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/crabbox/crabbox-runner/internal/config"
)

const sha = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"

const base = `
deployment: acme-gpu
listen: ":9000"
database_url: sqlite:from-file.db
runner:
  version: "2.330.0"
  sha256: "` + sha + `"
classes:
  - name: a100
    labels: [self-hosted, linux, x64, crabbox, a100]
    gpu: {name: A100, count: 1, min_memory_gb: 40}
    providers: [local]
    max_price_per_hour: 2.50
    idle_timeout: 5m
`

func writeFile(t *testing.T, body string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "crabbox-runner.yaml")
	if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func env(m map[string]string) config.Getenv {
	return func(k string) string { return m[k] }
}

func TestPrecedence(t *testing.T) {
	path := writeFile(t, base)
	// file only
	c, err := config.Load(config.Overrides{ConfigFile: path}, env(nil))
	if err != nil {
		t.Fatal(err)
	}
	if c.Listen != ":9000" || c.DatabaseURL != "sqlite:from-file.db" || c.Log.Level != "info" {
		t.Fatalf("file values: %+v", c)
	}
	// env over file
	e := map[string]string{"CRABBOX_CONFIG": path, "CRABBOX_LISTEN": "127.0.0.1:9100", "CRABBOX_DATABASE_URL": "sqlite:env.db"}
	c, err = config.Load(config.Overrides{}, env(e))
	if err != nil {
		t.Fatal(err)
	}
	if c.Listen != "127.0.0.1:9100" || c.DatabaseURL != "sqlite:env.db" {
		t.Fatalf("env values: listen %s db %s", c.Listen, c.DatabaseURL)
	}
	// flag over env
	c, err = config.Load(config.Overrides{Listen: ":9200"}, env(e))
	if err != nil {
		t.Fatal(err)
	}
	if c.Listen != ":9200" || c.DatabaseURL != "sqlite:env.db" {
		t.Fatalf("flag values: listen %s db %s", c.Listen, c.DatabaseURL)
	}
	// defaults
	cls := c.ProvisionerClasses()[0]
	if cls.IdleTimeout != 5*time.Minute || cls.BootTimeout != config.DefaultBootTimeout || cls.MaxLifetime != config.DefaultMaxLifetime || !cls.CheckGPU {
		t.Fatalf("class defaults: %+v", cls)
	}
}

func TestNoFileIsFineUnlessNamed(t *testing.T) {
	t.Chdir(t.TempDir())
	c, err := config.Load(config.Overrides{}, env(nil))
	if err != nil {
		t.Fatal(err)
	}
	if c.DatabaseURL != config.DefaultDatabaseURL || c.Listen != config.DefaultListen {
		t.Fatalf("defaults: %+v", c)
	}
	_, err = config.Load(config.Overrides{ConfigFile: "missing.yaml"}, env(nil))
	if err == nil || !strings.Contains(err.Error(), "missing.yaml") {
		t.Fatalf("missing named file: %v", err)
	}
}

func TestUnknownKeyIsAnError(t *testing.T) {
	path := writeFile(t, base+"\nlisten_addr: oops\n")
	_, err := config.Load(config.Overrides{ConfigFile: path}, env(nil))
	if err == nil || !strings.Contains(err.Error(), "listen_addr") {
		t.Fatalf("unknown key: %v", err)
	}
}

func TestSecretsFromEnvAndFiles(t *testing.T) {
	dir := t.TempDir()
	secretFile := filepath.Join(dir, "secret")
	os.WriteFile(secretFile, []byte("from-file-0123456789\n"), 0o600)
	path := writeFile(t, base)
	c, err := config.Load(config.Overrides{ConfigFile: path}, env(map[string]string{
		"CRABBOX_WEBHOOK_SECRET_FILE": secretFile, "CRABBOX_GITHUB_TOKEN": "ghp_x",
	}))
	if err != nil {
		t.Fatal(err)
	}
	if string(c.WebhookSecret) != "from-file-0123456789" || c.GitHubToken != "ghp_x" {
		t.Fatalf("secrets: %q %q", c.WebhookSecret, c.GitHubToken)
	}
	if err := c.Validate(config.Needs{Webhook: true, GitHub: true, Classes: true, Runner: true, Deployment: true}); err != nil {
		t.Fatal(err)
	}
	_, err = config.Load(config.Overrides{ConfigFile: path}, env(map[string]string{"CRABBOX_WEBHOOK_SECRET_FILE": filepath.Join(dir, "nope")}))
	if err == nil || !strings.Contains(err.Error(), "CRABBOX_WEBHOOK_SECRET_FILE") {
		t.Fatalf("missing secret file: %v", err)
	}
}

func TestValidationNamesTheKey(t *testing.T) {
	cases := []struct {
		name, yaml string
		env        map[string]string
		key        string
	}{
		{"no deployment", strings.Replace(base, "deployment: acme-gpu", "", 1), nil, "deployment"},
		{"bad deployment", strings.Replace(base, "acme-gpu", "Acme_GPU", 1), nil, "deployment"},
		{"bad listen", strings.Replace(base, `":9000"`, `"nine"`, 1), nil, "listen"},
		{"bad metrics listen", base, map[string]string{"CRABBOX_METRICS_LISTEN": "9090"}, "metrics_listen"},
		{"bad database", strings.Replace(base, "sqlite:from-file.db", "mysql://x", 1), nil, "database_url"},
		{"short sha", strings.Replace(base, sha, "abc", 1), nil, "runner.sha256.x64"},
		{"short arm64 sha", strings.Replace(base, `sha256: "`+sha+`"`, `sha256: {x64: "`+sha+`", arm64: "abc"}`, 1), nil, "runner.sha256.arm64"},
		{"unknown arch", strings.Replace(base, `sha256: "`+sha+`"`, `sha256: {amd64: "`+sha+`"}`, 1), nil, "runner.sha256.amd64"},
		{"empty arch", strings.Replace(base, `sha256: "`+sha+`"`, `sha256: {x64: ""}`, 1), nil, "runner.sha256.x64"},
		{"unknown provider", strings.Replace(base, "[local]", "[aws]", 1), nil, "classes[0] (a100).providers[0]"},
		{"vast without key", strings.Replace(base, "[local]", "[vast]", 1), nil, "classes[0] (a100).providers[0]"},
		{"no labels", strings.Replace(base, "labels: [self-hosted, linux, x64, crabbox, a100]", "labels: []", 1), nil, "classes[0] (a100).labels"},
		{"negative price", strings.Replace(base, "2.50", "-1", 1), nil, "classes[0] (a100).max_price_per_hour"},
		{"only default labels", strings.Replace(base, "labels: [self-hosted, linux, x64, crabbox, a100]", "labels: [self-hosted, Linux, X64]", 1), nil, "classes[0] (a100).labels"},
		{"bad repository", strings.Replace(base, "idle_timeout: 5m", "idle_timeout: 5m\n    repositories: [acme/ml, \"*/ml\"]", 1), nil, "classes[0] (a100).repositories[1]"},
		{"repository without owner", strings.Replace(base, "idle_timeout: 5m", "idle_timeout: 5m\n    repositories: [ml]", 1), nil, "classes[0] (a100).repositories[0]"},
		{"negative backoff", base + "reconcile: {unused_runner_backoff: -1s}\n", nil, "reconcile.unused_runner_backoff"},
		{"http api", base, map[string]string{"CRABBOX_GITHUB_API_URL": "http://api.example.com"}, "github.api_url"},
		{"api with userinfo", base, map[string]string{"CRABBOX_GITHUB_API_URL": "https://u:p@api.example.com"}, "github.api_url"},
		{"no secret", base, map[string]string{"CRABBOX_GITHUB_TOKEN": "t"}, "webhook.secret_file"},
		{"no github", base, map[string]string{"CRABBOX_WEBHOOK_SECRET": "0123456789abcdef"}, "github"},
		{"app without key", base, map[string]string{"CRABBOX_WEBHOOK_SECRET": "0123456789abcdef", "CRABBOX_GITHUB_APP_ID": "12"}, "github.app_private_key_file"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			e := map[string]string{"CRABBOX_CONFIG": writeFile(t, tc.yaml)}
			for k, v := range tc.env {
				e[k] = v
			}
			if tc.env == nil {
				e["CRABBOX_WEBHOOK_SECRET"], e["CRABBOX_GITHUB_TOKEN"] = "0123456789abcdef", "t"
			}
			c, err := config.Load(config.Overrides{}, env(e))
			if err == nil {
				err = c.Validate(config.Needs{Webhook: true, GitHub: true, Classes: true, Runner: true, Deployment: true})
			}
			var ce *config.Error
			if !errors.As(err, &ce) {
				t.Fatalf("want a config.Error, got %v", err)
			}
			if ce.Key != tc.key {
				t.Fatalf("key %q, want %q (%v)", ce.Key, tc.key, err)
			}
		})
	}
}

func TestSecretsNotInErrors(t *testing.T) {
	e := map[string]string{"CRABBOX_CONFIG": writeFile(t, base), "CRABBOX_WEBHOOK_SECRET": "hunter2-secret",
		"CRABBOX_GITHUB_TOKEN": "ghp_supersecret", "CRABBOX_GITHUB_APP_ID": "7"}
	c, err := config.Load(config.Overrides{}, env(e))
	if err != nil {
		t.Fatal(err)
	}
	err = c.Validate(config.Needs{Webhook: true, GitHub: true, Classes: true, Runner: true, Deployment: true})
	if err == nil {
		t.Fatal("want an error for token + app")
	}
	for _, s := range []string{"hunter2-secret", "ghp_supersecret"} {
		if strings.Contains(err.Error(), s) {
			t.Fatalf("secret in error: %v", err)
		}
	}
}

// TestWeakWebhookSecretRefused: CRABBOX_WEBHOOK_SECRET=a used to start
// serve. A secret under 16 bytes is refused in webhook mode with how to
// make one, and never echoed; poll mode takes no webhooks and needs none.
func TestWeakWebhookSecretRefused(t *testing.T) {
	for _, secret := range []string{"a", "0123456789abcde"} {
		e := map[string]string{"CRABBOX_CONFIG": writeFile(t, base), "CRABBOX_WEBHOOK_SECRET": secret, "CRABBOX_GITHUB_TOKEN": "t"}
		c, err := config.Load(config.Overrides{}, env(e))
		if err != nil {
			t.Fatal(err)
		}
		err = c.Validate(config.Needs{Webhook: true, GitHub: true, Classes: true, Runner: true, Deployment: true})
		var ce *config.Error
		if !errors.As(err, &ce) || ce.Key != "webhook.secret_file" || !strings.Contains(err.Error(), "openssl rand -hex 32") {
			t.Fatalf("secret of %d bytes: %v", len(secret), err)
		}
		if len(secret) > 1 && strings.Contains(err.Error(), secret) {
			t.Fatalf("secret in error: %v", err)
		}
		// Commands that take no webhooks do not care.
		if err := c.Validate(config.Needs{GitHub: true, Classes: true, Runner: true, Deployment: true}); err != nil {
			t.Fatal(err)
		}
		// Poll mode needs no secret; one given there still derives the
		// lease SSH keys, so a weak one is refused there too.
		e["CRABBOX_CONFIG"] = writeFile(t, base+"github: {mode: poll}\n")
		if c, err = config.Load(config.Overrides{}, env(e)); err != nil {
			t.Fatal(err)
		}
		if err := c.Validate(config.Needs{Webhook: true, GitHub: true, Classes: true, Runner: true, Deployment: true}); !errors.As(err, &ce) || ce.Key != "webhook.secret_file" {
			t.Fatalf("poll mode with a weak secret: %v", err)
		}
		delete(e, "CRABBOX_WEBHOOK_SECRET")
		if c, err = config.Load(config.Overrides{}, env(e)); err != nil {
			t.Fatal(err)
		}
		if err := c.Validate(config.Needs{Webhook: true, GitHub: true, Classes: true, Runner: true, Deployment: true}); err != nil {
			t.Fatalf("poll mode without a secret: %v", err)
		}
	}
	e := map[string]string{"CRABBOX_CONFIG": writeFile(t, base), "CRABBOX_WEBHOOK_SECRET": "0123456789abcdef", "CRABBOX_GITHUB_TOKEN": "t"}
	c, err := config.Load(config.Overrides{}, env(e))
	if err == nil {
		err = c.Validate(config.Needs{Webhook: true, GitHub: true, Classes: true, Runner: true, Deployment: true})
	}
	if err != nil {
		t.Fatalf("16 bytes: %v", err)
	}
}
