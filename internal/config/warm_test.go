package config_test

import (
	"strings"
	"testing"

	"github.com/crabbox/crabbox-runner/internal/config"
)

// classes[].min_idle: 0 by default, a count of warm hosts, never negative,
// never above the class's max_leases.
func TestMinIdle(t *testing.T) {
	e := env(map[string]string{"CRABBOX_WEBHOOK_SECRET": "0123456789abcdef", "CRABBOX_GITHUB_TOKEN": "t"})
	load := func(extra string) (*config.Config, error) {
		body := strings.Replace(base, "idle_timeout: 5m", "idle_timeout: 5m\n"+extra, 1)
		c, err := config.Load(config.Overrides{ConfigFile: writeFile(t, body)}, e)
		if err == nil {
			err = c.Validate(config.Needs{Webhook: true, GitHub: true, Classes: true, Runner: true, Deployment: true})
		}
		return c, err
	}
	c, err := load("")
	if err != nil || c.ProvisionerClasses()[0].MinIdle != 0 {
		t.Fatalf("unset: %v", err)
	}
	c, err = load("    min_idle: 2")
	if err != nil || c.ProvisionerClasses()[0].MinIdle != 2 {
		t.Fatalf("min_idle 2: %v", err)
	}
	for _, tc := range []struct{ name, extra string }{
		{"negative", "    min_idle: -1"},
		{"above max_leases", "    min_idle: 3\n    max_leases: 2"},
		{"absurd", "    min_idle: 100000"},
	} {
		if _, err := load(tc.extra); err == nil || !strings.Contains(err.Error(), "min_idle") {
			t.Errorf("%s: want an error naming min_idle, got %v", tc.name, err)
		}
	}
}
