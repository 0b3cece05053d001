package bootstrap

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"strings"

	"github.com/crabbox/crabbox-runner/provisioner"
)

// Release is one runner tarball to install: its version, where to download
// it, and the checksum it must match.
type Release struct {
	Version string
	URL     string // resolved: no {version} or {arch} left
	SHA256  string // 64 lower-case hex digits
}

// ResolveFunc says which release a host of arch ("x64", "arm64") should
// install when no checksum for arch is configured, e.g. from GitHub's
// runners/downloads endpoint for scope. With Config.RunnerVersion set, the
// answer must be of that version.
type ResolveFunc func(ctx context.Context, scope provisioner.Scope, arch string) (Release, error)

// ErrRunnerRelease: no verified runner tarball for the host's architecture.
// Another host of that architecture will not fix it; the configuration
// (runner.sha256, runner.version) will.
var ErrRunnerRelease = errors.New("no verified runner release for the host's architecture")

// release is the tarball a host of arch installs: the configured
// checksum's when there is one, else what Resolve says (cached per
// architecture when the version is pinned: a checksum of a version never
// changes). Never a tarball without a checksum.
func (b *Bootstrapper) release(ctx context.Context, scope provisioner.Scope, arch string) (Release, error) {
	if sum := b.cfg.RunnerChecksums[arch]; sum != "" {
		return Release{Version: b.cfg.RunnerVersion, URL: resolveURL(b.cfg.RunnerURL, b.cfg.RunnerVersion, arch), SHA256: sum}, nil
	}
	if b.cfg.Resolve == nil {
		return Release{}, fmt.Errorf("bootstrap: the host is %s and no checksum is configured for %s tarballs (runner.sha256.%s): %w", arch, arch, arch, ErrRunnerRelease)
	}
	pinned := b.cfg.RunnerVersion != ""
	if pinned {
		b.mu.Lock()
		r, ok := b.resolved[arch]
		b.mu.Unlock()
		if ok {
			return r, nil
		}
	}
	r, err := b.cfg.Resolve(ctx, scope, arch)
	if err != nil {
		return Release{}, fmt.Errorf("bootstrap: the host is %s and no checksum is configured for it; asking GitHub for one: %w (%w)", arch, err, ErrRunnerRelease)
	}
	r.SHA256 = strings.ToLower(strings.TrimSpace(r.SHA256))
	switch {
	case !sha256RE.MatchString(r.SHA256):
		return Release{}, fmt.Errorf("bootstrap: the %s runner release GitHub named has no valid sha256: %w", arch, ErrRunnerRelease)
	case !versionRE.MatchString(r.Version):
		return Release{}, fmt.Errorf("bootstrap: the %s runner release GitHub named has no valid version (%q): %w", arch, r.Version, ErrRunnerRelease)
	case pinned && r.Version != b.cfg.RunnerVersion:
		return Release{}, fmt.Errorf("bootstrap: the host is %s, no checksum is configured for it (runner.sha256.%s), and GitHub offers runner %s for %s, not %s: "+
			"configure the checksum of actions-runner-linux-%s-%s.tar.gz from the release notes: %w",
			arch, arch, r.Version, arch, b.cfg.RunnerVersion, arch, b.cfg.RunnerVersion, ErrRunnerRelease)
	}
	if pinned || r.URL == "" {
		// The configured URL template (perhaps a mirror) serves the same
		// bytes; the checksum says so or stops the install.
		r.URL = resolveURL(b.cfg.RunnerURL, r.Version, arch)
	}
	if err := checkURL(r.URL); err != nil {
		return Release{}, fmt.Errorf("%w: %w", err, ErrRunnerRelease)
	}
	if pinned {
		b.mu.Lock()
		b.resolved[arch] = r
		b.mu.Unlock()
	}
	return r, nil
}

// checkURL refuses what a host should not download from.
func checkURL(raw string) error {
	u, err := url.Parse(raw)
	if err != nil {
		return fmt.Errorf("bootstrap: runner URL: %w", err)
	}
	if u.Scheme != "https" && u.Scheme != "http" || u.Host == "" {
		return fmt.Errorf("bootstrap: runner URL %q must be an http(s) URL", raw)
	}
	if u.User != nil {
		return errors.New("bootstrap: runner URL must not carry credentials")
	}
	return nil
}
