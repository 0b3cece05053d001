package main

import (
	"crypto/hmac"
	"crypto/sha256"
	"net"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/crabbox/crabbox-runner/bootstrap"
	"github.com/crabbox/crabbox-runner/github/githubtest"
	"github.com/crabbox/crabbox-runner/providers/local"
	"github.com/crabbox/crabbox-runner/provisioner"
)

// leaseKeysFrom computes a lease's SSH client key as the provisioner does
// (provisioner/provision.go credentials) from a KeySecret.
func leaseKeysFrom(t *testing.T, keySecret []byte, leaseID string) ssh.Signer {
	t.Helper()
	m := hmac.New(sha256.New, keySecret)
	m.Write([]byte("crabbox-runner lease keys\x00" + leaseID))
	c, err := new(bootstrap.Bootstrapper).NewCredentials(m.Sum(nil), true)
	if err != nil {
		t.Fatal(err)
	}
	signer, err := ssh.ParsePrivateKey(c.ClientPrivatePEM)
	if err != nil {
		t.Fatal(err)
	}
	return signer
}

// sshLogin tries a login with one key and runs a command; the host key is
// not what is tested here (the lease pins it), the client key is.
func sshLogin(ep provisioner.Endpoint, signer ssh.Signer) (string, error) {
	c, err := ssh.Dial("tcp", net.JoinHostPort(ep.Host, strconv.Itoa(ep.Port)), &ssh.ClientConfig{
		User: ep.User, Auth: []ssh.AuthMethod{ssh.PublicKeys(signer)},
		HostKeyCallback: ssh.InsecureIgnoreHostKey(), Timeout: 10 * time.Second,
	})
	if err != nil {
		return "", err
	}
	defer c.Close()
	s, err := c.NewSession()
	if err != nil {
		return "", err
	}
	defer s.Close()
	out, err := s.Output("echo logged-in")
	return string(out), err
}

// Issue #15: with the webhook secret alone (and a lease id, public in every
// runner name) one computed a lease's SSH key and logged in as root on its
// host. Through serve with real sshd hosts: the old derivation from the
// webhook secret is refused by the live host; the key derived from the
// state key serve made (0600, beside its database) logs in, so the test
// tells the two apart.
func TestServeLeaseKeysNeedTheStateKey(t *testing.T) {
	e := startServe(t, "60s", nil)
	keyFile := e.dbPath + ".state-key"
	st, err := os.Stat(keyFile)
	if err != nil {
		t.Fatalf("serve made no state key beside its SQLite database: %v", err)
	}
	if st.Mode().Perm() != 0o600 {
		t.Fatalf("%s has mode %#o, want 0600", keyFile, st.Mode().Perm())
	}
	if len(e.stateKey) < 32 || strings.Contains(e.stateKey, testSecret) {
		t.Fatalf("state key of %d bytes", len(e.stateKey))
	}
	if !strings.Contains(e.logs.String(), "made a state key") || !strings.Contains(e.logs.String(), keyFile) {
		t.Errorf("serve did not log that it made the state key, and where")
	}

	id := e.gh.QueueJob(githubtest.JobSpec{Repo: "acme/vision", Org: "acme", Labels: []string{"self-hosted", "crabbox", "A100"},
		Name: "train", Script: `sleep 8; echo trained`})
	var l *provisioner.Lease
	e.waitFor("the lease busy with the job", 60*time.Second, func() bool {
		ls := e.leases()
		if len(ls) == 1 && ls[0].State == provisioner.StateBusy && ls[0].SSH.Port != 0 {
			l = ls[0]
			return true
		}
		return false
	})
	if !strings.Contains(l.RunnerName, l.ID) {
		t.Fatalf("runner %q does not carry lease id %q: the attacker's premise", l.RunnerName, l.ID)
	}

	// The attacker: the webhook secret and the lease id, and the
	// derivation serve used before the state key.
	m := hmac.New(sha256.New, []byte(testSecret))
	m.Write([]byte("crabbox-runner lease key secret v1"))
	if out, err := sshLogin(l.SSH, leaseKeysFrom(t, m.Sum(nil), l.ID)); err == nil {
		t.Errorf("the key derived from the webhook secret logged in to the host: %q", out)
	}
	// serve's own derivation from the state key gets in.
	if out, err := sshLogin(l.SSH, leaseKeysFrom(t, leaseKeySecret([]byte(e.stateKey)), l.ID)); err != nil || !strings.Contains(out, "logged-in") {
		t.Fatalf("the key derived from the state key: %q, %v", out, err)
	}

	if job := e.waitJob(id); job.Conclusion != "success" {
		t.Fatalf("job: %q", job.Conclusion)
	}
	e.waitClean()
	e.stop()
	if strings.Contains(e.logs.String(), e.stateKey) {
		t.Error("the state key appears in serve's logs")
	}
}

// A restarted serve on the same SQLite database reads the key it made and
// does not make another: the hosts it was bootstrapping stay reachable
// (TestCrashAnywhereLosesNothing restarts through every step on this).
func TestServeKeepsItsStateKeyAcrossRestarts(t *testing.T) {
	e := startServe(t, "60s", nil)
	first := e.stateKey
	e.stop()
	e.runServe(strings.TrimPrefix(e.url, "http://"), e.env)
	if e.stateKey != first || first == "" {
		t.Fatalf("the state key changed across a restart (%d bytes, then %d)", len(first), len(e.stateKey))
	}
	if n := strings.Count(e.logs.String(), "made a state key"); n != 1 {
		t.Errorf("%d starts made a state key, want the first only", n)
	}
}

