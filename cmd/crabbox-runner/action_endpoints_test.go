package main

import (
	"os/user"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/crabbox/crabbox-runner/action"
	"github.com/crabbox/crabbox-runner/internal/config"
	"github.com/crabbox/crabbox-runner/providers/vast/vasttest"
	"github.com/crabbox/crabbox-runner/provisioner"
)

// The Action's start against a fake Vast whose hosts name an SSH endpoint
// on a loopback port of ours: without CRABBOX_ALLOW_PRIVATE_ENDPOINTS
// nothing connects there, every host rented is destroyed, and the step
// fails saying why; with it, the Action connects (the test can tell).
func TestActionRefusesPrivateSSHEndpoint(t *testing.T) {
	for _, allow := range []bool{false, true} {
		t.Run(map[bool]string{false: "refused", true: "allowed"}[allow], func(t *testing.T) {
			w := newActionWorld(t, false, nil, nil)
			u, err := user.Current()
			if err != nil {
				t.Fatal(err)
			}
			probe := newCountingListener(t)
			market := []vasttest.Offer{
				{ID: 9200001, MachineID: 921, GPUName: "A100 PCIE", NumGPUs: 1, GPURAM: 40960, DphBase: 0.70, StorageCost: 0.2, Reliability: 0.99, Geolocation: "Texas, US", DirectPortCount: 20, DiskSpace: 500, CUDAMaxGood: 12.6},
				{ID: 9200002, MachineID: 922, GPUName: "A100 PCIE", NumGPUs: 1, GPURAM: 40960, DphBase: 0.80, StorageCost: 0.2, Reliability: 0.99, Geolocation: "Texas, US", DirectPortCount: 20, DiskSpace: 500, CUDAMaxGood: 12.6},
			}
			fake := vasttest.New(vasttest.Options{APIKey: actionVastKey, Dir: filepath.Join(w.dir, "vast"), Offers: market, Logf: t.Logf,
				Behavior: func(int, vasttest.Offer, string) vasttest.Behavior {
					return vasttest.Behavior{SSHAt: probe.l.Addr().String()}
				}})
			t.Cleanup(fake.Close)
			w.provider = "vast"
			w.env = map[string]string{"CRABBOX_VAST_API_URL": fake.URL()}
			if allow {
				w.env["CRABBOX_ALLOW_PRIVATE_ENDPOINTS"] = "true"
			}
			actionConfigHook = func(c *config.Config) {
				c.Providers.Vast.SSHUser = u.Username
				c.Providers.Vast.MinRequestInterval = 2 * time.Millisecond
			}
			t.Cleanup(func() { actionConfigHook = nil })
			actionHook = func(env *action.Env) {
				env.Tune = func(c *provisioner.Config) { c.PollInterval = 100 * time.Millisecond }
			}
			t.Cleanup(func() { actionHook = nil })

			timeout := "30s"
			if allow {
				timeout = "8s" // the port speaks no SSH: it only has to be reached
			}
			start := w.step(map[string]string{"mode": "start", "gpu": "A100", "min-gpu-memory": "40", "max-price": "2", "timeout": timeout, "max-lifetime": "1h"})
			if start.code == 0 {
				t.Fatalf("start succeeded on a port that speaks no SSH")
			}
			if live := fake.Live(); len(live) != 0 {
				t.Fatalf("vast instances left: %+v", live)
			}
			if allow {
				if probe.n.Load() == 0 {
					t.Fatal("allowed, yet nothing connected to the endpoint")
				}
				return
			}
			if n := probe.n.Load(); n != 0 {
				t.Fatalf("%d connections reached the loopback port the hosts named", n)
			}
			want := "provider vast gave SSH endpoint " + probe.l.Addr().String() + ", a loopback address; crabbox-runner connects only to public addresses (set CRABBOX_ALLOW_PRIVATE_ENDPOINTS=true (tests only) to allow)"
			if !strings.Contains(start.stdout, "::error::") || !strings.Contains(start.stdout+start.stderr, want) {
				t.Fatalf("the step does not say why; want %q", want)
			}
			// Both offers tried, one host each, both destroyed undialled.
			if n := len(fake.RequestsFor(vasttest.OpCreate)); n != 2 {
				t.Fatalf("%d creates, want 2", n)
			}
		})
	}
}
