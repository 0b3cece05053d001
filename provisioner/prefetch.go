package provisioner

import (
	"strings"
	"time"
)

// How a host got its runner, as the bootstrapper tells it
// (BootstrapResult.RunnerGot): the tarball a boot-time prefetch fetched,
// verified and unpacked while the host booted was ready when the install
// began (RunnerPrefetched), or was under way and waited for
// (RunnerWaited), or the install downloaded it itself (RunnerDownloaded),
// or the host's image carried the runner of the wanted version, so that
// nothing was downloaded at all (RunnerImage).
const (
	RunnerPrefetched = "prefetched"
	RunnerWaited     = "waited"
	RunnerDownloaded = "downloaded"
	RunnerImage      = "image"
)

// What was done about the runner's dependencies (BootstrapResult.Deps):
// the image had the libraries (DepsSkipped), the install phase ran the
// runner's installdependencies.sh (DepsInstalled), or the boot-time
// prefetch did (DepsPrefetched).
const (
	DepsSkipped    = "skipped"
	DepsInstalled  = "installed"
	DepsPrefetched = "prefetched"
)

// PhaseTime is how long one bootstrap step took, seen from the
// bootstrapper: a phase over SSH (upload, arch, gpu-check, install,
// start) or a step of the install phase on the host (install.lock,
// install.download, install.copy, install.deps).
type PhaseTime struct {
	Name     string
	Duration time.Duration
}

// PrefetchObserver is told how each bootstrapped host got its runner (the
// metrics package implements it).
type PrefetchObserver interface {
	RunnerGot(provider, result string)
}

// phaseSummary is res's phases for a log line: "upload=12ms arch=8ms …".
func phaseSummary(res *BootstrapResult) string {
	parts := make([]string, 0, len(res.Phases))
	for _, ph := range res.Phases {
		parts = append(parts, ph.Name+"="+ph.Duration.Round(time.Millisecond).String())
	}
	return strings.Join(parts, " ")
}

// observeBootstrap logs nothing itself: it hands the result's prefetch
// outcome to an observer that wants it.
func (p *Provisioner) observeBootstrap(provider string, res *BootstrapResult) {
	if res == nil || res.RunnerGot == "" {
		return
	}
	if o, ok := p.cfg.Observer.(PrefetchObserver); ok {
		o.RunnerGot(provider, res.RunnerGot)
	}
}
