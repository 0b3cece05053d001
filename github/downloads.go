package github

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"strings"

	gh "github.com/google/go-github/v62/github"

	"github.com/crabbox/crabbox-runner/provisioner"
)

// RunnerRelease is the actions/runner release GitHub wants runners of a scope
// to run, for one OS and architecture.
type RunnerRelease struct {
	OS, Arch string
	Version  string // e.g. 2.330.0, from the file name
	URL      string // download_url
	Filename string
	SHA256   string // lower-case hex
}

// The file name carries the version; the API has no field for it.
var runnerFileRE = regexp.MustCompile(`^actions-runner-[a-z]+-[a-z0-9]+-([0-9]+(?:\.[0-9]+){1,3})\.(?:tar\.gz|zip)$`)

var sha256HexRE = regexp.MustCompile(`^[0-9a-f]{64}$`)

// RunnerDownload asks GitHub which runner release to install for os
// ("linux", "osx", "win") and arch ("x64", "arm64", "arm"), from
// GET /repos/{owner}/{repo}/actions/runners/downloads or the org variant
// (reference §5.1). Using it rather than a pinned version keeps runners
// current, so a JIT runner does not update itself before its job.
func (c *Client) RunnerDownload(ctx context.Context, scope provisioner.Scope, os, arch string) (*RunnerRelease, error) {
	t, err := parseScope(scope)
	if err != nil {
		return nil, err
	}
	g, err := c.clientFor(ctx, scope)
	if err != nil {
		return nil, err
	}
	var list []*gh.RunnerApplicationDownload
	if t.repo != "" {
		list, _, err = g.Actions.ListRunnerApplicationDownloads(ctx, t.owner, t.repo)
	} else {
		list, _, err = g.Actions.ListOrganizationRunnerApplicationDownloads(ctx, t.org)
	}
	if err != nil {
		return nil, fmt.Errorf("github: runner downloads in %s: %w", scope, err)
	}
	var offered []string
	for _, d := range list {
		offered = append(offered, d.GetOS()+"/"+d.GetArchitecture())
		if !strings.EqualFold(d.GetOS(), os) || !strings.EqualFold(d.GetArchitecture(), arch) {
			continue
		}
		rel := &RunnerRelease{
			OS: d.GetOS(), Arch: d.GetArchitecture(), URL: d.GetDownloadURL(), Filename: d.GetFilename(),
			SHA256: strings.ToLower(strings.TrimSpace(d.GetSHA256Checksum())),
		}
		m := runnerFileRE.FindStringSubmatch(rel.Filename)
		switch {
		case m == nil:
			return nil, fmt.Errorf("github: runner download for %s/%s: file name %q carries no version", os, arch, rel.Filename)
		case !sha256HexRE.MatchString(rel.SHA256):
			// Without a checksum the bootstrap cannot verify the tarball.
			return nil, fmt.Errorf("github: runner download for %s/%s: no valid sha256_checksum", os, arch)
		case rel.URL == "":
			return nil, fmt.Errorf("github: runner download for %s/%s: no download_url", os, arch)
		}
		rel.Version = m[1]
		return rel, nil
	}
	if len(offered) == 0 {
		return nil, errors.New("github: runner downloads: GitHub listed none")
	}
	return nil, fmt.Errorf("github: no runner download for %s/%s (GitHub offers %s)", os, arch, strings.Join(offered, ", "))
}
