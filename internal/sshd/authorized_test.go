package sshd

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"
)

func TestAddAuthorizedKeyLetsTheKeyInAtOnce(t *testing.T) {
	requireSSHD(t)
	_, first, firstAuth := newKey(t)
	_, second, secondAuth := newKey(t)
	s, err := Start(Options{Dir: t.TempDir(), AuthorizedKeys: []string{firstAuth}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Stop() })

	cfg := &ssh.ClientConfig{
		User:            currentUser(t),
		Auth:            []ssh.AuthMethod{ssh.PublicKeys(second)},
		HostKeyCallback: ssh.InsecureIgnoreHostKey(),
		Timeout:         10 * time.Second,
	}
	if c, err := ssh.Dial("tcp", s.Addr(), cfg); err == nil {
		c.Close()
		t.Fatal("a key not yet added could log in")
	}
	for range 2 { // the second add is a no-op
		if err := s.AddAuthorizedKey(strings.TrimSpace(secondAuth) + " comment"); err != nil {
			t.Fatal(err)
		}
	}
	c, _ := dial(t, s, second)
	c.Close()
	c, _ = dial(t, s, first)
	c.Close()

	data, err := os.ReadFile(filepath.Join(s.dir, "authorized_keys"))
	if err != nil {
		t.Fatal(err)
	}
	if n := strings.Count(string(data), "\n"); n != 2 {
		t.Fatalf("authorized_keys has %d lines, want 2:\n%s", n, data)
	}
	for _, bad := range []string{"", "not a key", firstAuth + "\n" + secondAuth} {
		if err := s.AddAuthorizedKey(bad); err == nil {
			t.Errorf("AddAuthorizedKey(%.20q) = nil, want an error", bad)
		}
	}
}
