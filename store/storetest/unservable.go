package storetest

import (
	"context"
	"reflect"
	"testing"
	"time"

	"github.com/crabbox/crabbox-runner/provisioner"
)

// testUnservable: a job marked unservable reads back with its mark, is not
// demand, gets no lease from NewestQueuedJobs, is listed by UnservableJobs
// (a policy refusal is left out of the jobs reconcile asks GitHub about),
// and counts again once the mark is cleared.
func testUnservable(t *testing.T, s provisioner.Store) {
	ctx := context.Background()
	scope := provisioner.Scope{Org: "acme", InstallationID: 4}
	at := t0.Add(-time.Hour).Truncate(time.Microsecond).UTC()
	marked := &provisioner.Job{ID: 1, RunAttempt: 1, Repo: "acme/ml", Scope: scope, Class: "a100", Status: provisioner.JobQueued,
		Labels: []string{"a100"}, Visibility: provisioner.VisibilityPrivate, UnusedLeases: 2,
		Unservable: provisioner.Unservable{Kind: provisioner.UnservableUnassigned, Reason: "never assigned", At: at,
			Until: at.Add(time.Minute), Policy: "abc"}}
	refused := &provisioner.Job{ID: 2, RunAttempt: 1, Repo: "acme/pub", Scope: scope, Class: "a100", Status: provisioner.JobQueued,
		Visibility: provisioner.VisibilityPublic,
		Unservable: provisioner.Unservable{Kind: provisioner.RefusedPublic, Reason: "public", At: at.Add(time.Second)}}
	plain := &provisioner.Job{ID: 3, RunAttempt: 1, Repo: "acme/ml", Scope: scope, Class: "a100", Status: provisioner.JobQueued}
	inTx(t, s, func(tx provisioner.Tx) error {
		for _, j := range []*provisioner.Job{marked, refused, plain} {
			if err := tx.PutJob(ctx, j); err != nil {
				return err
			}
		}
		return nil
	})
	demand := func() int {
		var q int
		inTx(t, s, func(tx provisioner.Tx) error {
			var err error
			q, _, err = tx.Demand(ctx, "a100", scope.Key())
			return err
		})
		return q
	}
	got, err := s.Job(ctx, 1, 1)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got.Unservable, marked.Unservable) || got.UnusedLeases != 2 || got.Visibility != provisioner.VisibilityPrivate {
		t.Fatalf("read back: %+v %+v %d %q", got.Unservable, marked.Unservable, got.UnusedLeases, got.Visibility)
	}
	if q := demand(); q != 1 {
		t.Fatalf("demand counts %d queued jobs, want 1 (two are unservable)", q)
	}
	inTx(t, s, func(tx provisioner.Tx) error {
		jobs, err := tx.NewestQueuedJobs(ctx, "a100", scope.Key(), 10)
		if err != nil || len(jobs) != 1 || jobs[0].ID != 3 {
			t.Fatalf("newest queued jobs: %+v %v; want job 3 only", jobs, err)
		}
		return nil
	})
	all, err := s.UnservableJobs(ctx, provisioner.UnservableFilter{})
	if err != nil || len(all) != 2 || all[0].ID != 2 || all[1].ID != 1 {
		t.Fatalf("unservable jobs: %+v %v; want 2 then 1", all, err)
	}
	some, err := s.UnservableJobs(ctx, provisioner.UnservableFilter{Kinds: []provisioner.UnservableKind{provisioner.UnservableUnassigned, provisioner.UnservableGroup}})
	if err != nil || len(some) != 1 || some[0].ID != 1 {
		t.Fatalf("unservable jobs by kind: %+v %v", some, err)
	}
	if late, _ := s.UnservableJobs(ctx, provisioner.UnservableFilter{Since: at.Add(time.Millisecond)}); len(late) != 1 || late[0].ID != 2 {
		t.Fatalf("unservable since: %+v", late)
	}
	q, err := s.QueuedJobs(ctx, time.Now().Add(time.Hour))
	if err != nil || len(q) != 2 {
		t.Fatalf("queued jobs to ask GitHub about: %d %v; want 2 (not the refused one)", len(q), err)
	}
	for _, j := range q {
		if j.ID == 2 {
			t.Fatal("a job refused by policy is among the jobs reconcile asks GitHub about")
		}
	}
	// Cleared: demand again.
	got.Unservable = provisioner.Unservable{}
	inTx(t, s, func(tx provisioner.Tx) error { return tx.PutJob(ctx, got) })
	if q := demand(); q != 2 {
		t.Fatalf("demand after the mark is cleared: %d, want 2", q)
	}
}
