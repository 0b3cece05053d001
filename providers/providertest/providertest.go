// Package providertest is the contract suite every provisioner.Provider
// passes: offers, create, get, ownership filtering and idempotent destroy,
// checked only through the Provider interface so that the local provider
// and the fake-backed cloud providers are held to the same promises.
package providertest

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/crabbox/crabbox-runner/provisioner"
)

// Timeouts of the suite. Fake clouds boot hosts in well under these.
var (
	BootTimeout    = 2 * time.Minute
	DestroyTimeout = time.Minute
	PollInterval   = 50 * time.Millisecond
)

// Run runs the contract suite. newProvider returns a fresh provider for each
// subtest; class must have at least one fitting offer.
func Run(t *testing.T, newProvider func(t *testing.T) provisioner.Provider, class provisioner.Class) {
	t.Run("Offers", func(t *testing.T) {
		p := newProvider(t)
		offers, err := p.Offers(context.Background(), class)
		if err != nil {
			t.Fatalf("Offers: %v", err)
		}
		if len(offers) == 0 {
			t.Fatalf("Offers(%s): none; the suite needs a class with offers", class.Name)
		}
		for i, o := range offers {
			if o.Provider != p.Name() {
				t.Errorf("offer %s: Provider = %q, want %q", o.ID, o.Provider, p.Name())
			}
			if o.ID == "" {
				t.Errorf("offer %d has no ID", i)
			}
			if class.MaxPricePerHour > 0 && o.PricePerHour > class.MaxPricePerHour {
				t.Errorf("offer %s costs %.4f/h, above the class cap %.4f", o.ID, o.PricePerHour, class.MaxPricePerHour)
			}
			if class.GPU.Count > 0 && o.GPUCount < class.GPU.Count {
				t.Errorf("offer %s has %d GPUs, class wants %d", o.ID, o.GPUCount, class.GPU.Count)
			}
			if class.GPU.MinMemoryGB > 0 && o.GPUMemoryGB < class.GPU.MinMemoryGB {
				t.Errorf("offer %s has %.0f GB per GPU, class wants %.0f", o.ID, o.GPUMemoryGB, class.GPU.MinMemoryGB)
			}
			if i > 0 && o.PricePerHour < offers[i-1].PricePerHour {
				t.Errorf("offers not cheapest first: %s (%.4f) after %s (%.4f)",
					o.ID, o.PricePerHour, offers[i-1].ID, offers[i-1].PricePerHour)
			}
		}
	})

	t.Run("Lifecycle", func(t *testing.T) {
		p := newProvider(t)
		ctx := context.Background()
		ours, theirs := "pt-"+randomHex(t, 4), "pt-"+randomHex(t, 4)
		mine := create(t, p, class, ours)
		other := create(t, p, class, theirs)

		got := waitRunning(t, p, mine.ID)
		if got.SSH.Host == "" || got.SSH.Port == 0 {
			t.Errorf("running instance %s has no SSH endpoint: %+v", got.ID, got.SSH)
		}
		if got.Provider != p.Name() {
			t.Errorf("instance Provider = %q, want %q", got.Provider, p.Name())
		}
		if got.Marker.Deployment != ours || got.Marker.LeaseID != mine.Marker.LeaseID {
			t.Errorf("instance marker = %+v, want deployment %s lease %s", got.Marker, ours, mine.Marker.LeaseID)
		}

		owned, err := p.ListOwned(ctx, ours)
		if err != nil {
			t.Fatalf("ListOwned: %v", err)
		}
		if !contains(owned, mine.ID) {
			t.Errorf("ListOwned(%s) lacks %s", ours, mine.ID)
		}
		for _, inst := range owned {
			if inst.Marker.Deployment != ours {
				t.Errorf("ListOwned(%s) returned %s of deployment %q", ours, inst.ID, inst.Marker.Deployment)
			}
		}
		if contains(owned, other.ID) {
			t.Errorf("ListOwned(%s) returned %s, which belongs to %s", ours, other.ID, theirs)
		}
		if owned, err := p.ListOwned(ctx, "pt-nobody-"+randomHex(t, 4)); err != nil || len(owned) != 0 {
			t.Errorf("ListOwned(unknown deployment) = %d instances, %v; want none", len(owned), err)
		}

		if err := p.Destroy(ctx, got); err != nil {
			t.Fatalf("Destroy: %v", err)
		}
		waitNotFound(t, p, mine.ID)
		if err := p.Destroy(ctx, got); err != nil {
			t.Errorf("second Destroy: %v, want nil", err)
		}
		if owned, err := p.ListOwned(ctx, ours); err != nil || contains(owned, mine.ID) {
			t.Errorf("ListOwned after Destroy: %v, %v; want it gone", ids(owned), err)
		}
		owned, err = p.ListOwned(ctx, theirs)
		if err != nil || !contains(owned, other.ID) {
			t.Errorf("destroying %s touched %s: ListOwned(%s) = %v, %v", mine.ID, other.ID, theirs, ids(owned), err)
		}
	})

	t.Run("DestroyUnknown", func(t *testing.T) {
		p := newProvider(t)
		inst := &provisioner.Instance{Provider: p.Name(), ID: "999999999"}
		if err := p.Destroy(context.Background(), inst); err != nil {
			t.Errorf("Destroy(unknown) = %v, want nil", err)
		}
		if _, err := p.Get(context.Background(), inst.ID); !errors.Is(err, provisioner.ErrNotFound) {
			t.Errorf("Get(unknown) = %v, want ErrNotFound", err)
		}
	})
}