// PostgreSQL serves replicas that must derive the same keys: without a
// state key serve refuses to start, naming the variables, and a short key
// is refused with its length and how to make one, never echoed.
func TestServeStateKeyRefusals(t *testing.T) {
	path := writeStrictConfig(t, "")
	base := map[string]string{"CRABBOX_CONFIG": path, "CRABBOX_WEBHOOK_SECRET": "0123456789abcdef", "CRABBOX_GITHUB_TOKEN": "t",
		// Nothing listens there: a serve that got as far as the database
		// fails differently.
		"CRABBOX_DATABASE_URL": "postgres://crabbox@127.0.0.1:1/crabbox?connect_timeout=2"}
	code, _, errs := runServeBounded(t, base, "serve", "--listen", "127.0.0.1:0")
	if code == 0 || !strings.Contains(errs, "CRABBOX_STATE_KEY") || !strings.Contains(errs, "PostgreSQL") {
		t.Errorf("serve on PostgreSQL without a state key: exit %d, %s", code, errs)
	}

	const short = "shortkey"
	env := map[string]string{"CRABBOX_CONFIG": path, "CRABBOX_WEBHOOK_SECRET": "0123456789abcdef", "CRABBOX_GITHUB_TOKEN": "t", "CRABBOX_STATE_KEY": short}
	code, out, errs := runServeBounded(t, env, "serve", "--listen", "127.0.0.1:0")
	if code == 0 || !strings.Contains(errs, "has 8 bytes") || !strings.Contains(errs, "openssl rand -hex 32") || !strings.Contains(errs, "state.key_file") {
		t.Errorf("serve with an 8-byte state key: exit %d, %s", code, errs)
	}
	if strings.Contains(errs+out, short) {
		t.Errorf("the state key is in serve's output: %s", errs)
	}
}

// What docs/operations.md says of a rotation, through serve: a restart
// with a new state key while a host boots leaves that host unreachable (its
// sshd refuses the new key) until its boot deadline; the lease fails and
// the job gets a new one, which runs it. Given the old key as
// CRABBOX_STATE_KEY_PREVIOUS, serve offers the lease's old key too: the
// host is reached and runs the job, one lease only.
func TestServeStateKeyRotation(t *testing.T) {
	t.Run("replaces a booting host", func(t *testing.T) {
		e, id, _ := rotateWhileBooting(t, false)
		ls := e.leases()
		if len(ls) != 2 || !strings.Contains(ls[0].Error, "boot timeout") || ls[1].BoundJobID != id {
			for _, l := range ls {
				t.Logf("lease %s %s %q", l.ID, l.State, l.Error)
			}
			t.Fatalf("%d leases: want the booting one failed on its boot deadline and a second one for the job", len(ls))
		}
		if !strings.Contains(e.logs.String(), "unable to authenticate") {
			t.Error("the old host's refusals of the new key are not in the log")
		}
	})
	t.Run("with the previous key loses nothing", func(t *testing.T) {
		e, id, old := rotateWhileBooting(t, true)
		ls := e.leases()
		if len(ls) != 1 || ls[0].BoundJobID != id || ls[0].Error != "" {
			for _, l := range ls {
				t.Logf("lease %s %s %q", l.ID, l.State, l.Error)
			}
			t.Fatalf("%d leases: want the booting host to run the job", len(ls))
		}
		if e.hosts.Created() != 1 {
			t.Fatalf("%d hosts created, want 1", e.hosts.Created())
		}
		e.stop()
		if strings.Contains(e.logs.String(), old) {
			t.Error("the previous state key appears in serve's logs")
		}
	})
}

// rotateWhileBooting runs serve, queues a job, and restarts serve with a
// new state key (and the old one as the previous key, if asked) while the
// job's host boots; it returns once the job succeeded and all is clean,
// with the job and the old key.
func rotateWhileBooting(t *testing.T, previous bool) (*e2e, int64, string) {
	e := startServe(t, "8s", func(seq int, req provisioner.CreateRequest) local.Behavior {
		if seq == 1 {
			return local.Behavior{BootDelay: 3 * time.Second}
		}
		return local.Behavior{}
	})
	old := e.stateKey
	id := e.queue("train")
	e.waitFor("the first host booting", 30*time.Second, func() bool {
		ls := e.leases()
		return len(ls) == 1 && ls[0].State == provisioner.StateBooting
	})
	e.stop()
	e.env["CRABBOX_STATE_KEY"] = "rotated-state-key-0123456789abcdef"
	if previous {
		e.env["CRABBOX_STATE_KEY_PREVIOUS_FILE"] = e.dbPath + ".state-key"
	}
	e.runServe(strings.TrimPrefix(e.url, "http://"), e.env)
	if e.stateKey == old || old == "" {
		t.Fatal("the rotated key was not taken")
	}
	if job := e.waitJob(id); job.Conclusion != "success" {
		t.Fatalf("job: %q", job.Conclusion)
	}
	e.waitClean()
	return e, id, old
}
