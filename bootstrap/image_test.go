package bootstrap_test

import (
	"archive/tar"
	"bytes"
	"cmp"
	"compress/gzip"
	"context"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/crabbox/crabbox-runner/internal/fakehost"
	"github.com/crabbox/crabbox-runner/providers/local"
	"github.com/crabbox/crabbox-runner/provisioner"
)

// imageListener stands in for bin/Runner.Listener: --version prints the
// version alone, after writing its _diag log next to bin/, as the real
// one does (see github/githubtest/fakerunner for the sources).
const imageListener = `#!/bin/bash
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
mkdir -p "$ROOT/_diag" && echo version >>"$ROOT/_diag/Runner_1.log"
[ "${1:-}" = --version ] && { echo "@VERSION@"; exit 0; }
exit 1
`

// imageTarball is a runner release of version as an image would carry it
// unpacked: run.sh (fakeRunSh), the listener, installdependencies.sh;
// without the listener when incomplete.
func imageTarball(t *testing.T, version string, incomplete bool) []byte {
	t.Helper()
	var buf bytes.Buffer
	gz := gzip.NewWriter(&buf)
	tw := tar.NewWriter(gz)
	files := [][2]string{{"run.sh", fakeRunSh}, {"bin/installdependencies.sh", fakeInstallDeps},
		{"bin/Runner.Listener", strings.ReplaceAll(imageListener, "@VERSION@", version)}}
	if incomplete {
		files = files[:2]
	}
	for _, f := range files {
		if err := tw.WriteHeader(&tar.Header{Name: f[0], Mode: 0o755, Size: int64(len(f[1]))}); err != nil {
			t.Fatal(err)
		}
		if _, err := tw.Write([]byte(f[1])); err != nil {
			t.Fatal(err)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	if err := gz.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// imageEnv is an env whose hosts' images carry tgz at path (default
// /opt/actions-runner), with the runner's libraries.
func imageEnv(t *testing.T, tgz []byte, path string) *env {
	return newEnv(t, func(int, provisioner.CreateRequest) local.Behavior {
		return local.Behavior{RunnerDeps: true, ImageRunner: tgz, ImageRunnerPath: path}
	})
}

// listTree is every path under dir, for seeing that nothing was written
// into an image's runner.
func listTree(t *testing.T, dir string) []string {
	t.Helper()
	var names []string
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		names = append(names, strings.TrimPrefix(p, dir))
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	slices.Sort(names)
	return names
}

// TestImageRunnerIsNotDownloaded: a host whose image carries the runner
// of the configured version neither prefetches nor downloads it; the
// runner starts from a copy, and the image's tree is left as it was.
func TestImageRunnerIsNotDownloaded(t *testing.T) {
	for _, tc := range []struct {
		name, path string
		prefetch   bool
	}{
		{"prefetch", "", true},
		{"install", "", false},
		{"github-image-home", "/home/runner", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := imageEnv(t, imageTarball(t, runnerVersion, false), tc.path)
			body, sum := tarball(t, fakeRunSh)
			srv := serveTarball(t, body)
			b := e.bootstrapper(t, srv.urlTemplate(), sum)
			creds := newCreds(t, b)
			var inst *provisioner.Instance
			if tc.prefetch {
				inst = e.bootHost(t, b, creds)
				if log := waitPrefetch(t, e, inst); !strings.Contains(log, "in the image at") {
					t.Fatalf("prefetch log: %q", log)
				}
			} else {
				inst = e.host(t, creds)
			}
			imageDir := filepath.Join(e.p.HostImage(inst.ID), cmp.Or(tc.path, fakehost.DefaultImageRunnerPath))
			before := listTree(t, imageDir)
			jit := newJIT(t, "crabbox-i1")
			res, err := b.Bootstrap(context.Background(), request(inst, creds, jit, false))
			if err != nil {
				t.Fatal(err)
			}
			if n := srv.requests.Load(); n != 0 {
				t.Errorf("tarball downloaded %d times, want never", n)
			}
			if res.RunnerGot != provisioner.RunnerImage || res.Deps != provisioner.DepsSkipped {
				t.Errorf("runner %q, deps %q; want image, skipped", res.RunnerGot, res.Deps)
			}
			if res.Fetch != nil {
				t.Errorf("a runner from the image told of a download: %+v", *res.Fetch)
			}
			dir := e.runnerDir(inst, "crabbox-i1")
			waitFile(t, filepath.Join(dir, "jit.sha256"))
			for _, f := range []string{"bin/Runner.Listener", "run.sh"} {
				if _, err := os.Stat(filepath.Join(dir, f)); err != nil {
					t.Errorf("runner directory: %v", err)
				}
			}
			for _, f := range []string{".image", ".complete", "_diag"} {
				if _, err := os.Stat(filepath.Join(dir, f)); err == nil {
					t.Errorf("runner directory has %s", f)
				}
			}
			if after := listTree(t, imageDir); !slices.Equal(before, after) || slices.Contains(after, "/_diag") {
				t.Errorf("the image's runner changed:\nbefore %q\nafter  %q", before, after)
			}
		})
	}
}

// TestImageRunnerOfAnotherVersionIsNotUsed: an image runner of another
// version, or one without its listener, is passed over: the release is
// downloaded and verified as on any host.
func TestImageRunnerOfAnotherVersionIsNotUsed(t *testing.T) {
	for _, tc := range []struct {
		name     string
		tgz      func(*testing.T) []byte
		prefetch bool
		wantGot  []string
	}{
		{"old-version-prefetch", func(t *testing.T) []byte { return imageTarball(t, "2.329.0", false) }, true,
			[]string{provisioner.RunnerPrefetched, provisioner.RunnerWaited}},
		{"old-version-install", func(t *testing.T) []byte { return imageTarball(t, "2.329.0", false) }, false,
			[]string{provisioner.RunnerDownloaded}},
		{"incomplete-install", func(t *testing.T) []byte { return imageTarball(t, runnerVersion, true) }, false,
			[]string{provisioner.RunnerDownloaded}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := imageEnv(t, tc.tgz(t), "")
			body, sum := tarball(t, fakeRunSh)
			srv := serveTarball(t, body)
			b := e.bootstrapper(t, srv.urlTemplate(), sum)
			creds := newCreds(t, b)
			var inst *provisioner.Instance
			if tc.prefetch {
				inst = e.bootHost(t, b, creds)
				if log := waitPrefetch(t, e, inst); strings.Contains(log, "in the image") || !strings.Contains(log, "ready") {
					t.Fatalf("prefetch log: %q", log)
				}
			} else {
				inst = e.host(t, creds)
			}
			res, err := b.Bootstrap(context.Background(), request(inst, creds, newJIT(t, "crabbox-i2"), false))
			if err != nil {
				t.Fatal(err)
			}
			if n := srv.requests.Load(); n != 1 {
				t.Errorf("tarball downloaded %d times, want once", n)
			}
			if !slices.Contains(tc.wantGot, res.RunnerGot) {
				t.Errorf("runner %q, want one of %q", res.RunnerGot, tc.wantGot)
			}
			if _, err := os.Stat(filepath.Join(e.runnerDir(inst, "crabbox-i2"), "bin", "Runner.Listener")); err == nil {
				t.Error("the runner directory holds the image's listener, not the downloaded release")
			}
		})
	}
}
