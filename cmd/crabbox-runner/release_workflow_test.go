package main

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"

	"github.com/crabbox/crabbox-runner/action/actiontest"
)

// TestReleaseWorkflow ties .github/workflows/release.yml to what uses its
// output: the asset names action/get-binary.sh downloads, and the image
// the docs and examples name. actionlint (action/actionyml_test.go) checks
// the workflow's syntax; this checks its meaning.
func TestReleaseWorkflow(t *testing.T) {
	root := actiontest.RepoRoot()
	data, err := os.ReadFile(filepath.Join(root, ".github", "workflows", "release.yml"))
	if err != nil {
		t.Fatal(err)
	}
	type step struct {
		Uses string            `yaml:"uses"`
		Run  string            `yaml:"run"`
		With map[string]string `yaml:"with"`
	}
	var wf struct {
		On struct {
			Push struct {
				Tags []string `yaml:"tags"`
			} `yaml:"push"`
		} `yaml:"on"`
		Jobs map[string]struct {
			Permissions map[string]string `yaml:"permissions"`
			Steps       []step            `yaml:"steps"`
		} `yaml:"jobs"`
	}
	if err := yaml.Unmarshal(data, &wf); err != nil {
		t.Fatal(err)
	}
	if !slices.Contains(wf.On.Push.Tags, "v[0-9]+.[0-9]+.[0-9]+") {
		t.Errorf("release runs on tags %v", wf.On.Push.Tags)
	}

	// The binaries and checksums, named as get-binary.sh asks for them.
	getBinary, err := os.ReadFile(filepath.Join(root, "action", "get-binary.sh"))
	if err != nil {
		t.Fatal(err)
	}
	for _, must := range []string{"asset=crabbox-runner-$plat", "arch=amd64", "arch=arm64", `echo "$os-$arch"`, `"$base/checksums.txt"`} {
		if !strings.Contains(string(getBinary), must) {
			t.Fatalf("get-binary.sh no longer has %q: update this test and release.yml together", must)
		}
	}
	rel, ok := wf.Jobs["release"]
	if !ok {
		t.Fatal("no release job")
	}
	var build string
	for _, s := range rel.Steps {
		build += s.Run + "\n"
	}
	for _, must := range []string{"for arch in amd64 arm64", "GOOS=linux", `-o "dist/crabbox-runner-linux-$arch"`, "sha256sum crabbox-runner-linux-* > checksums.txt", "dist/*"} {
		if !strings.Contains(build, must) {
			t.Errorf("the release job lacks %q", must)
		}
	}
	if rel.Permissions["contents"] != "write" {
		t.Errorf("the release job needs contents: write, has %v", rel.Permissions)
	}

	// The image: both platforms, pushed to ghcr.io with the version.
	img, ok := wf.Jobs["image"]
	if !ok {
		t.Fatal("no image job")
	}
	if img.Permissions["packages"] != "write" {
		t.Errorf("the image job needs packages: write, has %v", img.Permissions)
	}
	uses := map[string]step{}
	for _, s := range img.Steps {
		name, _, _ := strings.Cut(s.Uses, "@")
		uses[name] = s
	}
	for _, a := range []string{"docker/setup-buildx-action", "docker/login-action", "docker/build-push-action"} {
		if _, ok := uses[a]; !ok {
			t.Errorf("the image job does not use %s", a)
		}
	}
	if uses["docker/login-action"].With["registry"] != "ghcr.io" {
		t.Errorf("login to %q, want ghcr.io", uses["docker/login-action"].With["registry"])
	}
	bp := uses["docker/build-push-action"].With
	platforms := strings.Split(bp["platforms"], ",")
	if !slices.Contains(platforms, "linux/amd64") || !slices.Contains(platforms, "linux/arm64") || bp["push"] != "true" ||
		!strings.Contains(bp["build-args"], "VERSION=${{ github.ref_name }}") {
		t.Errorf("build-push-action with %v", bp)
	}

	// The image name the docs and examples use is the one pushed:
	// ghcr.io/<owner>/<repo> of this module's repository, lower case.
	goMod, err := os.ReadFile(filepath.Join(root, "go.mod"))
	if err != nil {
		t.Fatal(err)
	}
	module, _, _ := strings.Cut(strings.TrimPrefix(string(goMod), "module "), "\n")
	image := "ghcr.io/" + strings.ToLower(strings.TrimPrefix(module, "github.com/"))
	if !strings.Contains(string(data), "ghcr.io/${REPOSITORY,,}") {
		t.Error("the image job no longer names the image ghcr.io/<repository in lower case>")
	}
	for _, f := range []string{"docs/getting-started.md", "docs/operations.md", "examples/kubernetes/deployment.yaml", "README.md"} {
		b, err := os.ReadFile(filepath.Join(root, f))
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(string(b), image) {
			t.Errorf("%s does not name the image %s", f, image)
		}
		for _, other := range strings.Fields(strings.NewReplacer("`", " ", "\"", " ", "(", " ", ")", " ").Replace(string(b))) {
			if strings.HasPrefix(other, "ghcr.io/") && !strings.HasPrefix(other, image) {
				t.Errorf("%s names the image %s, not %s", f, other, image)
			}
		}
	}
}
