package githubtest

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestRunnerTarball(t *testing.T) {
	tgz, sum, err := RunnerTarball("2.330.0")
	if err != nil {
		t.Fatal(err)
	}
	again, sum2, _ := RunnerTarball("2.330.0")
	if sum != sum2 || !bytes.Equal(tgz, again) {
		t.Error("the same version must give the same bytes")
	}
	if h := sha256.Sum256(tgz); hex.EncodeToString(h[:]) != sum {
		t.Error("the returned checksum is not the tarball's")
	}
	if _, other, _ := RunnerTarball("2.331.0"); other == sum {
		t.Error("versions must differ")
	}

	files := untar(t, tgz, "")
	for _, name := range []string{"run.sh", "config.sh", "bin/installdependencies.sh", "bin/Runner.Listener"} {
		hdr, ok := files[name]
		if !ok {
			t.Errorf("tarball lacks %s", name)
			continue
		}
		if hdr.Mode&0o111 == 0 {
			t.Errorf("%s is not executable", name)
		}
	}
	for _, bad := range []string{"", "latest", "2", "2.330.0; rm -rf /", "v2.330.0"} {
		if _, _, err := RunnerTarball(bad); err == nil {
			t.Errorf("RunnerTarball(%q) should fail", bad)
		}
	}
}

func TestTarballDownload(t *testing.T) {
	s := newTestServer(t, Options{})
	tmpl := s.TarballURLTemplate()
	if want := s.URL() + "/_fake/runner-releases/v{version}/actions-runner-linux-{arch}-{version}.tar.gz"; tmpl != want {
		t.Fatalf("template %s, want %s", tmpl, want)
	}
	url := strings.NewReplacer("{version}", "2.330.0", "{arch}", "x64").Replace(tmpl)
	r := call(t, "GET", url, "", nil)
	if r.status != 200 {
		t.Fatalf("download: %d %s", r.status, r.body)
	}
	_, sum, _ := RunnerTarball("2.330.0")
	if h := sha256.Sum256(r.body); hex.EncodeToString(h[:]) != sum {
		t.Error("the served tarball differs from RunnerTarball's")
	}
	for _, bad := range []string{
		"/_fake/runner-releases/v2.330.0/actions-runner-linux-x64-2.331.0.tar.gz",
		"/_fake/runner-releases/v2.330.0/actions-runner-linux-s390x-2.330.0.tar.gz",
		"/_fake/runner-releases/v2.330.0/actions-runner-win-x64-2.330.0.zip",
		"/_fake/runner-releases/2.330.0/actions-runner-linux-x64-2.330.0.tar.gz",
		"/_fake/runner-releases/vlatest/actions-runner-linux-x64-latest.tar.gz",
	} {
		if r := call(t, "GET", s.URL()+bad, "", nil); r.status != 404 {
			t.Errorf("GET %s: %d, want 404", bad, r.status)
		}
	}
}

// untar reads a .tar.gz; with dir set it also extracts it there.
func untar(t *testing.T, tgz []byte, dir string) map[string]*tar.Header {
	t.Helper()
	zr, err := gzip.NewReader(bytes.NewReader(tgz))
	if err != nil {
		t.Fatal(err)
	}
	tr := tar.NewReader(zr)
	out := map[string]*tar.Header{}
	for {
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return out
		}
		if err != nil {
			t.Fatal(err)
		}
		out[strings.TrimSuffix(hdr.Name, "/")] = hdr
		if dir == "" {
			continue
		}
		path := filepath.Join(dir, filepath.FromSlash(hdr.Name))
		if hdr.Typeflag == tar.TypeDir {
			if err := os.MkdirAll(path, 0o755); err != nil {
				t.Fatal(err)
			}
			continue
		}
		data, err := io.ReadAll(tr)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, data, os.FileMode(hdr.Mode)&0o777); err != nil {
			t.Fatal(err)
		}
	}
}

