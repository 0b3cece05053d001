package lambdatest

import (
	"encoding/json"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// TestRunCmdRunsAfterSSHInTheBackground: user_data's runcmd runs as
// cloud-init's final stage does, after sshd is up and alongside it. The
// first item waits for a file only an SSH session creates: a fake that ran
// runcmd before serving SSH would never get past it. A list item is run
// with its words as they are (execve), a string by sh.
func TestRunCmdRunsAfterSSHInTheBackground(t *testing.T) {
	s := New(t, Options{})
	c := client{t, s, s.APIKey()}
	hostPub, hostPEM := genKey(t)
	clientPub, clientPEM := genKey(t)
	regPub, _ := genKey(t)
	body, _ := json.Marshal(map[string]string{"name": "reg", "public_key": regPub})
	if status, env := c.do(http.MethodPost, "/api/v1/ssh-keys", string(body)); status != 200 {
		t.Fatalf("add key: %d %s", status, env["error"])
	}
	ud := "#cloud-config\nssh_keys:\n  ed25519_private: |\n" + indent(string(hostPEM), "    ") +
		"  ed25519_public: " + hostPub + "\nssh_authorized_keys:\n  - " + clientPub + "\nruncmd:\n" +
		"  - [sh, -c, 'sleep 300 & echo $! > \"$HOME/bg.pid\"; until [ -f \"$HOME/from-ssh\" ]; do sleep 0.05; done']\n" +
		"  - [echo, 'it''s $HOME, as is']\n" +
		"  - echo \"home $HOME\"\n"
	launch, _ := json.Marshal(map[string]any{
		"region_name": "us-east-1", "instance_type_name": "gpu_1x_a100_sxm4", "ssh_key_names": []string{"reg"}, "user_data": ud,
	})
	id, ip := launchActive(t, c, launch)
	if out, done := s.RunCmdOutput(id); done || out != "" {
		t.Fatalf("runcmd ended before any SSH session: done %v, %q", done, out)
	}
	host, port := s.SSHAddress(ip)
	sshRun(t, net.JoinHostPort(host, strconv.Itoa(port)), clientPEM, hostPub, `touch "$CRABBOX_HOST_ROOT/from-ssh"`)
	var out string
	waitUntil(t, "runcmd done", func() bool {
		var done bool
		out, done = s.RunCmdOutput(id)
		return done
	})
	if want := "it's $HOME, as is\nhome " + s.HostRoot(id) + "\n"; out != want {
		t.Errorf("runcmd printed %q, want %q", out, want)
	}
	raw, err := os.ReadFile(filepath.Join(s.HostRoot(id), "bg.pid"))
	if err != nil {
		t.Fatal(err)
	}
	bg, _ := strconv.Atoi(strings.TrimSpace(string(raw)))
	if status, _ := c.do(http.MethodPost, "/api/v1/instance-operations/terminate", `{"instance_ids":["`+id+`"]}`); status != 200 {
		t.Fatalf("terminate: %d", status)
	}
	waitUntil(t, "sshd stopped", func() bool { return !s.Running(id) && len(s.Live()) == 0 })
	if alive(bg) {
		t.Errorf("process %d runcmd left in the background outlived terminate", bg)
	}
}

// alive: the process exists and is no zombie.
func alive(pid int) bool {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return false
	}
	i := strings.LastIndexByte(string(b), ')')
	return i > 0 && i+2 < len(b) && b[i+2] != 'Z' && b[i+2] != 'X'
}
