package fakehost

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
)

// ImageFSEnv names the directory a fake host's sessions and boot script
// see as the root of the image's file system (bootstrap/host.sh
// image_runner_dirs reads it). Real hosts leave it unset: their image's
// paths are the machine's own. The fakes' hosts share the test machine's
// file system, so each points it at a directory of its own.
const ImageFSEnv = "CRABBOX_IMAGE_FS"

// DefaultImageRunnerPath is where the fakes' images carry a runner unless
// told otherwise: where examples/images/cuda-runner/Dockerfile unpacks it.
const DefaultImageRunnerPath = "/opt/actions-runner"

// UnpackImageRunner unpacks a runner release (.tar.gz, as githubtest
// serves it) at path inside the image directory fs, as a Dockerfile's
// `tar -xzf` of the release would: the image's build did this, so it is
// there before the host boots. The files are the image's, read-only to
// the runner's user, as a root-built image's are to a user other than
// root.
func UnpackImageRunner(tgz []byte, fs, path string) error {
	if !strings.HasPrefix(path, "/") || strings.Contains(path, "..") {
		return fmt.Errorf("fakehost: image runner path %q: want an absolute path", path)
	}
	dest := filepath.Join(fs, filepath.FromSlash(path))
	if err := os.MkdirAll(dest, 0o755); err != nil {
		return err
	}
	zr, err := gzip.NewReader(bytes.NewReader(tgz))
	if err != nil {
		return fmt.Errorf("fakehost: image runner: %w", err)
	}
	tr := tar.NewReader(zr)
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("fakehost: image runner: %w", err)
		}
		name := filepath.Clean(filepath.FromSlash(h.Name))
		if name == "." || strings.HasPrefix(name, "..") || filepath.IsAbs(name) {
			continue
		}
		p := filepath.Join(dest, name)
		switch h.Typeflag {
		case tar.TypeDir:
			if err := os.MkdirAll(p, 0o755); err != nil {
				return err
			}
		case tar.TypeReg:
			if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
				return err
			}
			f, err := os.OpenFile(p, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, os.FileMode(h.Mode)&0o755)
			if err != nil {
				return err
			}
			_, err = io.Copy(f, tr)
			if cerr := f.Close(); err == nil {
				err = cerr
			}
			if err != nil {
				return err
			}
		}
	}
}
