package local_test

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/pem"
	"errors"
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/crabbox/crabbox-runner/providers/local"
	"github.com/crabbox/crabbox-runner/providers/providertest"
	"github.com/crabbox/crabbox-runner/provisioner"
)

var a100 = provisioner.Class{
	Name:            "a100",
	GPU:             provisioner.GPURequirement{Name: "a100", Count: 1, MinMemoryGB: 40},
	MaxPricePerHour: 2.00,
}

func requireSSHD(t *testing.T) {
	t.Helper()
	if _, err := os.Stat("/usr/sbin/sshd"); err != nil {
		if os.Getenv("CI") != "" {
			t.Fatal("/usr/sbin/sshd missing in CI: install openssh-server")
		}
		t.Skip("/usr/sbin/sshd missing: install openssh-server")
	}
}

func newProvider(t *testing.T, behavior func(int, provisioner.CreateRequest) local.Behavior) *local.Provider {
	t.Helper()
	requireSSHD(t)
	p, err := local.New(local.Options{Dir: t.TempDir(), Behavior: behavior})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := p.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return p
}

func TestContract(t *testing.T) {
	providertest.Run(t, func(t *testing.T) provisioner.Provider { return newProvider(t, nil) }, a100)
}

func TestOffersFilter(t *testing.T) {
	p := newProvider(t, nil)
	for _, tc := range []struct {
		class provisioner.Class
		want  []string
	}{
		{a100, []string{"local-a100-pcie", "local-a100-sxm4"}},
		{provisioner.Class{GPU: provisioner.GPURequirement{Name: "A100", MinMemoryGB: 80}}, []string{"local-a100-sxm4", "local-2x-a100-sxm4"}},
		{provisioner.Class{GPU: provisioner.GPURequirement{Name: "a100", Count: 2}}, []string{"local-2x-a100-sxm4"}},
		{provisioner.Class{GPU: provisioner.GPURequirement{Name: "h100"}}, []string{"local-h100-sxm"}},
		{provisioner.Class{MaxPricePerHour: 0.5}, []string{"local-rtx4090"}},
		{provisioner.Class{Region: "LOCAL", MaxPricePerHour: 1}, []string{"local-rtx4090", "local-a100-pcie"}},
		{provisioner.Class{Region: "elsewhere"}, nil},
		{provisioner.Class{}, []string{"local-rtx4090", "local-a100-pcie", "local-a100-sxm4", "local-h100-sxm", "local-2x-a100-sxm4"}},
	} {
		offers, err := p.Offers(context.Background(), tc.class)
		if err != nil {
			t.Fatal(err)
		}
		var got []string
		for _, o := range offers {
			got = append(got, o.ID)
			if o.Provider != "local" {
				t.Errorf("offer %s: Provider %q", o.ID, o.Provider)
			}
		}
		if fmt.Sprint(got) != fmt.Sprint(tc.want) {
			t.Errorf("Offers(%+v) = %v, want %v", tc.class, got, tc.want)
		}
	}
}

type client struct {
	signer  ssh.Signer
	public  string
	hostPub string
	hostPEM []byte
}

