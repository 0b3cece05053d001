package github_test

import (
	"errors"
	"strconv"
	"strings"
	"testing"

	"github.com/crabbox/crabbox-runner/github/githubtest"
	"github.com/crabbox/crabbox-runner/provisioner"
)

func TestRerunJob(t *testing.T) {
	fake, c, rec := modes[0].setup(t) // token mode
	ctx := ctxFor(t)
	scope := provisioner.Scope{Org: "acme"}
	ids := fake.QueueRun(githubtest.JobSpec{Repo: "acme/app", Org: "acme", Labels: []string{"gpu"}, Name: "a"},
		githubtest.JobSpec{Repo: "acme/app", Org: "acme", Labels: []string{"gpu"}, Name: "b"})
	if err := fake.CancelJob(ids[0]); err != nil {
		t.Fatal(err)
	}
	// The other job still queued: the run runs, ask again later.
	err := c.RerunJob(ctx, scope, "acme/app", ids[0])
	if !errors.Is(err, provisioner.ErrRerunNotYet) || errors.Is(err, provisioner.ErrRerunRefused) {
		t.Fatalf("re-run while the run runs: %v", err)
	}
	if err := fake.CancelJob(ids[1]); err != nil {
		t.Fatal(err)
	}
	if err := c.RerunJob(ctx, scope, "acme/app", ids[0]); err != nil {
		t.Fatalf("re-run: %v", err)
	}
	if got := fake.Reruns(); len(got) != 1 || got[0] != ids[0] {
		t.Fatalf("the fake re-ran %v", got)
	}
	if n := rec.count("POST /repos/acme/app/actions/jobs/" + strconv.FormatInt(ids[0], 10) + "/rerun"); n != 2 {
		t.Fatalf("%d re-run requests sent, want 2", n)
	}
	// That attempt is replaced now: refused for good.
	if err := c.RerunJob(ctx, scope, "acme/app", ids[0]); !errors.Is(err, provisioner.ErrRerunRefused) {
		t.Fatalf("re-run of a replaced attempt: %v", err)
	}
	if err := c.RerunJob(ctx, scope, "acme/app", ids[0]+999); !errors.Is(err, provisioner.ErrNotFound) {
		t.Fatalf("re-run of an unknown job: %v", err)
	}
	if err := c.RerunJob(ctx, scope, "acme", ids[0]); err == nil {
		t.Fatal("a repository that is not owner/name was accepted")
	}
}

// An App installation without Actions write: refused for good, with an
// error that names the permission.
func TestRerunJobWithoutActionsWrite(t *testing.T) {
	fake, c, _ := modes[1].setup(t) // App mode: the fake's installations have actions: read
	ctx := ctxFor(t)
	id := fake.QueueJob(githubtest.JobSpec{Repo: "acme/app", Org: "acme", Labels: []string{"gpu"}})
	if err := fake.CancelJob(id); err != nil {
		t.Fatal(err)
	}
	err := c.RerunJob(ctx, provisioner.Scope{Org: "acme", InstallationID: 11}, "acme/app", id)
	if !errors.Is(err, provisioner.ErrRerunRefused) || !strings.Contains(err.Error(), "Actions write permission") ||
		!strings.Contains(err.Error(), "actions=write") {
		t.Fatalf("re-run without actions: write: %v", err)
	}
	if len(fake.Reruns()) != 0 {
		t.Fatal("the fake re-ran the job")
	}
}
