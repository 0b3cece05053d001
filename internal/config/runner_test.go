package config_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/crabbox/crabbox-runner/internal/config"
)

// runner.sha256 is one string (the x64 tarball's, as before) or a map by
// architecture; none at all leaves every architecture to GitHub's
// runners/downloads endpoint.
func TestRunnerChecksumForms(t *testing.T) {
	arm := strings.Repeat("ab", 32)
	for _, tc := range []struct {
		name, sha256 string
		x64, arm64   string
		archs        string
	}{
		{"string is x64", `sha256: "` + strings.ToUpper(sha) + `"`, sha, "", "x64"},
		{"map", "sha256:\n    x64: \"" + sha + "\"\n    arm64: \"" + arm + "\"", sha, arm, "arm64,x64"},
		{"flow map, arm64 only", `sha256: {arm64: "` + arm + `"}`, "", arm, "arm64"},
		{"none", "", "", "", ""},
		{"null", "sha256:", "", "", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			y := strings.Replace(base, `sha256: "`+sha+`"`, tc.sha256, 1)
			c, err := config.Load(config.Overrides{}, env(map[string]string{"CRABBOX_CONFIG": writeFile(t, y),
				"CRABBOX_WEBHOOK_SECRET": "0123456789abcdef", "CRABBOX_GITHUB_TOKEN": "t"}))
			if err != nil {
				t.Fatal(err)
			}
			if err := c.Validate(config.Needs{Webhook: true, GitHub: true, Classes: true, Runner: true, Deployment: true}); err != nil {
				t.Fatal(err)
			}
			if got := c.Runner.SHA256.For("x64"); got != tc.x64 {
				t.Errorf("x64 = %q, want %q", got, tc.x64)
			}
			if got := c.Runner.SHA256.For("arm64"); got != tc.arm64 {
				t.Errorf("arm64 = %q, want %q", got, tc.arm64)
			}
			if got := strings.Join(c.Runner.SHA256.Archs(), ","); got != tc.archs {
				t.Errorf("archs = %q, want %q", got, tc.archs)
			}
		})
	}
}

func TestRunnerChecksumBadShapes(t *testing.T) {
	for _, tc := range []struct{ name, sha256, want string }{
		{"list", `sha256: ["` + sha + `"]`, "runner.sha256"},
		{"nested map", `sha256: {x64: {a: b}}`, "runner.sha256"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			y := strings.Replace(base, `sha256: "`+sha+`"`, tc.sha256, 1)
			_, err := config.Load(config.Overrides{}, env(map[string]string{"CRABBOX_CONFIG": writeFile(t, y)}))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Load = %v, want an error naming %s", err, tc.want)
			}
		})
	}
	// An alias gets a hint at the name to write.
	y := strings.Replace(base, `sha256: "`+sha+`"`, `sha256: {aarch64: "`+sha+`"}`, 1)
	c, err := config.Load(config.Overrides{}, env(map[string]string{"CRABBOX_CONFIG": writeFile(t, y)}))
	if err != nil {
		t.Fatal(err)
	}
	err = c.Validate(config.Needs{Runner: true})
	var ce *config.Error
	if !errors.As(err, &ce) || ce.Key != "runner.sha256.aarch64" || !strings.Contains(err.Error(), "write arm64") {
		t.Fatalf("Validate = %v", err)
	}
}
