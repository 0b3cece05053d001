package storetest

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/crabbox/crabbox-runner/provisioner"
)

// testRerun: a lease's lost reason and a job's re-run read back;
// RerunBefore finds a re-run attempt by job id or by run and name, and
// nothing for a job never re-run; NoteLease adds an event that changes
// nothing.
func testRerun(t *testing.T, s provisioner.Store) {
	ctx := context.Background()
	scope := provisioner.Scope{Org: "acme"}
	at := t0.Truncate(time.Microsecond).UTC()
	l := sampleLease("lost1")
	l.LostReason = "preempted"
	first := &provisioner.Job{ID: 10, RunAttempt: 1, RunID: 7, Name: "train", Repo: "acme/ml", Scope: scope, Class: "a100",
		Status: provisioner.JobCompleted, Conclusion: "failure", RerunAt: at, RerunReason: "host lost: preempted"}
	sameID := &provisioner.Job{ID: 10, RunAttempt: 3, RunID: 7, Name: "train", Repo: "acme/ml", Scope: scope, Class: "a100"}
	newID := &provisioner.Job{ID: 11, RunAttempt: 2, RunID: 7, Name: "train", Repo: "acme/ml", Scope: scope, Class: "a100"}
	other := &provisioner.Job{ID: 12, RunAttempt: 1, RunID: 7, Name: "eval", Repo: "acme/ml", Scope: scope, Class: "a100"}
	otherRepo := &provisioner.Job{ID: 13, RunAttempt: 1, RunID: 7, Name: "train", Repo: "acme/web", Scope: scope, Class: "a100"}
	inTx(t, s, func(tx provisioner.Tx) error {
		if err := tx.InsertLease(ctx, l); err != nil {
			return err
		}
		return tx.PutJob(ctx, first)
	})
	got, err := s.Lease(ctx, "lost1")
	if err != nil || got.LostReason != "preempted" {
		t.Fatalf("lease %+v %v: lost reason not kept", got, err)
	}
	j, err := s.Job(ctx, 10, 1)
	if err != nil || !j.RerunAt.Equal(at) || j.RerunReason != "host lost: preempted" {
		t.Fatalf("job %+v %v: re-run not kept", j, err)
	}
	inTx(t, s, func(tx provisioner.Tx) error {
		for _, c := range []struct {
			j    *provisioner.Job
			want bool
		}{{first, true}, {sameID, true}, {newID, true}, {other, false}, {otherRepo, false}} {
			prev, err := tx.RerunBefore(ctx, c.j)
			if err != nil {
				return err
			}
			if (prev != nil) != c.want || prev != nil && (prev.ID != 10 || prev.RunAttempt != 1) {
				t.Errorf("RerunBefore(job %d attempt %d %s in %s) = %+v, want found %v", c.j.ID, c.j.RunAttempt, c.j.Name, c.j.Repo, prev, c.want)
			}
		}
		return tx.NoteLease(ctx, "lost1", "job re-run (attempt 2): host lost: preempted")
	})
	events, err := s.LeaseEvents(ctx, "lost1")
	if err != nil || len(events) == 0 {
		t.Fatalf("events %v %v", events, err)
	}
	last := events[len(events)-1]
	if last.From != l.State || last.To != l.State || !strings.HasPrefix(last.Reason, "job re-run") {
		t.Fatalf("note: %+v", last)
	}
	if got, _ := s.Lease(ctx, "lost1"); got.State != l.State {
		t.Fatalf("a note changed the state to %s", got.State)
	}
	inTx(t, s, func(tx provisioner.Tx) error {
		if err := tx.NoteLease(ctx, "nope", "x"); err == nil {
			t.Error("a note on an unknown lease was accepted")
		}
		return nil
	})
}
