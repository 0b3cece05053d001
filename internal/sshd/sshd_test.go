package sshd

import (
	"bufio"
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/pem"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"
)

func requireSSHD(t *testing.T) {
	t.Helper()
	if _, err := os.Stat(Binary); err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("%s missing in CI: install openssh-server", Binary)
		}
		t.Skipf("%s missing: install openssh-server", Binary)
	}
}

func newKey(t *testing.T) (pemBytes []byte, signer ssh.Signer, authorized string) {
	t.Helper()
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	block, err := ssh.MarshalPrivateKey(priv, "test")
	if err != nil {
		t.Fatal(err)
	}
	signer, err = ssh.NewSignerFromKey(priv)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(block), signer, string(ssh.MarshalAuthorizedKey(signer.PublicKey()))
}

func currentUser(t *testing.T) string {
	t.Helper()
	out, err := exec.Command("id", "-un").Output()
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(string(out))
}

// dial connects and reports the host key the server presented.
func dial(t *testing.T, s *Server, signer ssh.Signer) (*ssh.Client, string) {
	t.Helper()
	var seen string
	c, err := ssh.Dial("tcp", s.Addr(), &ssh.ClientConfig{
		User: currentUser(t),
		Auth: []ssh.AuthMethod{ssh.PublicKeys(signer)},
		HostKeyCallback: func(_ string, _ net.Addr, k ssh.PublicKey) error {
			seen = strings.TrimSpace(string(ssh.MarshalAuthorizedKey(k)))
			return nil
		},
		Timeout: 10 * time.Second,
	})
	if err != nil {
		t.Fatalf("dial %s: %v", s.Addr(), err)
	}
	return c, seen
}

func run(t *testing.T, c *ssh.Client, cmd string) string {
	t.Helper()
	sess, err := c.NewSession()
	if err != nil {
		t.Fatal(err)
	}
	defer sess.Close()
	var out, errOut bytes.Buffer
	sess.Stdout, sess.Stderr = &out, &errOut
	if err := sess.Run(cmd); err != nil {
		t.Fatalf("%s: %v: %s", cmd, err, errOut.String())
	}
	return out.String()
}

func alive(pid int) bool {
	ppid, state, ok := procStat(pid)
	_ = ppid
	return ok && state != 'Z' && state != 'X'
}

