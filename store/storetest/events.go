package storetest

import (
	"context"
	"fmt"
	"reflect"
	"testing"

	"github.com/crabbox/crabbox-runner/provisioner"
)

// LeaseEventsOf answers for many leases what LeaseEvents answers for one,
// across more leases than one of its batches holds.
func testLeaseEventsOf(t *testing.T, s provisioner.Store) {
	ctx := context.Background()
	const n = 1203 // more than two batches of the SQL stores' 500
	var ids []string
	inTx(t, s, func(tx provisioner.Tx) error {
		for i := range n {
			l := sampleLease(fmt.Sprintf("ev%04d", i))
			l.RunnerName = "crabbox-ev-" + l.ID
			if err := tx.InsertLease(ctx, l); err != nil {
				return err
			}
			ids = append(ids, l.ID)
		}
		return nil
	})
	// Leases walk different distances, so each history is its own.
	path := []provisioner.State{provisioner.StateProvisioning, provisioner.StateBooting, provisioner.StateBootstrapping}
	for i, id := range []string{"ev0000", "ev0501", "ev1202"} {
		inTx(t, s, func(tx provisioner.Tx) error {
			for _, to := range path[:i+1] {
				if _, err := tx.Transition(ctx, id, to, "step "+string(to), nil); err != nil {
					return err
				}
			}
			return nil
		})
	}
	got, err := s.LeaseEventsOf(ctx, append(ids, "no-such-lease"))
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != n {
		t.Fatalf("histories of %d leases, want %d", len(got), n)
	}
	if _, ok := got["no-such-lease"]; ok {
		t.Error("a lease that does not exist has a history")
	}
	for _, id := range []string{"ev0000", "ev0001", "ev0501", "ev0999", "ev1202"} {
		want, err := s.LeaseEvents(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(got[id], want) {
			t.Errorf("%s: LeaseEventsOf %+v, LeaseEvents %+v", id, got[id], want)
		}
	}
	if h := got["ev1202"]; len(h) != 4 || h[0].To != provisioner.StatePending || h[3].To != provisioner.StateBootstrapping {
		t.Errorf("ev1202's history: %+v", h)
	}
	if empty, err := s.LeaseEventsOf(ctx, nil); err != nil || len(empty) != 0 {
		t.Errorf("no ids: %v, %v", empty, err)
	}
}
