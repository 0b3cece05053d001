package config_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/crabbox/crabbox-runner/internal/config"
)

// The body cap is 1..25 MB (GitHub's payload cap); above it, or a budget
// that cannot hold one body, is refused with the key named.
func TestWebhookBounds(t *testing.T) {
	cases := []struct {
		yaml, key string
	}{
		{"webhook: {max_body_bytes: 26214401}\n", "webhook.max_body_bytes"},
		{"webhook: {max_body_bytes: 9223372036854775807}\n", "webhook.max_body_bytes"},
		{"webhook: {max_body_bytes: -1}\n", "webhook.max_body_bytes"},
		{"webhook: {max_buffered_bytes: 1000}\n", "webhook.max_buffered_bytes"},
		{"webhook: {max_body_bytes: 4000000, max_buffered_bytes: 3000000}\n", "webhook.max_buffered_bytes"},
		{"webhook: {max_buffered_bytes: 1099511627776}\n", "webhook.max_buffered_bytes"},
		{"webhook: {max_body_bytes: 26214400, max_buffered_bytes: 33554432}\n", ""},
		{"webhook: {max_body_bytes: 65536}\n", ""},
	}
	for _, tc := range cases {
		t.Run(tc.yaml, func(t *testing.T) {
			e := map[string]string{"CRABBOX_CONFIG": writeFile(t, base+tc.yaml),
				"CRABBOX_WEBHOOK_SECRET": "a-webhook-secret-of-32-bytes-ok!", "CRABBOX_GITHUB_TOKEN": "t"}
			c, err := config.Load(config.Overrides{}, env(e))
			if err == nil {
				err = c.Validate(config.Needs{Webhook: true, GitHub: true, Classes: true, Runner: true, Deployment: true})
			}
			if tc.key == "" {
				if err != nil {
					t.Fatalf("refused: %v", err)
				}
				return
			}
			var ce *config.Error
			if !errors.As(err, &ce) || ce.Key != tc.key {
				t.Fatalf("want a config.Error on %s, got %v", tc.key, err)
			}
			if !strings.Contains(err.Error(), "26214400") && tc.key == "webhook.max_body_bytes" {
				t.Fatalf("error does not say the limit: %v", err)
			}
		})
	}
}
