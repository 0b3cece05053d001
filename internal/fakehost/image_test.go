package fakehost

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"os"
	"path/filepath"
	"testing"
)

func TestUnpackImageRunner(t *testing.T) {
	var buf bytes.Buffer
	gz := gzip.NewWriter(&buf)
	tw := tar.NewWriter(gz)
	for _, f := range []struct {
		name string
		mode int64
	}{{"run.sh", 0o755}, {"bin/Runner.Listener", 0o755}, {"../escape", 0o644}, {"config.txt", 0o600}} {
		if err := tw.WriteHeader(&tar.Header{Name: f.name, Mode: f.mode, Size: 2}); err != nil {
			t.Fatal(err)
		}
		if _, err := tw.Write([]byte("x\n")); err != nil {
			t.Fatal(err)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	if err := gz.Close(); err != nil {
		t.Fatal(err)
	}
	fs := filepath.Join(t.TempDir(), "image")
	if err := UnpackImageRunner(buf.Bytes(), fs, "/opt/actions-runner"); err != nil {
		t.Fatal(err)
	}
	st, err := os.Stat(filepath.Join(fs, "opt", "actions-runner", "bin", "Runner.Listener"))
	if err != nil || st.Mode().Perm()&0o100 == 0 {
		t.Errorf("listener: %v, %v", st, err)
	}
	if _, err := os.Stat(filepath.Join(fs, "opt", "escape")); err == nil {
		t.Error("an entry outside the runner's directory was written")
	}
	if err := UnpackImageRunner(buf.Bytes(), fs, "relative"); err == nil {
		t.Error("a relative path was taken")
	}
}