func waitGone(t *testing.T, pid int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for alive(pid) {
		if time.Now().After(deadline) {
			t.Fatalf("process %d still alive", pid)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestSessionsGetEnvAndStopKillsEverything(t *testing.T) {
	requireSSHD(t)
	_, signer, authorized := newKey(t)
	s, err := Start(Options{
		Dir:            t.TempDir(),
		AuthorizedKeys: []string{authorized},
		Env:            map[string]string{"CRABBOX_TEST": "two words", "PATH": "/opt/none:/usr/bin:/bin"},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Stop() })

	c, seen := dial(t, s, signer)
	defer c.Close()
	if seen != s.HostPublicKey() {
		t.Errorf("server presented %q, HostPublicKey says %q", seen, s.HostPublicKey())
	}
	// The login shell's rc files may put more in front of PATH.
	got := strings.Split(run(t, c, `printf '%s|%s|%s' "$CRABBOX_TEST" "$PATH" "$`+MarkerVar+`"`), "|")
	if len(got) != 3 || got[0] != "two words" || !strings.HasSuffix(got[1], "/opt/none:/usr/bin:/bin") ||
		MarkerVar+"="+got[2] != s.Marker() {
		t.Errorf("session environment = %q", got)
	}

	detached, err := strconv.Atoi(strings.TrimSpace(run(t, c, `setsid nohup sleep 1000 >/dev/null 2>&1 </dev/null & echo $!`)))
	if err != nil {
		t.Fatal(err)
	}
	// A session still running when the server stops.
	sess, err := c.NewSession()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := sess.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := sess.Start(`echo $$; exec sleep 1000`); err != nil {
		t.Fatal(err)
	}
	line, err := bufio.NewReader(stdout).ReadString('\n')
	if err != nil {
		t.Fatal(err)
	}
	attached, err := strconv.Atoi(strings.TrimSpace(line))
	if err != nil {
		t.Fatal(err)
	}
	if !alive(detached) || !alive(attached) {
		t.Fatal("test processes are not running")
	}

	if err := s.Stop(); err != nil {
		t.Fatal(err)
	}
	waitGone(t, detached)
	waitGone(t, attached)
	if len(s.processes(s.Pid())) != 0 {
		t.Error("processes of the server survived Stop")
	}
	if err := s.Stop(); err != nil {
		t.Errorf("second Stop: %v", err)
	}
	if c, err := net.DialTimeout("tcp", s.Addr(), time.Second); err == nil {
		c.Close()
		// Another test may have taken the port since; only our sshd matters.
		if alive(s.Pid()) {
			t.Error("sshd still running after Stop")
		}
	}
}

func TestGivenHostKeyIsPresented(t *testing.T) {
	requireSSHD(t)
	hostPEM, hostSigner, _ := newKey(t)
	_, signer, authorized := newKey(t)
	s, err := Start(Options{Dir: t.TempDir(), HostKeyPEM: hostPEM, AuthorizedKeys: []string{authorized}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Stop() })
	want := strings.TrimSpace(string(ssh.MarshalAuthorizedKey(hostSigner.PublicKey())))
	if s.HostPublicKey() != want {
		t.Errorf("HostPublicKey = %q, want %q", s.HostPublicKey(), want)
	}
	c, seen := dial(t, s, signer)
	c.Close()
	if seen != want {
		t.Errorf("server presented %q, want %q", seen, want)
	}
}

func TestUnknownClientKeyIsRefused(t *testing.T) {
	requireSSHD(t)
	_, _, authorized := newKey(t)
	_, other, _ := newKey(t)
	s, err := Start(Options{Dir: t.TempDir(), AuthorizedKeys: []string{authorized}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Stop() })
	_, err = ssh.Dial("tcp", s.Addr(), &ssh.ClientConfig{
		User:            currentUser(t),
		Auth:            []ssh.AuthMethod{ssh.PublicKeys(other)},
		HostKeyCallback: ssh.InsecureIgnoreHostKey(),
		Timeout:         10 * time.Second,
	})
	if err == nil {
		t.Fatal("login with an unauthorized key succeeded")
	}
}

func TestStartRetriesWhenThePortIsTaken(t *testing.T) {
	requireSSHD(t)
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	orig := pickPort
	t.Cleanup(func() { pickPort = orig })
	calls := 0
	pickPort = func() (int, error) {
		calls++
		if calls == 1 {
			return busy.Addr().(*net.TCPAddr).Port, nil
		}
		return orig()
	}
	_, signer, authorized := newKey(t)
	s, err := Start(Options{Dir: t.TempDir(), AuthorizedKeys: []string{authorized}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Stop() })
	if calls < 2 || s.Port() == busy.Addr().(*net.TCPAddr).Port {
		t.Fatalf("Start did not move off the busy port (calls=%d, port=%d)", calls, s.Port())
	}
	c, _ := dial(t, s, signer)
	c.Close()
}

func TestOptionsAreValidated(t *testing.T) {
	requireSSHD(t)
	for name, opts := range map[string]Options{
		"no dir":       {},
		"bad host key": {Dir: t.TempDir(), HostKeyPEM: []byte("not a key")},
		"bad env name": {Dir: t.TempDir(), Env: map[string]string{"A-B": "x"}},
		"quote in env": {Dir: t.TempDir(), Env: map[string]string{"A": `x"y`}},
	} {
		if s, err := Start(opts); err == nil {
			_ = s.Stop()
			t.Errorf("%s: Start succeeded", name)
		}
	}
}

// A fake host's sessions can have a home of their own (Env HOME): the login
// shell then reads that home's start files, not those of the user the test
// runs as (on the test machine, root's .bashrc runs pyenv, seconds a session
// under load, which no rented host does).
func TestSessionsCanHaveTheirOwnHome(t *testing.T) {
	requireSSHD(t)
	_, signer, authorized := newKey(t)
	home := t.TempDir()
	if err := os.WriteFile(filepath.Join(home, ".bashrc"), []byte("export CRABBOX_FROM_RC=host-home\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	s, err := Start(Options{Dir: t.TempDir(), AuthorizedKeys: []string{authorized}, Env: map[string]string{"HOME": home}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Stop() })
	c, _ := dial(t, s, signer)
	defer c.Close()
	got := strings.Split(strings.TrimSpace(run(t, c, `printf '%s|%s|%s' "$HOME" "${CRABBOX_FROM_RC:-}" "${BASH_VERSION:-}"`)), "|")
	if len(got) != 3 || got[0] != home {
		t.Fatalf("session HOME|rc|bash = %q, want HOME %s", got, home)
	}
	// Debian's bash reads ~/.bashrc in a command sshd starts; other shells
	// read none.
	if got[2] != "" && got[1] != "host-home" {
		t.Errorf("bash did not read the session home's .bashrc: %q", got)
	}
}
