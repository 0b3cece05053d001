package config_test

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/crabbox/crabbox-runner/internal/config"
)

// TestNumbersRefused: every number and duration that means nothing as
// NaN, an infinity, a negative or an absurd value is refused, with the key
// named. Before, .nan as a price or spend cap meant no cap at all.
func TestNumbersRefused(t *testing.T) {
	cls := func(field string) string {
		return "classes:\n  - name: a100\n    labels: [crabbox, a100]\n    providers: [local]\n    " + field + "\n"
	}
	cases := []struct {
		yaml, key string
	}{
		{cls("max_price_per_hour: .nan"), "classes[0] (a100).max_price_per_hour"},
		{cls("max_price_per_hour: .inf"), "classes[0] (a100).max_price_per_hour"},
		{cls("max_price_per_hour: -.inf"), "classes[0] (a100).max_price_per_hour"},
		{cls("max_price_per_hour: -1"), "classes[0] (a100).max_price_per_hour"},
		{cls("max_price_per_hour: 25000"), "classes[0] (a100).max_price_per_hour"},
		{cls("min_reliability: .nan"), "classes[0] (a100).min_reliability"},
		{cls("min_reliability: 1.5"), "classes[0] (a100).min_reliability"},
		{cls("gpu: {min_memory_gb: .nan}"), "classes[0] (a100).gpu.min_memory_gb"},
		{cls("gpu: {min_memory_gb: 1e9}"), "classes[0] (a100).gpu.min_memory_gb"},
		{cls("gpu: {count: 100000}"), "classes[0] (a100).gpu.count"},
		{cls("gpu: {count: -1}"), "classes[0] (a100).gpu.count"},
		{cls("min_cuda: twelve"), "classes[0] (a100).min_cuda"},
		{cls("min_cuda: 12"), "classes[0] (a100).min_cuda"},
		{cls(`min_driver: "550.54.15.1"`), "classes[0] (a100).min_driver"},
		{cls(`min_driver: "550.54"` + "\n    check_gpu: false"), "classes[0] (a100).check_gpu"},
		{cls("disk_gb: -5"), "classes[0] (a100).disk_gb"},
		{cls("disk_gb: 9999999999"), "classes[0] (a100).disk_gb"},
		{cls("max_leases: -1"), "classes[0] (a100).max_leases"},
		{cls("idle_timeout: -1m"), "classes[0] (a100).idle_timeout"},
		{cls("max_lifetime: 100000h"), "classes[0] (a100).max_lifetime"},
		{cls("hedge_after: -1m"), "classes[0] (a100).hedge_after"},
		{cls("hedge_after: 10m"), "classes[0] (a100).hedge_after"}, // not shorter than the default boot_timeout
		{cls("hedge_after: 5m\n    boot_timeout: 4m"), "classes[0] (a100).hedge_after"},
		{"limits: {max_spend_per_hour: .nan}\n", "limits.max_spend_per_hour"},
		{"limits: {max_spend_per_hour: .inf}\n", "limits.max_spend_per_hour"},
		{"limits: {max_spend_per_hour: -3}\n", "limits.max_spend_per_hour"},
		{"limits: {max_spend_per_hour: 1e12}\n", "limits.max_spend_per_hour"},
		{"limits: {max_leases: -1}\n", "limits.max_leases"},
		{"github: {app_id: -4}\n", "github.app_id"},
		{"providers: {vast: {min_request_interval: -1s}}\n", "providers.vast.min_request_interval"},
		{"providers: {lambda: {launch_interval: -1s}}\n", "providers.lambda.launch_interval"},
		{"defaults: {boot_timeout: -1m}\n", "defaults.boot_timeout"},
		{"work: {job_timeout: -1m}\n", "work.job_timeout"},
		{"work: {rescue_after: -1m}\n", "work.rescue_after"},
		{"reconcile: {interval: 9000h}\n", "reconcile.interval"},
		{"retention: {deliveries: 1h}\n", "retention.deliveries"},
		{"retention: {history: 24h}\n", "retention.history"},
		{"bad_machines: {avoid_for: 10000h}\n", "bad_machines.avoid_for"},
		{"bad_machines: {avoid_pool_for: 9000h}\n", "bad_machines.avoid_pool_for"},
	}
	for _, tc := range cases {
		t.Run(tc.key+" "+tc.yaml, func(t *testing.T) {
			var c config.Config
			if err := config.Parse([]byte("deployment: acme\n"+tc.yaml), &c); err != nil {
				t.Fatal(err)
			}
			c.ApplyDefaults()
			err := c.Validate(config.Needs{})
			var ce *config.Error
			if !errors.As(err, &ce) || ce.Key != tc.key {
				t.Fatalf("got %v, want an error naming %s", err, tc.key)
			}
		})
	}
}

// TestNumbersAccepted: documented sentinels and sane values still pass.
func TestNumbersAccepted(t *testing.T) {
	y := `deployment: acme
github: {background_requests_per_minute: -1}
limits: {max_spend_per_hour: 500, github_jit_per_minute: -1, github_budget_reserve_percent: -1}
reconcile: {interval: -1s, gc_interval: -1s}
retention: {deliveries: -1s}
bad_machines: {avoid_for: -1s, avoid_pool_for: 10m}
classes:
  - name: a100
    labels: [crabbox, a100]
    providers: [local]
    max_price_per_hour: 40
    gpu: {count: 8, min_memory_gb: 80}
    min_reliability: 0.99
    hedge_after: 3m
`
	var c config.Config
	if err := config.Parse([]byte(y), &c); err != nil {
		t.Fatal(err)
	}
	c.ApplyDefaults()
	if err := c.Validate(config.Needs{}); err != nil {
		t.Fatal(err)
	}
	if got := c.ProvisionerClasses()[0].HedgeAfter; got != 3*time.Minute {
		t.Fatalf("hedge_after reached the class as %s", got)
	}
	var d config.Config
	d.ApplyDefaults()
	if d.Retention.Deliveries != config.DefaultRetention || !strings.HasPrefix(d.Retention.Deliveries.String(), "720h") {
		t.Fatalf("default retention %s", d.Retention.Deliveries)
	}
	if d.Retention.History != config.DefaultHistory || !strings.HasPrefix(d.Retention.History.String(), "2160h") {
		t.Fatalf("default history %s", d.Retention.History)
	}
	if d.BadMachines.AvoidFor.String() != "24h0m0s" || d.BadMachines.AvoidPoolFor.String() != "1h0m0s" {
		t.Fatalf("default bad_machines %+v", d.BadMachines)
	}
}

// TestGateVersions: min_cuda and min_driver reach the class as written,
// quoted or not (YAML reads 12.4 as a number; the key keeps its text).
func TestGateVersions(t *testing.T) {
	var c config.Config
	y := "deployment: acme\nclasses:\n  - name: a100\n    labels: [crabbox, a100]\n    providers: [local]\n    min_cuda: 12.4\n    min_driver: \"550.54.15\"\n"
	if err := config.Parse([]byte(y), &c); err != nil {
		t.Fatal(err)
	}
	c.ApplyDefaults()
	if err := c.Validate(config.Needs{}); err != nil {
		t.Fatal(err)
	}
	pc := c.ProvisionerClasses()[0]
	if pc.MinCUDA != "12.4" || pc.MinDriver != "550.54.15" || !pc.CheckGPU {
		t.Fatalf("class: min_cuda %q, min_driver %q, check_gpu %v", pc.MinCUDA, pc.MinDriver, pc.CheckGPU)
	}
}
