package main

import (
	"strings"
	"testing"
	"time"

	"github.com/crabbox/crabbox-runner/github/githubtest"
	"github.com/crabbox/crabbox-runner/providers/vast/vasttest"
)

// serve's gc pass, every second, against a Vast whose listing lags its
// creates by longer than the job takes (vasttest.Options.ListLag: nothing
// says how soon Vast lists a new instance): the lease is never failed as
// "host vanished" (gc asks for the instance by id before it fails a lease,
// and leaves a lease alone that got its instance around the listing), so
// the job runs on the one host rented for it. The job runs 10 s, so that
// passes fall while the lease is busy, where only the ask by id saves it.
func TestServeGCWithALaggingListing(t *testing.T) {
	e := startServeVastOpts(t, vastE2EOptions{bootTimeout: "60s", allowPrivate: true, runningAfter: 2 * time.Second,
		listLag: time.Hour, extraConfig: "reconcile: {gc_interval: 1s}\n",
		behave: func(int, vasttest.Offer, string) vasttest.Behavior { return vasttest.Behavior{} }})
	id := e.gh.QueueJob(githubtest.JobSpec{Repo: "acme/vision", Org: "acme", Labels: []string{"self-hosted", "crabbox", "A100"},
		Name: "train", Script: `sleep 10; echo trained`})
	job := e.waitJob(id)
	if job.Conclusion != "success" {
		t.Fatalf("job: %+v", job)
	}
	e.waitFor("every instance destroyed", 60*time.Second, func() bool { return len(e.vast.Live()) == 0 })
	ls := e.leases()
	if len(ls) != 1 {
		t.Fatalf("%d leases, want 1: %+v", len(ls), ls)
	}
	if ls[0].ReleaseReason == "host vanished" || ls[0].Error != "" {
		t.Errorf("lease released for %q (%s)", ls[0].ReleaseReason, ls[0].Error)
	}
	logs := e.logs.String()
	if !strings.Contains(logs, `"msg":"gc action skipped"`) {
		t.Error("no gc pass found the lease missing from the listing: the test tested nothing")
	}
	if strings.Contains(logs, "its host vanished") {
		t.Error("gc failed a lease whose host was there")
	}
}
