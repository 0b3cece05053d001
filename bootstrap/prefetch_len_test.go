package bootstrap_test

import (
	"context"
	"strings"
	"testing"

	"github.com/crabbox/crabbox-runner/bootstrap"
	"github.com/crabbox/crabbox-runner/provisioner"
)

// longestURL is the longest runner URL template plausible in a config: a
// mirror of GitHub's release assets behind a long host and path.
const longestURL = "https://artifacts.internal-mirror.example-corporation.com/repository/github-releases-proxy/actions/runner/releases/download/v{version}/actions-runner-linux-{arch}-{version}.tar.gz"

// TestOnStartFitsVast: Vast refuses an onstart over 4048 characters
// (vast-api.md §9); ours, with the prefetch of both architectures and the
// longest plausible URL, stays under it.
func TestOnStartFitsVast(t *testing.T) {
	b, err := bootstrap.New(bootstrap.Config{RunnerURL: longestURL, RunnerVersion: "2.330.0-beta.10",
		RunnerChecksums: map[string]string{"x64": strings.Repeat("ab", 32), "arm64": strings.Repeat("cd", 32)}})
	if err != nil {
		t.Fatal(err)
	}
	s := b.OnStart(nil)
	if !strings.Contains(s, "prefetch.sh") {
		t.Fatalf("no prefetch in the onstart:\n%s", s)
	}
	if len(s) > bootstrap.MaxOnStart {
		t.Errorf("onstart is %d characters, Vast takes %d", len(s), bootstrap.MaxOnStart)
	}
	t.Logf("onstart: %d characters", len(s))
}

// TestPrefetchOnlyWithAChecksum: the user-data (checked by cloud-init
// schema in TestUserDataPassesCloudInitSchema) carries the prefetch when a
// checksum is configured; a runner resolved from GitHub at bootstrap time
// is not prefetched, so nothing unverified is fetched at boot.
func TestPrefetchOnlyWithAChecksum(t *testing.T) {
	b := newBootstrapper(t)
	c, err := b.NewCredentials(nil, true)
	if err != nil {
		t.Fatal(err)
	}
	ud, err := b.UserData(c)
	if err != nil || !strings.Contains(ud, "prefetch.sh") {
		t.Fatalf("user-data without the prefetch: %v\n%s", err, ud)
	}
	resolved, err := bootstrap.New(bootstrap.Config{Resolve: func(context.Context, provisioner.Scope, string) (bootstrap.Release, error) {
		return bootstrap.Release{}, nil
	}})
	if err != nil {
		t.Fatal(err)
	}
	ud, err = resolved.UserData(c)
	if err != nil || strings.Contains(ud, "prefetch") || strings.Contains(resolved.OnStart(c), "prefetch") {
		t.Errorf("a resolved runner is prefetched: %v\n%s", err, ud)
	}
}
