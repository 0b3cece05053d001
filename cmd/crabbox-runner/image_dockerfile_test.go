package main

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// TestExampleImageDockerfile: examples/images/cuda-runner/Dockerfile (not
// built here: no Docker engine, no network) is a CUDA runtime image that
// installs the libraries host.sh checks for and unpacks the runner of the
// examples' configured version, checked against a SHA-256, in a place
// host.sh and prefetch.sh look.
func TestExampleImageDockerfile(t *testing.T) {
	df := parseDockerfile(t, filepath.Join("..", "..", "examples", "images", "cuda-runner", "Dockerfile"))
	if len(df.Stages) != 1 {
		t.Fatalf("%d stages, want 1", len(df.Stages))
	}
	st := df.Stages[0]
	image := st.Image
	if name, ok := strings.CutPrefix(image, "${"); ok {
		image = df.Args[strings.TrimSuffix(name, "}")]
	}
	if !regexp.MustCompile(`^nvidia/cuda:[0-9]+\.[0-9]+\.[0-9]+-runtime-ubuntu22\.04$`).MatchString(image) {
		t.Errorf("base image %q, want an nvidia/cuda runtime image on Ubuntu 22.04", image)
	}

	args := map[string]string{}
	for _, in := range st.find("ARG") {
		k, v, _ := strings.Cut(in.Args, "=")
		args[k] = v
	}
	cfg, err := os.ReadFile(filepath.Join("..", "..", "examples", "crabbox-runner.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`(?m)^  version: "([^"]+)"`).FindSubmatch(cfg)
	if m == nil || args["RUNNER_VERSION"] != string(m[1]) {
		t.Errorf("RUNNER_VERSION %q; the example config's runner.version is %q", args["RUNNER_VERSION"], m)
	}
	if v, ok := args["RUNNER_SHA256"]; !ok || v != "" {
		t.Errorf("RUNNER_SHA256 must be a build argument without a default (got %q, declared %t)", v, ok)
	}

	var run strings.Builder
	for _, in := range st.find("RUN") {
		run.WriteString(in.Args + "\n")
	}
	runs := run.String()
	const home = "/opt/actions-runner"
	for _, want := range []string{
		`echo "${RUNNER_SHA256}  /tmp/runner.tar.gz" | sha256sum -c -`,
		"tar -xzf /tmp/runner.tar.gz -C " + home,
		`./bin/Runner.Listener --version | grep -qxF "${RUNNER_VERSION}"`,
		"actions-runner-linux-${arch}-${RUNNER_VERSION}.tar.gz",
	} {
		if !strings.Contains(runs, want) {
			t.Errorf("the RUN steps lack %q", want)
		}
	}
	// The checksum is checked before anything is unpacked.
	if strings.Index(runs, "sha256sum -c") > strings.Index(runs, "tar -xzf") {
		t.Error("the tarball is unpacked before its checksum is checked")
	}
	// What host.sh's deps_present asks ldconfig for, by the Ubuntu package
	// that ships it.
	for lib, pkg := range map[string]string{"libicuuc.so": "libicu70", "libssl.so": "libssl3", "libgssapi_krb5.so": "libgssapi-krb5-2", "libz.so": "zlib1g"} {
		if !regexp.MustCompile(`\s` + regexp.QuoteMeta(pkg) + `(\s|$)`).MatchString(runs) {
			t.Errorf("the image does not install %s (%s)", pkg, lib)
		}
	}
	for _, script := range []string{"host.sh", "prefetch.sh"} {
		b, err := os.ReadFile(filepath.Join("..", "..", "bootstrap", script))
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(string(b), "opt/actions-runner") {
			t.Errorf("bootstrap/%s does not look in %s, where the image puts the runner", script, home)
		}
	}
	hostSh, _ := os.ReadFile(filepath.Join("..", "..", "bootstrap", "host.sh"))
	for _, lib := range []string{"libicuuc.so", "libssl.so", "libgssapi_krb5.so", "libz.so"} {
		if !strings.Contains(string(hostSh), lib) {
			t.Errorf("host.sh no longer checks %s: update this test and the image", lib)
		}
	}
}
