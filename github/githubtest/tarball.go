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

// Architectures the fake serves tarballs for, as in the real asset names.
var tarballArchs = map[string]bool{"x64": true, "arm64": true, "arm": true}

var versionRE = regexp.MustCompile(`^[0-9]+(\.[0-9]+){1,3}$`)

// RunnerTarball builds the fake actions/runner release for version as a
// .tar.gz, and returns it with its SHA-256 in hex. The same version gives
// the same bytes, so the checksum can be pinned in a config.
func RunnerTarball(version string) (tgz []byte, sha256hex string, err error) {
	if !versionRE.MatchString(version) {
		return nil, "", fmt.Errorf("githubtest: runner version %q is not like 2.330.0", version)
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
		if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: name, Mode: 0o755, Size: int64(len(data)), ModTime: mtime, Format: tar.FormatPAX}); err != nil {
			return err
		}
		_, err = tw.Write(data)
		return err
	})
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
	if !ok || !ok2 || !ok3 || !strings.HasSuffix(file, ".tar.gz") || fileVersion != version || !tarballArchs[arch] {
		writeError(w, http.StatusNotFound, "Not Found")
		return
	}
	tgz, _, err := RunnerTarball(version)
	if err != nil {
		writeError(w, http.StatusNotFound, "Not Found")
		return
	}
	w.Header().Set("Content-Type", "application/octet-stream")
	w.Header().Set("Content-Disposition", "attachment; filename="+file)
	w.Header().Set("Content-Length", fmt.Sprint(len(tgz)))
	w.WriteHeader(http.StatusOK)
	w.Write(tgz)
}
