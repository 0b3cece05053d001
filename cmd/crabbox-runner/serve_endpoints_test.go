package main

import (
	"encoding/json"
	"fmt"
	"net"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/crabbox/crabbox-runner/github/githubtest"
	"github.com/crabbox/crabbox-runner/providers/vast/vasttest"
	"github.com/crabbox/crabbox-runner/provisioner"
)

// countingListener accepts TCP connections on loopback and counts them:
// what a service on our network would see of a probe.
type countingListener struct {
	l net.Listener
	n atomic.Int64
}

func newCountingListener(t *testing.T) *countingListener {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	c := &countingListener{l: l}
	t.Cleanup(func() { l.Close() })
	go func() {
		for {
			conn, err := l.Accept()
			if err != nil {
				return
			}
			c.n.Add(1)
			conn.Close()
		}
	}()
	return c
}

// Every Vast host of this market reports its SSH endpoint on a loopback
// port of ours, and the config does not allow private endpoints: serve
// never connects there. Each lease fails with the reason, its host is
// destroyed, its machine avoided, and once the market's fitting offers
// are used up no host is rented again for the job.
func TestServeRefusesPrivateSSHEndpoint(t *testing.T) {
	probe := newCountingListener(t)
	e := startServeVastWith(t, "60s", func(int, vasttest.Offer, string) vasttest.Behavior {
		return vasttest.Behavior{SSHAt: probe.l.Addr().String()}
	}, false)
	e.gh.QueueJob(githubtest.JobSpec{Repo: "acme/vision", Org: "acme", Labels: []string{"self-hosted", "crabbox", "A100"},
		Name: "train", Script: "echo never"})
	// The class fits offers 8000001 to 8000004 (serve_vast_test.go).
	e.waitFor("the four fitting offers refused", 60*time.Second, func() bool {
		time.Sleep(100 * time.Millisecond)
		n := 0
		for _, l := range e.leases() {
			if l.State == provisioner.StateReleased {
				n++
			}
		}
		return n == 4
	})
	e.waitFor("every refused host destroyed", 30*time.Second, func() bool {
		time.Sleep(50 * time.Millisecond)
		return len(e.vast.Live()) == 0
	})
	// No fifth host: the refused machines are avoided.
	time.Sleep(2 * time.Second)
	if n := len(e.vast.RequestsFor(vasttest.OpCreate)); n != 4 {
		t.Errorf("%d creates, want 4 (one per fitting offer)", n)
	}
	if n := probe.n.Load(); n != 0 {
		t.Fatalf("%d connections reached the loopback port the hosts named", n)
	}

	want := fmt.Sprintf("provider vast gave SSH endpoint %s, a loopback address; crabbox-runner connects only to public addresses "+
		"(set providers.vast.allow_private_endpoints to allow)", probe.l.Addr())
	machines := map[string]bool{}
	for _, l := range e.leases() {
		if l.MachineID == "" {
			// The job's next lease, waiting for an offer the market lacks.
			continue
		}
		if l.Error != want {
			t.Errorf("lease %s on machine %s: error %q, want %q", l.ID, l.MachineID, l.Error, want)
		}
		machines[l.MachineID] = true
	}
	if len(machines) != 4 {
		t.Errorf("machines rented: %v", machines)
	}
	// What an operator sees: `leases` and the log say why.
	code, out, errs := runCLI(t, e.env, "leases", "--all", "--output", "json")
	var rows []struct{ Error string }
	if code != 0 || json.Unmarshal([]byte(out), &rows) != nil || len(rows) < 4 || !strings.Contains(out, want) {
		t.Errorf("leases: exit %d, %s %s", code, out, errs)
	}
	if !strings.Contains(e.logs.String(), "a loopback address; crabbox-runner connects only to public addresses") {
		t.Errorf("the log does not say why the leases failed")
	}
	if strings.Contains(e.logs.String(), "allow_private_endpoints is on") {
		t.Error("serve warned of an allowance the config does not make")
	}
	if m := e.get("/metrics"); !strings.Contains(m, `crabbox_ssh_endpoints_refused_total{provider="vast"} 4`) {
		t.Errorf("/metrics: %s", grepLines(m, "crabbox_ssh_endpoints_refused_total"))
	}
}

// The same market with providers.vast.allow_private_endpoints: serve
// connects to the port (which speaks no SSH): the test above can tell.
func TestServeAllowsPrivateSSHEndpointWhenConfigured(t *testing.T) {
	probe := newCountingListener(t)
	e := startServeVastWith(t, "60s", func(int, vasttest.Offer, string) vasttest.Behavior {
		return vasttest.Behavior{SSHAt: probe.l.Addr().String()}
	}, true)
	e.gh.QueueJob(githubtest.JobSpec{Repo: "acme/vision", Org: "acme", Labels: []string{"self-hosted", "crabbox", "A100"},
		Name: "train", Script: "echo never"})
	e.waitFor("serve connecting to the allowed endpoint", 30*time.Second, func() bool {
		time.Sleep(50 * time.Millisecond)
		return probe.n.Load() > 0
	})
	for _, l := range e.leases() {
		if strings.Contains(l.Error, "connects only to public addresses") {
			t.Fatalf("lease %s refused: %s", l.ID, l.Error)
		}
	}
	if !strings.Contains(e.logs.String(), "providers.vast.allow_private_endpoints is on") {
		t.Error("serve did not warn at start that Vast hosts may name private addresses")
	}
}
