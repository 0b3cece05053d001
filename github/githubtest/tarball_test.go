package githubtest

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
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
