package storetest

import (
	"context"
	"testing"

	"github.com/crabbox/crabbox-runner/provisioner"
)

// testLostReason: LostReason and Interruptible (migration 008) read back as
// inserted and as updated, with the release in the same transaction.
func testLostReason(t *testing.T, s provisioner.Store) {
	ctx := context.Background()
	l := sampleLease("l1")
	l.Interruptible = true
	inTx(t, s, func(tx provisioner.Tx) error { return tx.InsertLease(ctx, l) })
	got, err := s.Lease(ctx, "l1")
	if err != nil || !got.Interruptible || got.LostReason != "" {
		t.Fatalf("inserted: %+v %v", got, err)
	}
	inTx(t, s, func(tx provisioner.Tx) error {
		if _, err := tx.UpdateLease(ctx, "l1", func(l *provisioner.Lease) { l.LostReason = provisioner.LostOutbid }); err != nil {
			return err
		}
		_, err := tx.Transition(ctx, "l1", provisioner.StateReleasing, "host lost: outbid", nil)
		return err
	})
	got, err = s.Lease(ctx, "l1")
	if err != nil || got.LostReason != provisioner.LostOutbid || !got.Interruptible || got.State != provisioner.StateReleasing {
		t.Fatalf("updated: %+v %v", got, err)
	}
	other := sampleLease("l2")
	inTx(t, s, func(tx provisioner.Tx) error { return tx.InsertLeases(ctx, []*provisioner.Lease{other}) })
	if got, err := s.Lease(ctx, "l2"); err != nil || got.Interruptible || got.LostReason != "" {
		t.Fatalf("batch insert: %+v %v", got, err)
	}
}
