package config_test

import (
	"strings"
	"testing"

	"github.com/crabbox/crabbox-runner/internal/config"
)

// classes[].interruptible: a bid rule from 1 to 10 times the minimum bid,
// on a class that has Vast (Lambda has no bid market).
func TestInterruptibleClass(t *testing.T) {
	vastEnv := env(map[string]string{"VAST_API_KEY": "k", "CRABBOX_WEBHOOK_SECRET": "0123456789abcdef", "CRABBOX_GITHUB_TOKEN": "t"})
	load := func(extra, providers string) (*config.Config, error) {
		body := strings.Replace(base, "idle_timeout: 5m", "idle_timeout: 5m\n"+extra, 1)
		body = strings.Replace(body, "[local]", providers, 1)
		c, err := config.Load(config.Overrides{ConfigFile: writeFile(t, body)}, vastEnv)
		if err == nil {
			err = c.Validate(config.Needs{Webhook: true, GitHub: true, Classes: true, Runner: true, Deployment: true})
		}
		return c, err
	}
	c, err := load("    interruptible: {bid: 1.2}", "[vast, local]")
	if err != nil {
		t.Fatal(err)
	}
	if got := c.ProvisionerClasses()[0].InterruptibleBid; got != 1.2 {
		t.Fatalf("InterruptibleBid = %v", got)
	}
	c, err = load("", "[vast]")
	if err != nil || c.ProvisionerClasses()[0].InterruptibleBid != 0 {
		t.Fatalf("unset: %v %v", c, err)
	}
	for _, tc := range []struct{ name, extra, providers, want string }{
		{"no bid", "    interruptible: {}", "[vast]", "classes[0] (a100).interruptible.bid"},
		{"under the minimum", "    interruptible: {bid: 0.9}", "[vast]", "classes[0] (a100).interruptible.bid"},
		{"too high", "    interruptible: {bid: 11}", "[vast]", "classes[0] (a100).interruptible.bid"},
		{"not a number", "    interruptible: {bid: .nan}", "[vast]", "classes[0] (a100).interruptible.bid"},
		{"lambda only", "    interruptible: {bid: 1.2}", "[local]", "classes[0] (a100).interruptible"},
		{"unknown key", "    interruptible: {max_bid: 1}", "[vast]", "max_bid"},
	} {
		_, err := load(tc.extra, tc.providers)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want an error naming %s", tc.name, err, tc.want)
		}
	}
}
