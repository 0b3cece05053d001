package bootstrap_test

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/crabbox/crabbox-runner/bootstrap"
	"github.com/crabbox/crabbox-runner/internal/fakehost"
)

// TestBootCmdPrefetchesIntoTheLoginHomeOnceItExists runs the user-data's
// bootcmd as cloud-init's network stage would (as root, before
// users_groups has created the default user): bootcmd itself ends at once,
// since cloud-init waits for it, and the prefetch it leaves in the
// background fills uid 1000's home once that appears, not root's.
func TestBootCmdPrefetchesIntoTheLoginHomeOnceItExists(t *testing.T) {
	body, sum := tarball(t, fakeRunSh)
	srv := serveGated(t, body, true)
	b, err := bootstrap.New(bootstrap.Config{RunnerURL: srv.urlTemplate(), RunnerVersion: runnerVersion,
		RunnerChecksums: map[string]string{"x64": sum, "arm64": sum}})
	if err != nil {
		t.Fatal(err)
	}
	ud, err := b.UserData(newCreds(t, b))
	if err != nil {
		t.Fatal(err)
	}
	var doc struct {
		BootCmd [][]string `yaml:"bootcmd"`
	}
	if err := yaml.Unmarshal([]byte(ud), &doc); err != nil || len(doc.BootCmd) != 1 {
		t.Fatalf("bootcmd: %v %q", err, doc.BootCmd)
	}
	dir := t.TempDir()
	home, rootHome, bin := filepath.Join(dir, "home", "ubuntu"), filepath.Join(dir, "root"), filepath.Join(dir, "bin")
	for _, d := range []string{rootHome, bin, filepath.Dir(home)} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			t.Fatal(err)
		}
	}
	// uid 1000 is in the passwd database (users_groups adds it) only once
	// its home exists; the image has the runner's libraries.
	// Each lookup while it is missing leaves a mark.
	asked := filepath.Join(dir, "asked")
	getent := "#!/bin/sh\n[ \"$1 $2\" = 'passwd 1000' ] || exit 2\n[ -d " + home + " ] || { echo >>" + asked + "; exit 2; }\n" +
		"echo 'ubuntu:x:1000:1000:Ubuntu:" + home + ":/bin/bash'\n"
	if err := os.WriteFile(filepath.Join(bin, "getent"), []byte(getent), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(bin, "ldconfig"), []byte(fakehost.Ldconfig(true)), 0o755); err != nil {
		t.Fatal(err)
	}
	item := doc.BootCmd[0]
	cmd := exec.Command(item[0], item[1:]...)
	cmd.Env = []string{"HOME=" + rootHome, "PATH=" + bin + ":" + os.Getenv("PATH")}
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("bootcmd: %v\n%s", err, out)
	}
	if _, err := os.Stat(home); err == nil {
		t.Fatal("bootcmd did not return before the home existed")
	}
	// The job is waiting: it looked the user up more than once.
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		if b, _ := os.ReadFile(asked); len(b) >= 3 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("bootcmd's job did not wait for uid 1000's home")
		}
	}
	if err := os.Mkdir(home, 0o755); err != nil {
		t.Fatal(err)
	}
	logFile := filepath.Join(home, "crabbox", ".crabbox", "prefetch.log")
	deadline := time.Now().Add(60 * time.Second)
	for {
		log, _ := os.ReadFile(logFile)
		if strings.Contains(string(log), "crabbox prefetch: dependencies") {
			if !strings.Contains(string(log), "ready") {
				t.Fatalf("prefetch log: %q", log)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no prefetch in the login home: %q", log)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if _, err := os.Stat(filepath.Join(rootHome, "crabbox")); err == nil {
		t.Error("the prefetch went to root's home too")
	}
	if fi, err := os.Stat(filepath.Join(home, "crabbox")); err != nil || fi.Mode().Perm() != 0o700 {
		t.Errorf("crabbox directory: %v %v", fi, err)
	}
	if n := srv.requests.Load(); n != 1 {
		t.Errorf("%d downloads, want 1", n)
	}
}