// Each architecture has its own tarball, and its listener runs only on a
// machine of that architecture, as a native binary would: a host given the
// wrong architecture's runner fails at start.
func TestRunnerTarballPerArchitecture(t *testing.T) {
	sums := map[string]string{}
	for _, arch := range TarballArchs {
		_, sum, err := RunnerTarballFor("2.330.0", arch)
		if err != nil {
			t.Fatal(err)
		}
		for other, s := range sums {
			if s == sum {
				t.Errorf("%s and %s tarballs have the same checksum", arch, other)
			}
		}
		sums[arch] = sum
	}
	if _, x64, _ := RunnerTarball("2.330.0"); x64 != sums["x64"] {
		t.Error("RunnerTarball is not the x64 tarball")
	}
	if _, _, err := RunnerTarballFor("2.330.0", "s390x"); err == nil {
		t.Error("an unknown architecture must fail")
	}

	// The listener of each tarball, on a machine that uname -m names.
	for _, tc := range []struct{ arch, machine string }{
		{"x64", "x86_64"}, {"arm64", "aarch64"}, {"arm64", "x86_64"}, {"x64", "aarch64"}, {"arm", "armv7l"},
	} {
		tgz, _, err := RunnerTarballFor("2.330.0", tc.arch)
		if err != nil {
			t.Fatal(err)
		}
		dir := t.TempDir()
		untar(t, tgz, dir)
		shim := filepath.Join(dir, "shim")
		if err := os.Mkdir(shim, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(shim, "uname"), []byte("#!/bin/sh\necho "+tc.machine+"\n"), 0o755); err != nil {
			t.Fatal(err)
		}
		cmd := exec.Command(filepath.Join(dir, "bin", "Runner.Listener"), "run")
		cmd.Env = []string{"PATH=" + shim + ":/usr/bin:/bin"}
		out, err := cmd.CombinedOutput()
		var exit *exec.ExitError
		if !errors.As(err, &exit) {
			t.Fatalf("%s on %s: %v", tc.arch, tc.machine, err)
		}
		wrong := strings.Contains(string(out), "Exec format error")
		if want := tarballArchs[tc.arch]; strings.Contains(" "+want+" ", " "+tc.machine+" ") {
			// Right machine: it gets past the check and wants a config.
			if wrong || !strings.Contains(string(out), "not configured") {
				t.Errorf("%s runner on %s: %d %s", tc.arch, tc.machine, exit.ExitCode(), out)
			}
		} else if !wrong || exit.ExitCode() != 126 {
			t.Errorf("%s runner on %s ran: %d %s", tc.arch, tc.machine, exit.ExitCode(), out)
		}
	}
}

// TestRunnerTarballRealistic: the padded tarball is about the size asked
// for, reproducible, still a runner (its scripts unpack), and
// installdependencies.sh carries the asked-for sleep.
func TestRunnerTarballRealistic(t *testing.T) {
	o := TarballOptions{Size: 8 << 20, InstallDepsTime: 1500 * time.Millisecond}
	tgz, sum, err := RunnerTarballWith("2.330.0", "x64", o)
	if err != nil {
		t.Fatal(err)
	}
	if d := float64(len(tgz)-int(o.Size)) / float64(o.Size); d < -0.001 || d > 0.001 {
		t.Errorf("size %d, want %d within 0.1%%", len(tgz), o.Size)
	}
	_, sum2, _ := RunnerTarballWith("2.330.0", "x64", o)
	_, plain, _ := RunnerTarball("2.330.0")
	if sum != sum2 || sum == plain {
		t.Errorf("sums %s %s (plain %s): want reproducible and different from the plain tarball", sum, sum2, plain)
	}
	zr, err := gzip.NewReader(bytes.NewReader(tgz))
	if err != nil {
		t.Fatal(err)
	}
	tr := tar.NewReader(zr)
	var deps string
	var padding int64
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		switch h.Name {
		case "bin/installdependencies.sh":
			b, _ := io.ReadAll(tr)
			deps = string(b)
		case "bin/.padding":
			padding = h.Size
		}
	}
	if !strings.Contains(deps, "sleep 1.500\n") || padding < 7<<20 {
		t.Errorf("installdependencies.sh:\n%s\npadding %d bytes", deps, padding)
	}
}

// TestTarballThrottled: the server sends the tarball at the configured
// bandwidth, and its downloads endpoint names the padded tarball's sum.
func TestTarballThrottled(t *testing.T) {
	s := New(Options{Tokens: []string{"tok"}, Tarball: TarballOptions{Size: 1 << 20, Bandwidth: 4 << 20}})
	defer s.Close()
	sum, err := s.RunnerTarballSHA256("2.330.0", "x64")
	if err != nil {
		t.Fatal(err)
	}
	url := strings.NewReplacer("{version}", "2.330.0", "{arch}", "x64").Replace(s.TarballURLTemplate())
	start := time.Now()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	took := time.Since(start)
	got := sha256.Sum256(body)
	if hex.EncodeToString(got[:]) != sum {
		t.Errorf("served tarball's sum is not RunnerTarballSHA256")
	}
	// 1 MiB at 4 MiB/s: a quarter of a second at least. A lower bound
	// only: a slow machine may take longer, never less.
	if took < 200*time.Millisecond {
		t.Errorf("1 MiB at 4 MiB/s took %v: not throttled", took)
	}
}
