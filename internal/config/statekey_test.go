package config_test

import (
	"errors"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/crabbox/crabbox-runner/internal/config"
)

const stateKey = "state-key-0123456789abcdef0123456789"

// The state key comes, like the webhook secret, from the env, a file named
// in the env, or a file named in the config file, in that order; never
// from the YAML itself. None given: serve makes or refuses one.
func TestStateKeySources(t *testing.T) {
	testSecretSources(t, secretSource{env: "CRABBOX_STATE_KEY", section: "state", fileKey: "key_file",
		get: func(c *config.Config) string { return string(c.StateKey) }}, stateKey)
	if _, err := config.Load(config.Overrides{ConfigFile: writeFile(t, base+"state:\n  key: "+stateKey+"\n")}, env(nil)); err == nil {
		t.Error("state.key (a secret in the YAML) was accepted")
	}
}

// A short state key is refused with its length and how to make one, never
// with the key; a missing file names where it was set.
func TestStateKeyRefusals(t *testing.T) {
	for _, key := range []string{"short", "0123456789abcde"} {
		e := map[string]string{"CRABBOX_CONFIG": writeFile(t, base), "CRABBOX_WEBHOOK_SECRET": "0123456789abcdef", "CRABBOX_GITHUB_TOKEN": "t",
			"CRABBOX_STATE_KEY": key}
		c, err := config.Load(config.Overrides{}, env(e))
		if err != nil {
			t.Fatalf("%q: %v", key, err)
		}
		err = c.Validate(serveNeeds)
		var ce *config.Error
		if !errors.As(err, &ce) || ce.Key != "state.key_file" {
			t.Fatalf("%d bytes: %v, want an error on state.key_file", len(key), err)
		}
		for _, want := range []string{"has " + strconv.Itoa(len(key)) + " bytes", "openssl rand -hex 32", "CRABBOX_STATE_KEY"} {
			if !strings.Contains(err.Error(), want) {
				t.Errorf("%d bytes: %v lacks %q", len(key), err, want)
			}
		}
		if strings.Contains(err.Error(), key) {
			t.Errorf("the key is in the error: %v", err)
		}
	}
	// The previous key (a rotation's old one) is held to the same.
	e := map[string]string{"CRABBOX_CONFIG": writeFile(t, base), "CRABBOX_WEBHOOK_SECRET": "0123456789abcdef", "CRABBOX_GITHUB_TOKEN": "t",
		"CRABBOX_STATE_KEY": stateKey, "CRABBOX_STATE_KEY_PREVIOUS": "short"}
	c, err := config.Load(config.Overrides{}, env(e))
	if err != nil {
		t.Fatal(err)
	}
	var ce *config.Error
	if err := c.Validate(serveNeeds); !errors.As(err, &ce) || ce.Key != "state.previous_key_file" || !strings.Contains(err.Error(), "CRABBOX_STATE_KEY_PREVIOUS") {
		t.Errorf("short previous key: %v", err)
	}
	e = map[string]string{"CRABBOX_CONFIG": writeFile(t, base), "CRABBOX_STATE_KEY_FILE": filepath.Join(t.TempDir(), "nope")}
	if _, err := config.Load(config.Overrides{}, env(e)); err == nil || !strings.Contains(err.Error(), "CRABBOX_STATE_KEY_FILE") {
		t.Errorf("missing key file: %v", err)
	}
}
