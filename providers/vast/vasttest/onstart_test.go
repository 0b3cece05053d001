package vasttest

import (
	"crypto/ed25519"
	"crypto/rand"
	"encoding/json"
	"net"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"
)

// TestOnStartRunsWhileSSHIsUp: onstart runs after SSH is up and alongside
// it, not before the instance is reported running. The script waits for a
// file that only an SSH session creates: a fake that ran it to the end
// before reporting SSH would never get there.
func TestOnStartRunsWhileSSHIsUp(t *testing.T) {
	s := newServer(t, Options{LoadingAfter: 10 * time.Millisecond, RunningAfter: 10 * time.Millisecond})
	script := `sleep 300 & echo $! > "$HOME/bg.pid"; until [ -f "$HOME/from-ssh" ]; do sleep 0.05; done; echo "onstart saw the ssh session"`
	body, _ := json.Marshal(map[string]any{"client_id": "me", "image": "nvidia/cuda:12.4.1-runtime-ubuntu22.04", "disk": 40,
		"runtype": "ssh_direct", "onstart": script})
	status, resp := do(t, s, "PUT", "/api/v0/asks/5000201/", string(body), true)
	var created struct {
		NewContract int64 `json:"new_contract"`
	}
	if status != 200 || json.Unmarshal([]byte(resp), &created) != nil {
		t.Fatalf("create: %d %s", status, resp)
	}
	var in Instance
	deadline := time.Now().Add(20 * time.Second)
	for {
		in, _ = s.Instance(created.NewContract)
		if in.Status == "running" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("not running: %+v", in)
		}
		time.Sleep(5 * time.Millisecond)
	}
	if in.OnStartOutput != "" {
		t.Fatalf("onstart output before the SSH session: %q", in.OnStartOutput)
	}

	_, priv, _ := ed25519.GenerateKey(rand.Reader)
	signer, _ := ssh.NewSignerFromKey(priv)
	key := strings.TrimSpace(string(ssh.MarshalAuthorizedKey(signer.PublicKey())))
	path := "/api/v0/instances/" + strconv.FormatInt(created.NewContract, 10) + "/"
	if status, resp := do(t, s, "POST", path+"ssh/", `{"ssh_key": "`+key+`"}`, true); status != 200 {
		t.Fatalf("attach: %d %s", status, resp)
	}
	cfg := &ssh.ClientConfig{User: "root", Auth: []ssh.AuthMethod{ssh.PublicKeys(signer)}, HostKeyCallback: ssh.InsecureIgnoreHostKey(), Timeout: 5 * time.Second}
	if u := os.Getenv("USER"); u != "" {
		cfg.User = u
	}
	c, err := ssh.Dial("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(in.SSHPort)), cfg)
	if err != nil {
		t.Fatalf("ssh while onstart runs: %v", err)
	}
	sess, _ := c.NewSession()
	if out, err := sess.Output(`touch "$CRABBOX_HOST_ROOT/from-ssh"`); err != nil {
		t.Fatalf("session: %v %s", err, out)
	}
	c.Close()
	for {
		in, _ = s.Instance(created.NewContract)
		if strings.Contains(in.OnStartOutput, "onstart saw the ssh session") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("onstart did not go on after the SSH session: %+v", in)
		}
		time.Sleep(10 * time.Millisecond)
	}
	raw, err := os.ReadFile(in.HostRoot + "/bg.pid")
	if err != nil {
		t.Fatal(err)
	}
	bg, _ := strconv.Atoi(strings.TrimSpace(string(raw)))
	if status, resp := do(t, s, "DELETE", path, "{}", true); status != 200 {
		t.Fatalf("destroy: %d %s", status, resp)
	}
	if alive(bg) {
		t.Fatalf("process %d that onstart left in the background outlived destroy", bg)
	}
}

// TestOnStartTooLongRefused: Vast's spec limits onstart to 4048
// characters (vast-api.md §9); the fake refuses one longer.
func TestOnStartTooLongRefused(t *testing.T) {
	s := newServer(t, Options{})
	for _, tc := range []struct {
		n    int
		want int
	}{{4048, 200}, {4049, 400}} {
		body, _ := json.Marshal(map[string]any{"client_id": "me", "image": "ubuntu:22.04", "disk": 10, "runtype": "ssh_direct",
			"onstart": strings.Repeat("#", tc.n)})
		if status, resp := do(t, s, "PUT", "/api/v0/asks/5000201/", string(body), true); status != tc.want ||
			(tc.want == 400 && !strings.Contains(resp, "4048")) {
			t.Errorf("onstart of %d characters: %d %s, want %d", tc.n, status, resp, tc.want)
		}
	}
}
