package bootstrap_test

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/crabbox/crabbox-runner/bootstrap"
	"github.com/crabbox/crabbox-runner/providers/local"
	"github.com/crabbox/crabbox-runner/provisioner"
)

// The prefetch benchmark's parameters (docs/benchmarks.md, "Runner
// prefetch and dependency skip"), each overridable by environment:
//   - benchTarballMB: the runner tarball's size. The "~200 MB"
//     for actions-runner-linux-x64-2.330.0.tar.gz (no recorded asset size
//     was found in the sources at hand; an assumption).
//   - benchMBps: what a cloud host gets from GitHub's release CDN. An
//     assumption: 25 MB/s (200 Mbit/s), a datacenter host's share of a
//     single HTTPS stream; Vast's consumer hosts vary from far less to far
//     more.
//   - benchDepsSeconds: installdependencies.sh on Ubuntu 22.04 without the
//     libraries: apt-get update (every configured index, ~10-15 s on a
//     fresh host) then installing libkrb5-3, zlib1g, liblttng-ust1, libssl
//     and libicu70 with their dependencies (~40 MB of .debs, ~10-15 s); 25 s
//     in all, an assumption.
const (
	benchTarballMB   = 200
	benchMBps        = 25
	benchDepsSeconds = 25
)

func envInt(name string, def int) int {
	if v, err := strconv.Atoi(os.Getenv(name)); err == nil && v > 0 {
		return v
	}
	return def
}

// realSizeTarball is a runner tarball of about mb MB: the fake run.sh, an
// installdependencies.sh that takes depsSeconds, and incompressible filler
// in files of 1 MB (the real one's .NET and node trees).
func realSizeTarball(t *testing.T, mb, depsSeconds int) ([]byte, string) {
	t.Helper()
	var buf bytes.Buffer
	gz, _ := gzip.NewWriterLevel(&buf, gzip.BestSpeed)
	tw := tar.NewWriter(gz)
	add := func(name string, body []byte) {
		if err := tw.WriteHeader(&tar.Header{Name: name, Mode: 0o755, Size: int64(len(body)), ModTime: time.Now()}); err != nil {
			t.Fatal(err)
		}
		if _, err := tw.Write(body); err != nil {
			t.Fatal(err)
		}
	}
	add("run.sh", []byte(fakeRunSh))
	add("config.sh", []byte("#!/bin/sh\nexit 0\n"))
	add("bin/installdependencies.sh", []byte(fmt.Sprintf("#!/bin/sh\nsleep %d\necho ran >> \"$CRABBOX_HOST_ROOT/installdependencies.runs\"\n", depsSeconds)))
	chunk := make([]byte, 1<<20)
	for i := 0; i < mb; i++ {
		_, _ = rand.Read(chunk)
		add(fmt.Sprintf("externals/filler/part-%04d.bin", i), chunk)
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	if err := gz.Close(); err != nil {
		t.Fatal(err)
	}
	h := sha256.Sum256(buf.Bytes())
	return buf.Bytes(), hex.EncodeToString(h[:])
}

// throttled serves body at about mbps MB/s.
func throttled(t *testing.T, body []byte, mbps int) *httptest.Server {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Length", strconv.Itoa(len(body)))
		const chunk = 256 << 10
		per := time.Duration(float64(time.Second) * chunk / float64(mbps<<20))
		start := time.Now()
		for off, i := 0, 0; off < len(body); off, i = off+chunk, i+1 {
			if _, err := w.Write(body[off:min(off+chunk, len(body))]); err != nil {
				return
			}
			time.Sleep(time.Until(start.Add(time.Duration(i+1) * per)))
		}
	}))
	t.Cleanup(srv.Close)
	return srv
}

