package storetest

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/crabbox/crabbox-runner/provisioner"
)

// testWarm: Lease.Warm (migration 011) reads back as inserted, one by one
// and in a batch, and survives updates and transitions; NewestJob names
// the class's job that arrived last, whatever its status and scope.
func testWarm(t *testing.T, s provisioner.Store) {
	ctx := context.Background()
	l := sampleLease("w1")
	l.Warm, l.JobID, l.RunAttempt = true, 0, 0
	inTx(t, s, func(tx provisioner.Tx) error { return tx.InsertLease(ctx, l) })
	if got, err := s.Lease(ctx, "w1"); err != nil || !got.Warm {
		t.Fatalf("inserted: %+v %v", got, err)
	}
	inTx(t, s, func(tx provisioner.Tx) error {
		if _, err := tx.UpdateLease(ctx, "w1", func(l *provisioner.Lease) { l.Error = "x" }); err != nil {
			return err
		}
		_, err := tx.Transition(ctx, "w1", provisioner.StateProvisioning, "provisioning started", nil)
		return err
	})
	if got, err := s.Lease(ctx, "w1"); err != nil || !got.Warm || got.State != provisioner.StateProvisioning {
		t.Fatalf("updated: %+v %v", got, err)
	}
	batch := []*provisioner.Lease{sampleLease("o1"), sampleLease("w2")}
	batch[1].Warm = true
	inTx(t, s, func(tx provisioner.Tx) error { return tx.InsertLeases(ctx, batch) })
	if got, err := s.Lease(ctx, "o1"); err != nil || got.Warm {
		t.Fatalf("ordinary lease reads back warm: %+v %v", got, err)
	}
	if got, err := s.Lease(ctx, "w2"); err != nil || !got.Warm {
		t.Fatalf("batch insert: %+v %v", got, err)
	}

	if _, err := s.NewestJob(ctx, "a100"); !errors.Is(err, provisioner.ErrNotFound) {
		t.Fatalf("no job yet: %v", err)
	}
	jobs := []*provisioner.Job{
		{ID: 1, RunAttempt: 1, Repo: "acme/ml", Scope: provisioner.Scope{Org: "acme", InstallationID: 9}, Class: "a100", Status: provisioner.JobCompleted, CreatedAt: t0},
		{ID: 2, RunAttempt: 1, Repo: "bob/x", Scope: provisioner.Scope{Repo: "bob/x", InstallationID: 11}, Class: "a100", Status: provisioner.JobCompleted, CreatedAt: t0.Add(time.Minute)},
		{ID: 3, RunAttempt: 1, Repo: "acme/ml", Scope: provisioner.Scope{Org: "acme", InstallationID: 9}, Class: "h100", Status: provisioner.JobQueued, CreatedAt: t0.Add(2 * time.Minute)},
	}
	inTx(t, s, func(tx provisioner.Tx) error {
		for _, j := range jobs {
			if err := tx.PutJob(ctx, j); err != nil {
				return err
			}
		}
		return nil
	})
	j, err := s.NewestJob(ctx, "a100")
	if err != nil || j.ID != 2 || j.Scope.Repo != "bob/x" || j.Scope.InstallationID != 11 {
		t.Fatalf("newest a100 job: %+v %v", j, err)
	}
	inTx(t, s, func(tx provisioner.Tx) error {
		j, err := tx.NewestJob(ctx, "h100")
		if err != nil || j.ID != 3 {
			t.Errorf("newest h100 job in a transaction: %+v %v", j, err)
		}
		return nil
	})
}
