package config_test

import (
	"errors"
	"testing"

	"github.com/crabbox/crabbox-runner/internal/config"
)

// FuzzConfig feeds arbitrary YAML to the loader. It must never panic, and
// any configuration it accepts must either validate or fail with an error
// that names a key. Seeds are in testdata/fuzz/FuzzConfig.
func FuzzConfig(f *testing.F) {
	f.Add([]byte(base))
	f.Add([]byte("deployment: x\nclasses: [{name: a, labels: [a], providers: [local], gpu: {count: -1}}]\n"))
	f.Add([]byte("defaults: {boot_timeout: 1h, max_lifetime: 1m}\n"))
	f.Add([]byte("github: {scopes: [\"a/b/c\", \"\"]}\n"))
	f.Add([]byte("runner: {sha256: zz, url: \"http://example.com/{version}\"}\n"))
	f.Add([]byte(": : :\n\t- ["))
	f.Fuzz(func(t *testing.T, data []byte) {
		var c config.Config
		if err := config.Parse(data, &c); err != nil {
			return
		}
		c.ApplyDefaults()
		err := c.Validate(config.Needs{Classes: true, Runner: true, Deployment: true})
		if err == nil {
			_ = c.ProvisionerClasses()
			return
		}
		var ce *config.Error
		if !errors.As(err, &ce) || ce.Key == "" {
			t.Fatalf("error without a key: %v", err)
		}
	})
}