// TestPrefetchBenchmark measures SSH → runner started (the bootstrap,
// from its SSH connection to the runner's start) with no prefetch, with a
// prefetch finished before SSH, and with one under way at SSH, each with
// and without the runner's libraries on the image. A benchmark: run it
// with CRABBOX_PREFETCH_BENCH=1 (its figures go to docs/benchmarks.md).
func TestPrefetchBenchmark(t *testing.T) {
	if os.Getenv("CRABBOX_PREFETCH_BENCH") == "" {
		t.Skip("a benchmark: set CRABBOX_PREFETCH_BENCH=1")
	}
	mb, mbps, deps := envInt("BENCH_TARBALL_MB", benchTarballMB), envInt("BENCH_MBPS", benchMBps), envInt("BENCH_DEPS_SECONDS", benchDepsSeconds)
	body, sum := realSizeTarball(t, mb, deps)
	srv := throttled(t, body, mbps)
	t.Logf("tarball %.1f MB served at %d MB/s; installdependencies.sh %d s", float64(len(body))/(1<<20), mbps, deps)
	url := srv.URL + "/v{version}/actions-runner-linux-{arch}-{version}.tar.gz"

	for _, sc := range []struct {
		name     string
		prefetch string // "", "before", "underway"
		libs     bool
	}{
		{"no prefetch, libraries missing", "", false},
		{"no prefetch, libraries present", "", true},
		{"prefetch done before SSH, libraries missing", "before", false},
		{"prefetch done before SSH, libraries present", "before", true},
		{"prefetch under way at SSH, libraries missing", "underway", false},
		{"prefetch under way at SSH, libraries present", "underway", true},
	} {
		libs := sc.libs
		e := newEnv(t, func(int, provisioner.CreateRequest) local.Behavior { return local.Behavior{RunnerDeps: libs} })
		b, err := bootstrap.New(bootstrap.Config{RunnerURL: url, RunnerVersion: runnerVersion, RunnerSHA256: sum,
			ConnectTimeout: 10 * time.Second, CommandTimeout: 10 * time.Minute})
		if err != nil {
			t.Fatal(err)
		}
		creds := newCreds(t, b)
		var inst *provisioner.Instance
		bootStart := time.Now()
		if sc.prefetch == "" {
			inst = e.host(t, creds)
		} else {
			inst = e.bootHost(t, b, creds)
		}
		if sc.prefetch == "before" {
			deadline := time.Now().Add(10 * time.Minute)
			for !bytes.Contains([]byte(prefetchLog(e, inst)), []byte("crabbox prefetch: dependencies")) {
				if time.Now().After(deadline) {
					t.Fatalf("prefetch not done: %q", prefetchLog(e, inst))
				}
				time.Sleep(50 * time.Millisecond)
			}
		}
		ssh := time.Now()
		res, err := b.Bootstrap(context.Background(), request(inst, creds, newJIT(t, "crabbox-bench"), false))
		if err != nil {
			t.Fatalf("%s: %v", sc.name, err)
		}
		took := time.Since(ssh)
		var phases string
		for _, ph := range res.Phases {
			phases += fmt.Sprintf(" %s=%.2fs", ph.Name, ph.Duration.Seconds())
		}
		t.Logf("| %s | %.1f s | %s | %s | boot→SSH %.1f s |%s", sc.name, took.Seconds(), res.RunnerGot, res.Deps, ssh.Sub(bootStart).Seconds(), phases)
		if sc.prefetch == "before" {
			// The cheaper copy: hard links against cp -a of the same tree.
			cache, _ := filepath.Glob(filepath.Join(e.p.HostRoot(inst.ID), "crabbox", "cache", "runner-*"))
			for _, args := range [][]string{{"-al"}, {"-a"}} {
				dst := filepath.Join(t.TempDir(), "copy")
				start := time.Now()
				if out, err := exec.Command("cp", append(args, cache[0], dst)...).CombinedOutput(); err != nil {
					t.Fatalf("cp %v: %v %s", args, err, out)
				}
				t.Logf("cp %s of the unpacked runner (%d MB): %.2f s", args[0], mb, time.Since(start).Seconds())
			}
		}
		if err := e.p.Close(); err != nil {
			t.Error(err)
		}
	}
}