func newClient(t *testing.T) *client {
	t.Helper()
	key := func(comment string) (string, []byte, ssh.Signer) {
		_, priv, err := ed25519.GenerateKey(rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		block, err := ssh.MarshalPrivateKey(priv, comment)
		if err != nil {
			t.Fatal(err)
		}
		signer, err := ssh.NewSignerFromKey(priv)
		if err != nil {
			t.Fatal(err)
		}
		return strings.TrimSpace(string(ssh.MarshalAuthorizedKey(signer.PublicKey()))), pem.EncodeToMemory(block), signer
	}
	c := &client{}
	c.public, _, c.signer = key("client")
	c.hostPub, c.hostPEM, _ = key("host")
	return c
}

func (c *client) request(p *local.Provider, t *testing.T, deployment string) provisioner.CreateRequest {
	t.Helper()
	offers, err := p.Offers(context.Background(), a100)
	if err != nil || len(offers) == 0 {
		t.Fatalf("offers: %v %v", offers, err)
	}
	return provisioner.CreateRequest{
		Offer:        offers[0],
		Class:        a100,
		Marker:       provisioner.Marker{Deployment: deployment, LeaseID: "l1", Expires: time.Now().Add(time.Hour)},
		SSHPublicKey: c.public,
		HostKey:      &provisioner.HostKeyPair{PublicKey: c.hostPub, PrivatePEM: c.hostPEM},
	}
}

func waitStatus(t *testing.T, p *local.Provider, id string, want provisioner.InstanceStatus) *provisioner.Instance {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		inst, err := p.Get(context.Background(), id)
		if err != nil {
			t.Fatal(err)
		}
		if inst.Status == want {
			return inst
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: status %s (%s), want %s", id, inst.Status, inst.StatusMessage, want)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// run runs cmd on the host and returns stdout, stderr and the exit status,
// with the host key the server presented.
func (c *client) run(t *testing.T, inst *provisioner.Instance, cmd string) (stdout, stderr string, status int, hostKey string) {
	t.Helper()
	conn, err := ssh.Dial("tcp", inst.SSH.Addr(), &ssh.ClientConfig{
		User: inst.SSH.User,
		Auth: []ssh.AuthMethod{ssh.PublicKeys(c.signer)},
		HostKeyCallback: func(_ string, _ net.Addr, k ssh.PublicKey) error {
			hostKey = strings.TrimSpace(string(ssh.MarshalAuthorizedKey(k)))
			return nil
		},
		Timeout: 10 * time.Second,
	})
	if err != nil {
		t.Fatalf("ssh %s: %v", inst.SSH.Addr(), err)
	}
	defer conn.Close()
	sess, err := conn.NewSession()
	if err != nil {
		t.Fatal(err)
	}
	defer sess.Close()
	var out, errOut bytes.Buffer
	sess.Stdout, sess.Stderr = &out, &errOut
	err = sess.Run(cmd)
	var exit *ssh.ExitError
	switch {
	case errors.As(err, &exit):
		status = exit.ExitStatus()
	case err != nil:
		t.Fatalf("%s: %v", cmd, err)
	}
	return out.String(), errOut.String(), status, hostKey
}

func TestHostHasInjectedKeyFakeGPUAndOwnRoot(t *testing.T) {
	p := newProvider(t, nil)
	c := newClient(t)
	created, err := p.Create(context.Background(), c.request(p, t, "dep"))
	if err != nil {
		t.Fatal(err)
	}
	if created.Status != provisioner.InstancePending || created.ID != "local-1" {
		t.Errorf("created instance: %+v", created)
	}
	inst := waitStatus(t, p, created.ID, provisioner.InstanceRunning)
	if inst.SSH.Host != "127.0.0.1" || inst.SSH.Port == 0 || inst.SSH.User == "" {
		t.Errorf("endpoint = %+v", inst.SSH)
	}
	out, _, status, hostKey := c.run(t, inst, `nvidia-smi --query-gpu=name,memory.total --format=csv,noheader; echo "root=$CRABBOX_HOST_ROOT"`)
	if status != 0 || out != "NVIDIA A100 PCIE, 40960 MiB\nroot="+p.HostRoot(inst.ID)+"\n" {
		t.Errorf("host said %q (status %d)", out, status)
	}
	if hostKey != c.hostPub {
		t.Errorf("host key %q, want the injected %q", hostKey, c.hostPub)
	}
}

func TestBehaviors(t *testing.T) {
	boom := fmt.Errorf("capacity: %w", provisioner.ErrOfferUnavailable)
	p := newProvider(t, func(seq int, _ provisioner.CreateRequest) local.Behavior {
		switch seq {
		case 1:
			return local.Behavior{NeverBoot: true}
		case 2:
			return local.Behavior{BootDelay: 100 * time.Millisecond, BrokenGPU: true, IgnoreHostKey: true}
		case 3:
			return local.Behavior{CreateErr: boom}
		}
		return local.Behavior{}
	})
	c := newClient(t)
	ctx := context.Background()
	never, err := p.Create(ctx, c.request(p, t, "dep"))
	if err != nil {
		t.Fatal(err)
	}
	delayed, err := p.Create(ctx, c.request(p, t, "dep"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := p.Create(ctx, c.request(p, t, "dep")); !errors.Is(err, provisioner.ErrOfferUnavailable) {
		t.Errorf("third Create = %v, want the injected error", err)
	}
	req := c.request(p, t, "dep")
	req.Offer.ID = "no-such-offer"
	if _, err := p.Create(ctx, req); !errors.Is(err, provisioner.ErrOfferUnavailable) {
		t.Errorf("Create(unknown offer) = %v, want ErrOfferUnavailable", err)
	}
	if p.Created() != 2 {
		t.Errorf("Created() = %d, want 2", p.Created())
	}

	inst := waitStatus(t, p, delayed.ID, provisioner.InstanceRunning)
	out, _, status, hostKey := c.run(t, inst, `nvidia-smi --query-gpu=name,memory.total --format=csv,noheader`)
	// 9: "NVIDIA driver is not loaded" (nvidia-smi(1), internal/fakegpu).
	if status != 9 || !strings.Contains(out, "couldn't communicate with the NVIDIA driver") {
		t.Errorf("broken nvidia-smi exited %d saying %q", status, out)
	}
	if hostKey == "" || hostKey == c.hostPub {
		t.Errorf("IgnoreHostKey host presented %q", hostKey)
	}

	// The other instance has long been running; this one never will.
	if got, err := p.Get(ctx, never.ID); err != nil || got.Status != provisioner.InstancePending || got.SSH.Port != 0 {
		t.Errorf("NeverBoot instance: %+v, %v", got, err)
	}
	if err := p.Destroy(ctx, never); err != nil {
		t.Fatal(err)
	}
	if got := len(p.Live()); got != 1 {
		t.Errorf("Live() = %d instances, want 1", got)
	}
}

func TestListOwnedOnlyReturnsTheDeployment(t *testing.T) {
	p := newProvider(t, func(int, provisioner.CreateRequest) local.Behavior { return local.Behavior{NeverBoot: true} })
	c := newClient(t)
	ctx := context.Background()
	for _, dep := range []string{"a", "b", "a", ""} {
		if _, err := p.Create(ctx, c.request(p, t, dep)); err != nil {
			t.Fatal(err)
		}
	}
	for dep, want := range map[string]string{"a": "[local-1 local-3]", "b": "[local-2]", "": "[]", "c": "[]"} {
		owned, err := p.ListOwned(ctx, dep)
		if err != nil {
			t.Fatal(err)
		}
		var ids []string
		for _, inst := range owned {
			ids = append(ids, inst.ID)
		}
		if fmt.Sprint(ids) != want && !(want == "[]" && ids == nil) {
			t.Errorf("ListOwned(%q) = %v, want %s", dep, ids, want)
		}
	}
}

func TestDestroyKillsEverythingOnTheHost(t *testing.T) {
	p := newProvider(t, nil)
	c := newClient(t)
	ctx := context.Background()
	created, err := p.Create(ctx, c.request(p, t, "dep"))
	if err != nil {
		t.Fatal(err)
	}
	inst := waitStatus(t, p, created.ID, provisioner.InstanceRunning)
	out, _, _, _ := c.run(t, inst, `setsid nohup sleep 1000 >/dev/null 2>&1 </dev/null & echo $!`)
	pid, err := strconv.Atoi(strings.TrimSpace(out))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat("/proc/" + strconv.Itoa(pid)); err != nil {
		t.Fatalf("detached process not running: %v", err)
	}
	root := p.HostRoot(inst.ID)

	if err := p.Destroy(ctx, inst); err != nil {
		t.Fatal(err)
	}
	if stat, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat"); err == nil && !strings.Contains(string(stat), ") Z ") {
		t.Errorf("process %d survived Destroy: %s", pid, stat)
	}
	if _, err := os.Stat(root); !os.IsNotExist(err) {
		t.Errorf("host directory left behind: %v", err)
	}
	if _, err := p.Get(ctx, inst.ID); !errors.Is(err, provisioner.ErrNotFound) {
		t.Errorf("Get after Destroy = %v, want ErrNotFound", err)
	}
	if err := p.Destroy(ctx, inst); err != nil {
		t.Errorf("second Destroy = %v", err)
	}
	if p.Destroyed() != 1 {
		t.Errorf("Destroyed() = %d, want 1", p.Destroyed())
	}
}

func TestGPUNameAndCountInFakeNvidiaSMI(t *testing.T) {
	requireSSHD(t)
	p, err := local.New(local.Options{Dir: t.TempDir(), GPUName: "NVIDIA A100-SXM4-80GB"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = p.Close() })
	c := newClient(t)
	req := c.request(p, t, "dep")
	req.Offer.ID = "local-2x-a100-sxm4"
	created, err := p.Create(context.Background(), req)
	if err != nil {
		t.Fatal(err)
	}
	inst := waitStatus(t, p, created.ID, provisioner.InstanceRunning)
	out, _, status, _ := c.run(t, inst, `nvidia-smi --query-gpu=name,memory.total --format=csv,noheader`)
	if want := strings.Repeat("NVIDIA A100-SXM4-80GB, 81920 MiB\n", 2); status != 0 || out != want {
		t.Errorf("nvidia-smi said %q (status %d), want %q", out, status, want)
	}
}
