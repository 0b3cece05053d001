package githubtest

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"fmt"
	"io/fs"
	"net/http"
	"regexp"
	"strings"
	"time"
)

// fakeRunner holds the scripts of the fake runner tarball, laid out as in
// actions/runner's release: run.sh and config.sh at the top, bin/ below.
//
//go:embed fakerunner
var fakeRunner embed.FS

// Architectures the fake serves Linux tarballs for, as in the real asset
// names (reference §5.1: linux-x64, linux-arm64, linux-arm), with the
// `uname -m` answers of the machines each one runs on. Each architecture's
// tarball has its own bytes and checksum, as the real ones do, and its
// listener refuses to run on another machine, as a binary built for another
// architecture would.
var tarballArchs = map[string]string{"x64": "x86_64 amd64", "arm64": "aarch64 arm64", "arm": "armv7l armv6l armv8l"}

// TarballArchs are the architectures RunnerTarballFor builds, sorted.
var TarballArchs = []string{"arm", "arm64", "x64"}

var versionRE = regexp.MustCompile(`^[0-9]+(\.[0-9]+){1,3}$`)

// RunnerTarball is RunnerTarballFor(version, "x64"): the tarball of the
// architecture most hosts have.
func RunnerTarball(version string) (tgz []byte, sha256hex string, err error) {
	return RunnerTarballFor(version, "x64")
}

// RunnerTarballFor builds the fake actions/runner release for version and
// arch ("x64", "arm64", "arm") as a .tar.gz, and returns it with its
// SHA-256 in hex. The same version and arch give the same bytes, so the
// checksum can be pinned in a config; another arch gives other bytes.
func RunnerTarballFor(version, arch string) (tgz []byte, sha256hex string, err error) {
	return RunnerTarballWith(version, arch, TarballOptions{})
}

// RunnerTarballWith is RunnerTarballFor with the realistic options of
// tarball_real.go: o.Size pads the .tar.gz to that many bytes,
// o.InstallDepsTime makes bin/installdependencies.sh take that long. The
// zero options give RunnerTarballFor's bytes; the same options give the
// same bytes.
func RunnerTarballWith(version, arch string, o TarballOptions) (tgz []byte, sha256hex string, err error) {
	if !versionRE.MatchString(version) {
		return nil, "", fmt.Errorf("githubtest: runner version %q is not like 2.330.0", version)
	}
	machines, ok := tarballArchs[arch]
	if !ok {
		return nil, "", fmt.Errorf("githubtest: no runner tarball for architecture %q (want x64, arm64 or arm)", arch)
	}
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf) // no name or time in the header: reproducible
	tw := tar.NewWriter(zw)
	mtime := time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC)

	err = fs.WalkDir(fakeRunner, "fakerunner", func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		name := strings.TrimPrefix(strings.TrimPrefix(path, "fakerunner"), "/")
		if name == "" {
			return nil
		}
		if d.IsDir() {
			return tw.WriteHeader(&tar.Header{Typeflag: tar.TypeDir, Name: name + "/", Mode: 0o755, ModTime: mtime, Format: tar.FormatPAX})
		}
		data, err := fakeRunner.ReadFile(path)
		if err != nil {
			return err
		}
		data = bytes.ReplaceAll(data, []byte("@VERSION@"), []byte(version))
		data = bytes.ReplaceAll(data, []byte("@ARCH@"), []byte(arch))
		data = bytes.ReplaceAll(data, []byte("@MACHINES@"), []byte(machines))
		data = bytes.ReplaceAll(data, []byte("@DEPS_SECONDS@"), []byte(depsSeconds(o.InstallDepsTime)))
		if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: name, Mode: 0o755, Size: int64(len(data)), ModTime: mtime, Format: tar.FormatPAX}); err != nil {
			return err
		}
		_, err = tw.Write(data)
		return err
	})
	if err == nil && o.Size > 0 {
		err = writePadding(tw, o.Size, buf.Len(), mtime)
	}
	if err == nil {
		err = tw.Close()
	}
	if err == nil {
		err = zw.Close()
	}
	if err != nil {
		return nil, "", fmt.Errorf("githubtest: build runner tarball: %w", err)
	}
	sum := sha256.Sum256(buf.Bytes())
	return buf.Bytes(), hex.EncodeToString(sum[:]), nil
}

// TarballURLTemplate is the download URL of the fake runner release with
// {version} and {arch} left in, shaped like the config's runner.url.
func (s *Server) TarballURLTemplate() string {
	return s.url + "/_fake/runner-releases/v{version}/actions-runner-linux-{arch}-{version}.tar.gz"
}

// handleTarball: GET /_fake/runner-releases/v{version}/actions-runner-linux-{arch}-{version}.tar.gz.
// Like a release asset it needs no credentials.
func (s *Server) handleTarball(w http.ResponseWriter, r *http.Request) {
	version, ok := strings.CutPrefix(r.PathValue("tag"), "v")
	file := r.PathValue("file")
	rest, ok2 := strings.CutPrefix(file, "actions-runner-linux-")
	arch, fileVersion, ok3 := strings.Cut(strings.TrimSuffix(rest, ".tar.gz"), "-")
	if !ok || !ok2 || !ok3 || !strings.HasSuffix(file, ".tar.gz") || fileVersion != version || tarballArchs[arch] == "" {
		writeError(w, http.StatusNotFound, "Not Found")
		return
	}
	tgz, _, err := tarballs.get(version, arch, s.opts.Tarball)
	if err != nil {
		writeError(w, http.StatusNotFound, "Not Found")
		return
	}
	s.mu.Lock()
	if s.tarballGets == nil {
		s.tarballGets = map[string]int{}
	}
	s.tarballGets[arch]++
	s.mu.Unlock()
	w.Header().Set("Content-Type", "application/octet-stream")
	w.Header().Set("Content-Disposition", "attachment; filename="+file)
	w.Header().Set("Content-Length", fmt.Sprint(len(tgz)))
	w.WriteHeader(http.StatusOK)
	writeThrottled(r.Context(), w, tgz, s.opts.Tarball.Bandwidth)
}

// TarballDownloads is how many runner tarballs the fake has served, of
// every architecture.
func (s *Server) TarballDownloads() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for _, c := range s.tarballGets {
		n += c
	}
	return n
}
