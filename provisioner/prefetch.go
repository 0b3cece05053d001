package provisioner

import (
	"fmt"
	"log/slog"
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

// Who downloaded the runner tarball (RunnerFetch.By).
const (
	FetchByPrefetch = "prefetch"
	FetchByInstall  = "install"
)

// RunnerFetch is one download of the runner tarball, as the host timed
// it. Began is on this process's clock: the host tells how long ago the
// download began, not when, so the two clocks need not agree.
//
// These are the facts the time-to-runner model of docs/benchmarks.md
// assumes and no document gives (the tarball's size, the bandwidth a
// host gets, how far ahead of SSH a boot-time prefetch starts): every
// bootstrap measures them on the real host.
type RunnerFetch struct {
	By    string // FetchByPrefetch or FetchByInstall
	Began time.Time
	// Download is the transfer alone; Total adds the checksum and the
	// unpacking.
	Download, Total time.Duration
	Bytes           int64
}

// BytesPerSecond is the download's throughput, 0 when unknown.
func (f *RunnerFetch) BytesPerSecond() float64 {
	if f == nil || f.Download <= 0 {
		return 0
	}
	return float64(f.Bytes) / f.Download.Seconds()
}

// AfterSSH is how much of the fetch (download, checksum, unpack) was
// left when the host's SSH became reachable at sshUp: the part that may
// delay the runner, as the rest ran while the host booted. The whole of
// it when sshUp is unknown.
func (f *RunnerFetch) AfterSSH(sshUp time.Time) time.Duration {
	if f == nil {
		return 0
	}
	if sshUp.IsZero() {
		return f.Total
	}
	return min(max(f.Began.Add(f.Total).Sub(sshUp), 0), f.Total)
}

// PrefetchObserver is told how each bootstrapped host got its runner (the
// metrics package implements it), and of the tarball's download when
// there was one: its size, how long it took, and how much of it was left
// once SSH was up.
type PrefetchObserver interface {
	RunnerGot(provider, result string)
	RunnerFetched(provider string, f RunnerFetch, afterSSH time.Duration)
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
func (p *Provisioner) observeBootstrap(provider string, res *BootstrapResult, sshUp time.Time) {
	o, ok := p.cfg.Observer.(PrefetchObserver)
	if !ok || res == nil {
		return
	}
	if res.RunnerGot != "" {
		o.RunnerGot(provider, res.RunnerGot)
	}
	if res.Fetch != nil {
		o.RunnerFetched(provider, *res.Fetch, res.Fetch.AfterSSH(sshUp))
	}
}

// fetchAttrs is res's download for a structured log line: who fetched,
// the tarball's size, the transfer and the whole fetch (ms), how long
// before SSH came up it began (negative: after) and how much of it was
// left then. An empty group without a download.
func fetchAttrs(res *BootstrapResult, sshUp time.Time) slog.Attr {
	f := res.Fetch
	if f == nil {
		return slog.Attr{}
	}
	return slog.Group("fetch", "by", f.By, "bytes", f.Bytes, "download_ms", f.Download.Milliseconds(),
		"total_ms", f.Total.Milliseconds(), "began_before_ssh_ms", sshUp.Sub(f.Began).Milliseconds(),
		"after_ssh_ms", f.AfterSSH(sshUp).Milliseconds())
}

// fetchSummary is res's download for a line a person reads, "" without
// one.
func fetchSummary(res *BootstrapResult, sshUp time.Time) string {
	f := res.Fetch
	if f == nil {
		return ""
	}
	began := "SSH's time unknown"
	if !sshUp.IsZero() {
		if d := sshUp.Sub(f.Began); d >= 0 {
			began = "began " + d.Round(time.Millisecond).String() + " before SSH was up"
		} else {
			began = "began " + (-d).Round(time.Millisecond).String() + " after SSH was up"
		}
	}
	return fmt.Sprintf("%s: %d bytes in %s (%.1f MB/s), %s with checksum and unpack; %s, %s of it after",
		f.By, f.Bytes, f.Download.Round(time.Millisecond), f.BytesPerSecond()/1e6,
		f.Total.Round(time.Millisecond), began, f.AfterSSH(sshUp).Round(time.Millisecond))
}
