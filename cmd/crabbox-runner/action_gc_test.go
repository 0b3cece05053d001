package main

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/crabbox/crabbox-runner/github/githubtest"
)

// TestActionGCWhenStopNeverRan: two starts, no stop. gc leaves the lease
// that has not expired alone; once the other's expiry has passed (the
// clock moved on), a dry run only plans its destruction, gc destroys its
// host, and a later gc removes its runner once that has gone offline.
func TestActionGCWhenStopNeverRan(t *testing.T) {
	w := newActionWorld(t, false, nil, nil)
	short := w.step(map[string]string{"mode": "start", "timeout": "1m", "max-lifetime": "2m"})
	long := w.step(map[string]string{"mode": "start", "timeout": "1m", "max-lifetime": "1h"})
	if short.code != 0 || long.code != 0 {
		t.Fatalf("starts: %d %d", short.code, long.code)
	}
	gc := func(with map[string]string) stepResult {
		t.Helper()
		with["mode"] = "gc"
		res := w.step(with)
		if res.code != 0 {
			t.Fatalf("gc exit %d", res.code)
		}
		return res
	}
	if res := gc(map[string]string{}); res.outputs["gc-actions"] != "0" || len(w.hosts.Live()) != 2 {
		t.Fatalf("gc before any expiry: %v, %d hosts", res.outputs, len(w.hosts.Live()))
	}

	w.offset = 3 * time.Minute
	dry := gc(map[string]string{"dry-run": "true"})
	if dry.outputs["gc-actions"] != "1" || len(w.hosts.Live()) != 2 || !strings.Contains(dry.stdout, "dry run") ||
		!strings.Contains(dry.summary, short.outputs["lease-id"]) || !strings.Contains(dry.summary, "| planned |") {
		t.Fatalf("dry run: %v, %d hosts\n%s", dry.outputs, len(w.hosts.Live()), dry.summary)
	}
	real := gc(map[string]string{})
	live := w.hosts.Live()
	if real.outputs["gc-actions"] != "1" || len(live) != 1 || live[0].Marker.LeaseID != long.outputs["lease-id"] ||
		!strings.Contains(real.summary, "| done |") {
		t.Fatalf("gc: %v, hosts %+v\n%s", real.outputs, live, real.summary)
	}

	// The runner of the destroyed host goes offline; then gc removes it.
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := w.gh.WaitRunners(ctx, func(rs []githubtest.Runner) bool {
		for _, r := range rs {
			if r.Name == short.outputs["runner-name"] && r.Status == "offline" {
				return true
			}
		}
		return false
	}); err != nil {
		t.Fatal(err)
	}
	gc(map[string]string{})
	rs := w.gh.Runners()
	if len(rs) != 1 || rs[0].Name != long.outputs["runner-name"] {
		t.Fatalf("runners after gc: %+v", rs)
	}
	if stop := w.step(map[string]string{"mode": "stop", "lease-id": long.outputs["lease-id"]}); stop.code != 0 {
		t.Fatalf("stop: %d", stop.code)
	}
}
