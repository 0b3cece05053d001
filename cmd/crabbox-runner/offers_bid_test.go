package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/crabbox/crabbox-runner/providers/vast/vasttest"
)

// TestOffersVastInterruptible: a class with interruptible shows each
// machine twice, its bid (vast/bid, bid × min_bid + storage) first, and
// the JSON says which offers are bids and at what bid.
func TestOffersVastInterruptible(t *testing.T) {
	fake := vasttest.New(vasttest.Options{Dir: t.TempDir(), Logf: t.Logf})
	t.Cleanup(fake.Close)
	cfg := filepath.Join(t.TempDir(), "c.yaml")
	os.WriteFile(cfg, []byte(`providers: {vast: {min_request_interval: 1ms}}
classes:
  - name: a100
    labels: [self-hosted, a100]
    gpu: {name: A100, min_memory_gb: 40}
    providers: [vast]
    max_price_per_hour: 2
    min_reliability: 0.95
    disk_gb: 40
    interruptible: {bid: 1.2}
`), 0o600)
	env := map[string]string{"CRABBOX_CONFIG": cfg, "VAST_API_KEY": fake.APIKey(), "CRABBOX_VAST_API_URL": fake.URL()}
	code, out, errs := runCLI(t, env, "offers", "--class", "a100")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errs)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	// 5000201: bid 1.2 × 0.48 = 0.576 + 40 GB × $0.2/GB/month = 0.587.
	if len(lines) != 6 || !strings.Contains(lines[2], "vast/bid") || !strings.Contains(lines[2], "5000201") ||
		!strings.Contains(lines[2], "0.587") {
		t.Fatalf("table:\n%s", out)
	}
	code, out, errs = runCLI(t, env, "offers", "--class", "a100", "--output", "json")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errs)
	}
	var offers []offerJSON
	if err := json.Unmarshal([]byte(out), &offers); err != nil {
		t.Fatal(err)
	}
	if len(offers) != 4 || !offers[0].Interruptible || offers[0].BidPerHour != 0.576 || offers[len(offers)-1].Interruptible {
		t.Fatalf("json: %+v", offers)
	}
}
