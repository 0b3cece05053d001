package config_test

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/crabbox/crabbox-runner/internal/config"
)

const statusToken = "status-token-0123456789abcdef"

var serveNeeds = config.Needs{Webhook: true, GitHub: true, Classes: true, Runner: true, Deployment: true}

// The status page token comes, like the webhook secret, from the env, a
// file named in the env, or a file named in the config file, in that order.
func TestStatusTokenSources(t *testing.T) {
	testSecretSources(t, secretSource{env: "CRABBOX_STATUS_TOKEN", section: "status", fileKey: "token_file",
		get: func(c *config.Config) string { return c.StatusToken }}, statusToken)
}

// secretSource is one secret read like the webhook secret: its variable
// (the file variant is env+"_FILE") and the config key naming its file.
type secretSource struct {
	env, section, fileKey string
	get                   func(*config.Config) string
}

// testSecretSources checks the order of a secret's sources, env over the
// env's file over the config's file, and that none of them is required.
func testSecretSources(t *testing.T, s secretSource, value string) {
	t.Helper()
	dir := t.TempDir()
	fromEnvFile := filepath.Join(dir, "env-file")
	fromConfig := filepath.Join(dir, "config-file")
	os.WriteFile(fromEnvFile, []byte("from-env-file-0123456789\n"), 0o600)
	os.WriteFile(fromConfig, []byte("from-config-file-0123456789\n"), 0o600)
	withFile := base + s.section + ":\n  " + s.fileKey + ": " + fromConfig + "\n"
	cases := []struct {
		name, yaml string
		env        map[string]string
		want       string
	}{
		{"none", base, nil, ""},
		{"env", withFile, map[string]string{s.env: value, s.env + "_FILE": fromEnvFile}, value},
		{"env file", withFile, map[string]string{s.env + "_FILE": fromEnvFile}, "from-env-file-0123456789"},
		{"config file", withFile, nil, "from-config-file-0123456789"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			e := map[string]string{"CRABBOX_CONFIG": writeFile(t, tc.yaml), "CRABBOX_WEBHOOK_SECRET": "0123456789abcdef", "CRABBOX_GITHUB_TOKEN": "t"}
			for k, v := range tc.env {
				e[k] = v
			}
			c, err := config.Load(config.Overrides{}, env(e))
			if err != nil {
				t.Fatal(err)
			}
			if got := s.get(c); got != tc.want {
				t.Fatalf("%s %q, want %q", s.env, got, tc.want)
			}
			if err := c.Validate(serveNeeds); err != nil {
				t.Fatal(err)
			}
		})
	}
}

func TestStatusTokenRefusals(t *testing.T) {
	dir := t.TempDir()
	empty := filepath.Join(dir, "empty")
	os.WriteFile(empty, []byte("\n"), 0o600)

	// A file that is missing or empty is an error naming where it was set.
	for name, tc := range map[string]struct {
		yaml string
		env  map[string]string
		want string
	}{
		"missing env file":    {base, map[string]string{"CRABBOX_STATUS_TOKEN_FILE": filepath.Join(dir, "nope")}, "CRABBOX_STATUS_TOKEN_FILE"},
		"empty env file":      {base, map[string]string{"CRABBOX_STATUS_TOKEN_FILE": empty}, "is empty"},
		"missing config file": {base + "status:\n  token_file: " + filepath.Join(dir, "nope") + "\n", nil, "file for CRABBOX_STATUS_TOKEN"},
	} {
		e := map[string]string{"CRABBOX_CONFIG": writeFile(t, tc.yaml)}
		for k, v := range tc.env {
			e[k] = v
		}
		if _, err := config.Load(config.Overrides{}, env(e)); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want an error with %q", name, err, tc.want)
		}
	}

	// A weak or unusable token is refused by Validate, without showing it.
	for name, tok := range map[string]string{
		"short":         "hunter2hunter2",
		"inner space":   "status token 0123456789abcdef",
		"not ascii":     "status-tökén-0123456789abcdef",
		"control chars": "status-token-0123456789\x01abcdef",
	} {
		e := map[string]string{"CRABBOX_CONFIG": writeFile(t, base), "CRABBOX_WEBHOOK_SECRET": "0123456789abcdef", "CRABBOX_GITHUB_TOKEN": "t",
			"CRABBOX_STATUS_TOKEN": tok}
		c, err := config.Load(config.Overrides{}, env(e))
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		err = c.Validate(serveNeeds)
		var ce *config.Error
		if !errors.As(err, &ce) || ce.Key != "status.token_file" {
			t.Errorf("%s: %v, want an error on status.token_file", name, err)
			continue
		}
		if strings.Contains(err.Error(), tok) {
			t.Errorf("%s: the token is in the error: %v", name, err)
		}
	}

	// An unknown key under status is an error like any other.
	if _, err := config.Load(config.Overrides{ConfigFile: writeFile(t, base+"status:\n  token: x\n")}, env(nil)); err == nil {
		t.Error("status.token (a secret in the YAML) was accepted")
	}
}
