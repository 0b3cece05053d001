// Package fakehost holds what the fake providers (providers/local,
// vasttest, lambdatest) put on their hosts besides the GPU (fakegpu): an
// ldconfig that says whether the image has the runner's libraries, so that
// bootstrap/host.sh's dependency check is deterministic, an image's
// unpacked runner (image.go), and the running of a boot script (Vast's onstart, cloud-init's runcmd) in the
// background, as the real services run them while SSH is already up.
package fakehost

import (
	"context"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Ldconfig is a fake ldconfig(8): `ldconfig -p` prints the linker cache in
// glibc's format (a count line, then "\tlibX.so.N (libc6,x86-64) =>
// /path" per library: ldconfig -p on any Ubuntu host), the runner's
// libraries (libicuuc, libssl, libgssapi_krb5, libz, as bin/installdependencies.sh
// installs them on Ubuntu 22.04: libicu70, libssl3, libkrb5-3, zlib1g) only
// when runnerDeps; any other use succeeds and does nothing (rebuilding the
// cache, which the fake has no need of).
func Ldconfig(runnerDeps bool) string {
	libs := []string{"libc.so.6 => /lib/x86_64-linux-gnu/libc.so.6", "libm.so.6 => /lib/x86_64-linux-gnu/libm.so.6",
		"libz.so.1 => /lib/x86_64-linux-gnu/libz.so.1"}
	if runnerDeps {
		libs = append(libs, "libicuuc.so.70 => /lib/x86_64-linux-gnu/libicuuc.so.70",
			"libssl.so.3 => /lib/x86_64-linux-gnu/libssl.so.3",
			"libgssapi_krb5.so.2 => /lib/x86_64-linux-gnu/libgssapi_krb5.so.2")
	}
	var b strings.Builder
	b.WriteString("#!/bin/sh\n# fake ldconfig (internal/fakehost)\n[ \"${1:-}\" = -p ] || exit 0\ncat <<'EOF'\n")
	b.WriteString(strconv.Itoa(len(libs)) + " libs found in cache `/etc/ld.so.cache'\n")
	for _, l := range libs {
		name, path, _ := strings.Cut(l, " => ")
		b.WriteString("\t" + name + " (libc6,x86-64) => " + path + "\n")
	}
	b.WriteString("EOF\n")
	return b.String()
}

// Boot is a boot script running on a fake host.
type Boot struct {
	cmd  *exec.Cmd
	out  *syncBuffer
	done chan struct{}
	err  error
}

// StartBoot runs script with bash, as root would on the host (the fakes
// run as the test's user), in dir with env ("K=V"), in a process group of
// its own, and returns at once: the services run these scripts while SSH
// is already reachable. What the script leaves in the background stays in
// its group (or carries env's sshd marker), so Stop ends it.
func StartBoot(script, dir string, env []string) (*Boot, error) {
	b := &Boot{out: &syncBuffer{}, done: make(chan struct{})}
	b.cmd = exec.Command("bash", "-c", script)
	b.cmd.Dir = dir
	b.cmd.Env = env
	b.cmd.Stdout, b.cmd.Stderr = b.out, b.out
	b.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	b.cmd.WaitDelay = 2 * time.Second
	if err := b.cmd.Start(); err != nil {
		return nil, err
	}
	go func() {
		b.err = b.cmd.Wait()
		close(b.done)
	}()
	return b, nil
}

// Wait waits for the script (not what it left in the background) to end
// and returns its output (the last 8 KiB) and error.
func (b *Boot) Wait(ctx context.Context) (string, error) {
	select {
	case <-b.done:
		return b.out.String(), b.err
	case <-ctx.Done():
		return b.out.String(), ctx.Err()
	}
}

// Done is closed when the script has ended.
func (b *Boot) Done() <-chan struct{} { return b.done }

// Output is what the script printed so far (the last 8 KiB).
func (b *Boot) Output() string { return b.out.String() }

// Stop kills the script's process group.
func (b *Boot) Stop() {
	_ = syscall.Kill(-b.cmd.Process.Pid, syscall.SIGKILL)
	<-b.done
}

type syncBuffer struct {
	mu sync.Mutex
	b  []byte
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.b = append(s.b, p...)
	if len(s.b) > 8<<10 {
		s.b = s.b[len(s.b)-8<<10:]
	}
	return len(p), nil
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return string(s.b)
}
