package githubtest

import (
	"archive/tar"
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"strconv"
	"sync"
	"time"
)

// TarballOptions make the fake runner release cost what the real one does,
// for the time-to-runner benchmark (cmd/crabbox-runner ttrbench_test.go).
// The zero value is the small tarball served at loopback speed.
type TarballOptions struct {
	// Size pads the .tar.gz with an incompressible file (bin/.padding) to
	// about this many bytes (within 0.1%), so that the download, the
	// checksum, the unpacking and the copy into the runner's directory
	// handle as many bytes as the real release. The real
	// actions-runner-linux-x64 tarball is of the order of 100–200 MB: it
	// carries its own .NET runtime and Node externals (reference
	// github-runners.md §5, "the tarball is large (order of 100–200 MB)";
	// docs/live-smoke.md: "the runner's ~200 MB"). RealTarballSize is the
	// figure the benchmark uses.
	Size int64
	// Bandwidth, when set, serves the tarball at this many bytes per second
	// per download: the host's own link is the bottleneck of a release
	// download, not GitHub's CDN, and each host has its own link.
	Bandwidth int64
	// InstallDepsTime makes bin/installdependencies.sh take this long
	// before it succeeds. The real script runs the distribution's package
	// manager (apt-get update, then libkrb5, zlib, liblttng-ust, libssl,
	// libicu on Debian/Ubuntu: reference github-runners.md §5, from
	// actions/runner src/Misc/layoutbin/installdependencies.sh); the
	// reference budgets "~1–2 min (download + installdependencies)".
	InstallDepsTime time.Duration
}

// RealTarballSize is the size the benchmark pads the fake runner release
// to: 200 MB, the upper end of the order the reference gives for
// actions-runner-linux-x64 (see TarballOptions.Size). No stored release
// record gave the exact byte count of the 2.330.0 asset; the upper end is
// the stricter choice for a benchmark of time to runner.
const RealTarballSize = 200 << 20

// depsSeconds is the fake installdependencies.sh's sleep argument.
func depsSeconds(d time.Duration) string {
	if d <= 0 {
		return "0"
	}
	return strconv.FormatFloat(d.Seconds(), 'f', 3, 64)
}

// writePadding adds bin/.padding to the tarball so that the .tar.gz ends up
// about target bytes long, soFar being what the gzip stream holds now. Its
// bytes are pseudo-random from a fixed seed: incompressible (gzip keeps
// them as stored blocks) and the same on every build, so the checksum can
// be pinned.
func writePadding(tw *tar.Writer, target int64, soFar int, mtime time.Time) error {
	// Tar headers, the end-of-archive blocks and gzip's stored-block
	// framing (5 bytes per 64 KiB) come on top of the padding's bytes.
	n := target - int64(soFar) - 8192
	n -= n / 13000
	if n <= 0 {
		return fmt.Errorf("githubtest: tarball size %d is smaller than the fake runner itself", target)
	}
	if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: "bin/.padding", Mode: 0o644, Size: n, ModTime: mtime, Format: tar.FormatPAX}); err != nil {
		return err
	}
	rng := rand.NewChaCha8([32]byte{'c', 'r', 'a', 'b', 'b', 'o', 'x'})
	_, err := io.CopyN(tw, rng, n)
	return err
}

// tarballs builds each (version, arch, options) tarball once for every
// server of the process: a padded one takes seconds to build, and a test
// needs its checksum for the config before its server serves it.
var tarballs tarballCache

type tarballCache struct {
	mu      sync.Mutex
	entries map[tarballKey]*tarballEntry
}

type tarballKey struct {
	version, arch string
	opts          TarballOptions
}

type tarballEntry struct {
	once sync.Once
	tgz  []byte
	sum  string
	err  error
}

func (c *tarballCache) get(version, arch string, o TarballOptions) ([]byte, string, error) {
	o.Bandwidth = 0 // how it is served does not change its bytes
	k := tarballKey{version, arch, o}
	c.mu.Lock()
	if c.entries == nil {
		c.entries = map[tarballKey]*tarballEntry{}
	}
	e, ok := c.entries[k]
	if !ok {
		e = &tarballEntry{}
		c.entries[k] = e
	}
	c.mu.Unlock()
	e.once.Do(func() { e.tgz, e.sum, e.err = RunnerTarballWith(version, arch, o) })
	return e.tgz, e.sum, e.err
}

// RunnerTarballSHA256 is the SHA-256 of the tarball this server serves for
// version and arch, with its Options.Tarball: what a config pins.
func (s *Server) RunnerTarballSHA256(version, arch string) (string, error) {
	return RunnerTarballSHA256(version, arch, s.opts.Tarball)
}

// RunnerTarballSHA256 is the SHA-256 of the tarball a server with
// Options.Tarball o serves for version and arch. The tarball is built once
// and kept for the servers that serve it.
func RunnerTarballSHA256(version, arch string, o TarballOptions) (string, error) {
	_, sum, err := tarballs.get(version, arch, o)
	return sum, err
}

// RunnerTarballShared is RunnerTarballWith from the same cache the servers
// serve from, so that a test that bakes the release into many fake hosts'
// images (vasttest.Behavior.ImageRunner) builds it once. The bytes are
// shared: never modify them.
func RunnerTarballShared(version, arch string, o TarballOptions) ([]byte, string, error) {
	return tarballs.get(version, arch, o)
}

// writeThrottled writes data at about bps bytes per second (all at once
// when bps is 0), in small chunks paced against the time since the first
// byte, so that a slow start does not make the rest burst.
func writeThrottled(ctx context.Context, w http.ResponseWriter, data []byte, bps int64) {
	if bps <= 0 {
		w.Write(data)
		return
	}
	const chunk = 32 << 10
	rc := http.NewResponseController(w)
	start := time.Now()
	for sent := 0; sent < len(data); {
		end := min(sent+chunk, len(data))
		if _, err := w.Write(data[sent:end]); err != nil {
			return
		}
		rc.Flush()
		sent = end
		due := start.Add(time.Duration(float64(sent) / float64(bps) * float64(time.Second)))
		if wait := time.Until(due); wait > 0 {
			select {
			case <-ctx.Done():
				return
			case <-time.After(wait):
			}
		}
	}
}