// create rents the cheapest fitting offer for a lease of the deployment and
// destroys it when the test ends.
func create(t *testing.T, p provisioner.Provider, class provisioner.Class, deployment string) *provisioner.Instance {
	t.Helper()
	ctx := context.Background()
	offers, err := p.Offers(ctx, class)
	if err != nil || len(offers) == 0 {
		t.Fatalf("Offers: %d offers, %v", len(offers), err)
	}
	req := provisioner.CreateRequest{
		Offer: offers[0],
		Class: class,
		Marker: provisioner.Marker{
			Deployment: deployment,
			LeaseID:    "lease" + randomHex(t, 4),
			Expires:    time.Now().Add(time.Hour).Truncate(time.Second).UTC(),
		},
		SSHPublicKey: publicKey(t),
		OnStart:      "true",
	}
	if p.Capabilities().HostKeyInjection {
		pub, priv := keyPair(t)
		req.HostKey = &provisioner.HostKeyPair{PublicKey: pub, PrivatePEM: priv}
	}
	inst, err := p.Create(ctx, req)
	if err != nil {
		t.Fatalf("Create(%s): %v", req.Offer.ID, err)
	}
	if inst == nil || inst.ID == "" {
		t.Fatalf("Create returned no instance id: %+v", inst)
	}
	t.Cleanup(func() { _ = p.Destroy(context.Background(), inst) })
	if inst.Marker.Deployment != deployment {
		t.Errorf("created instance marker = %+v, want deployment %s", inst.Marker, deployment)
	}
	return inst
}

func waitRunning(t *testing.T, p provisioner.Provider, id string) *provisioner.Instance {
	t.Helper()
	deadline := time.Now().Add(BootTimeout)
	for {
		inst, err := p.Get(context.Background(), id)
		if err != nil {
			t.Fatalf("Get(%s): %v", id, err)
		}
		if inst.ID != id {
			t.Fatalf("Get(%s) returned instance %s", id, inst.ID)
		}
		switch inst.Status {
		case provisioner.InstanceRunning:
			if inst.SSH.Host != "" {
				return inst
			}
		case provisioner.InstanceFailed, provisioner.InstanceGone:
			t.Fatalf("instance %s is %s: %s", id, inst.Status, inst.StatusMessage)
		}
		if time.Now().After(deadline) {
			t.Fatalf("instance %s not running with an endpoint after %s (status %s)", id, BootTimeout, inst.Status)
		}
		time.Sleep(PollInterval)
	}
}

// waitNotFound allows a provider to report a destroyed instance as gone for
// a while before it disappears.
func waitNotFound(t *testing.T, p provisioner.Provider, id string) {
	t.Helper()
	deadline := time.Now().Add(DestroyTimeout)
	for {
		_, err := p.Get(context.Background(), id)
		if errors.Is(err, provisioner.ErrNotFound) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("Get(%s) after Destroy = %v, want ErrNotFound", id, err)
		}
		time.Sleep(PollInterval)
	}
}

func contains(list []*provisioner.Instance, id string) bool {
	for _, inst := range list {
		if inst.ID == id {
			return true
		}
	}
	return false
}

func ids(list []*provisioner.Instance) []string {
	out := make([]string, len(list))
	for i, inst := range list {
		out[i] = inst.ID
	}
	return out
}

func randomHex(t *testing.T, n int) string {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(b)
}

func keyPair(t *testing.T) (string, []byte) {
	t.Helper()
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	sshPub, err := ssh.NewPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	block, err := ssh.MarshalPrivateKey(priv, "providertest")
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(string(ssh.MarshalAuthorizedKey(sshPub))) + " providertest", pem.EncodeToMemory(block)
}

func publicKey(t *testing.T) string {
	pub, _ := keyPair(t)
	return pub
}
