package lambdatest

import (
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// launchWith launches an instance with the user_data and returns its id.
func launchWith(t *testing.T, c client, ud string) string {
	t.Helper()
	regPub, _ := genKey(t)
	name := "reg-" + newID()
	body, _ := json.Marshal(map[string]string{"name": name, "public_key": regPub})
	if status, env := c.do(http.MethodPost, "/api/v1/ssh-keys", string(body)); status != 200 {
		t.Fatalf("add key: %d %s", status, env["error"])
	}
	launch, _ := json.Marshal(map[string]any{
		"region_name": "us-east-1", "instance_type_name": "gpu_1x_a100_sxm4", "ssh_key_names": []string{name}, "user_data": ud,
	})
	status, env := c.do(http.MethodPost, "/api/v1/instance-operations/launch", string(launch))
	if status != 200 {
		t.Fatalf("launch: %d %s", status, env["error"])
	}
	var ids struct {
		InstanceIDs []string `json:"instance_ids"`
	}
	_ = json.Unmarshal(env["data"], &ids)
	return ids.InstanceIDs[0]
}

// TestBootCmdRunsBeforeSSH: bootcmd runs in the network stage, before sshd
// (InitStageLead before the boot delay ends), and the instance is not
// reachable until bootcmd has ended, as cloud-init's network stage holds up
// sshd; runcmd runs only after.
func TestBootCmdRunsBeforeSSH(t *testing.T) {
	s := New(t, Options{BootDelay: 200 * time.Millisecond, Behavior: func(int, LaunchRequest) Behavior {
		return Behavior{InitStageLead: 200 * time.Millisecond}
	}})
	c := client{t, s, s.APIKey()}
	ud := "#cloud-config\nbootcmd:\n" +
		"  - [sh, -c, 'touch \"$HOME/bootcmd-started\"; until [ -f \"$HOME/go\" ]; do sleep 0.02; done']\n" +
		"runcmd:\n  - [sh, -c, 'test -f \"$HOME/bootcmd-started\" && echo after-bootcmd']\n"
	id := launchWith(t, c, ud)
	waitUntil(t, "bootcmd started", func() bool {
		_, err := os.Stat(filepath.Join(s.HostRoot(id), "bootcmd-started"))
		return err == nil
	})
	// Past the boot delay: a fake that did not wait for bootcmd would
	// have the instance active by now.
	time.Sleep(500 * time.Millisecond)
	if st := s.Status(id); st != "booting" {
		t.Fatalf("status %q while bootcmd runs, want booting", st)
	}
	if out, _ := s.RunCmdOutput(id); out != "" {
		t.Fatalf("runcmd ran during the network stage: %q", out)
	}
	if err := os.WriteFile(filepath.Join(s.HostRoot(id), "go"), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, "active", func() bool { return s.Status(id) == "active" })
	waitUntil(t, "runcmd done", func() bool { _, done := s.RunCmdOutput(id); return done })
	if out, _ := s.RunCmdOutput(id); out != "after-bootcmd\n" {
		t.Errorf("runcmd printed %q", out)
	}
}

// TestPackageUpdateDelaysRunCmd: user_data with package_update (or
// packages) has the final stage update the package sources before runcmd;
// without it runcmd runs at once. An instance launched once the others
// are up (SSH served, the final stage started) finishes its runcmd while
// theirs have not started.
func TestPackageUpdateDelaysRunCmd(t *testing.T) {
	s := New(t, Options{Behavior: func(seq int, _ LaunchRequest) Behavior {
		return Behavior{PackageUpdateTime: time.Hour}
	}})
	c := client{t, s, s.APIKey()}
	const run = "runcmd:\n  - [echo, ran]\n"
	slow := []string{
		launchWith(t, c, "#cloud-config\npackage_update: true\n"+run),
		launchWith(t, c, "#cloud-config\npackages: [curl]\n"+run),
	}
	for _, id := range slow {
		waitUntil(t, "active", func() bool { return s.Status(id) == "active" })
	}
	fast := launchWith(t, c, "#cloud-config\n"+run)
	waitUntil(t, "runcmd without a package step done", func() bool { out, done := s.RunCmdOutput(fast); return done && out == "ran\n" })
	for _, id := range slow {
		if out, done := s.RunCmdOutput(id); done || out != "" {
			t.Errorf("runcmd ran before the package step ended: done %v, %q", done, out)
		}
	}
}
