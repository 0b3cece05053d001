package github_test

import (
	"errors"
	"testing"
	"time"

	"github.com/crabbox/crabbox-runner/github/githubtest"
	"github.com/crabbox/crabbox-runner/provisioner"
)

func TestJobStatusScopesAndRedeliverFailed(t *testing.T) {
	fake, c, _ := modes[1].setup(t) // App mode
	ctx := ctxFor(t)
	rc, url := newReceiver(t)
	fake.SetWebhook(url, []byte("secret"))
	start := time.Now().Add(-2 * time.Second)

	fake.SetDropDeliveries(func(d githubtest.Delivery) bool { return !d.Redelivery })
	id := fake.QueueJob(githubtest.JobSpec{Repo: "acme/app", Org: "acme", Labels: []string{"gpu"}})
	ds, err := fake.WaitDeliveries(ctx, 1)
	if err != nil {
		t.Fatal(err)
	}

	ev, err := c.JobStatus(ctx, provisioner.Scope{Org: "acme"}, "acme/app", id)
	if err != nil || ev.Action != "queued" || ev.JobID != id || ev.Repo != "acme/app" || ev.Org != "acme" {
		t.Fatalf("JobStatus = %+v, %v", ev, err)
	}
	if _, err := c.JobStatus(ctx, provisioner.Scope{Org: "acme"}, "acme/app", id+999); !errors.Is(err, provisioner.ErrNotFound) {
		t.Fatalf("JobStatus(unknown) = %v", err)
	}

	scopes, err := c.Scopes(ctx)
	if err != nil || len(scopes) == 0 {
		t.Fatalf("Scopes = %+v, %v", scopes, err)
	}
	for _, s := range scopes {
		if s.Org == "" || s.InstallationID == 0 {
			t.Fatalf("scope %+v", s)
		}
	}

	n, err := c.RedeliverFailed(ctx, start)
	if err != nil || n != 1 {
		t.Fatalf("RedeliverFailed = %d, %v", n, err)
	}
	if _, err := fake.WaitDeliveries(ctx, 2); err != nil {
		t.Fatal(err)
	}
	if got := rc.got(ds[0].GUID); got != 1 {
		t.Fatalf("redelivered %d times", got)
	}
	// Delivered now; and a delivery redelivered a moment ago is not asked
	// for again either way.
	if n, err := c.RedeliverFailed(ctx, start); err != nil || n != 0 {
		t.Fatalf("second pass = %d, %v", n, err)
	}
}
