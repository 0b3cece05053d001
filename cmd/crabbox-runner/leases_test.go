package main

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/crabbox/crabbox-runner/github/githubtest"
	"github.com/crabbox/crabbox-runner/provisioner"
)

// leases shows what serve runs; release stops it, with serve doing the
// work, even in the middle of a job.
func TestLeasesAndReleaseCommands(t *testing.T) {
	e := startServe(t, "60s", nil)
	id := e.gh.QueueJob(githubtest.JobSpec{Repo: "acme/vision", Org: "acme", Labels: []string{"self-hosted", "crabbox", "a100"},
		Name: "long", Script: "sleep 120"})
	e.waitFor("job running", 60*time.Second, func() bool {
		j, _ := e.gh.Job(id)
		return j.Status == githubtest.StatusInProgress
	})
	e.waitFor("lease busy", 10*time.Second, func() bool {
		ls := e.leases()
		return len(ls) == 1 && ls[0].State == provisioner.StateBusy
	})

	code, out, errs := runCLI(t, e.env, "leases", "--output", "json")
	if code != 0 {
		t.Fatalf("leases: %d %s", code, errs)
	}
	var got []leaseJSON
	if err := json.Unmarshal([]byte(out), &got); err != nil || len(got) != 1 {
		t.Fatalf("leases json: %v\n%s", err, out)
	}
	l := got[0]
	if l.State != "busy" || l.BoundJobID != id || l.Provider != "local" || l.InstanceID == "" || l.PricePerHour == 0 {
		t.Fatalf("lease %+v", l)
	}
	code, out, _ = runCLI(t, e.env, "leases")
	if code != 0 || !strings.Contains(out, l.ID) || !strings.Contains(out, "cost $0.89/hour") {
		t.Fatalf("leases table:\n%s", out)
	}

	code, out, errs = runCLI(t, e.env, "release", l.ID, "--reason", "test", "--wait", "60s")
	if code != 0 || !strings.Contains(out, "released: 1 of 1") {
		t.Fatalf("release: %d\n%s\n%s", code, out, errs)
	}
	if n := len(e.hosts.Live()); n != 0 {
		t.Fatalf("%d hosts still running", n)
	}
	code, out, _ = runCLI(t, e.env, "leases")
	if code != 0 || !strings.Contains(out, "no leases") {
		t.Fatalf("after release:\n%s", out)
	}
	if code, _, errs := runCLI(t, e.env, "release", "lnosuchlease"); code == 0 || !strings.Contains(errs, "not found") {
		t.Fatalf("release of an unknown lease: %d %s", code, errs)
	}
}
