package main

import (
	"context"

	"github.com/crabbox/crabbox-runner/bootstrap"
	"github.com/crabbox/crabbox-runner/github"
	"github.com/crabbox/crabbox-runner/provisioner"
)

// runnerReleaseFromGitHub answers, for a host whose architecture has no
// configured runner.sha256, with the Linux release GitHub's
// runners/downloads endpoint names for that architecture in the lease's
// scope; the bootstrap keeps it only when it is of runner.version.
func runnerReleaseFromGitHub(gh *github.Client) bootstrap.ResolveFunc {
	return func(ctx context.Context, scope provisioner.Scope, arch string) (bootstrap.Release, error) {
		rel, err := gh.RunnerDownload(ctx, scope, "linux", arch)
		if err != nil {
			return bootstrap.Release{}, err
		}
		return bootstrap.Release{Version: rel.Version, URL: rel.URL, SHA256: rel.SHA256}, nil
	}
}
