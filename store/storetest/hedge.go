package storetest

import (
	"context"
	"testing"
	"time"

	"github.com/crabbox/crabbox-runner/provisioner"
)

// testHedge: HedgeOf and HedgedAt (migration 010) and PromotedFrom
// (migration 012) read back as inserted and
// as updated, and the filters on them select the hedges of a lease and
// every hedge.
func testHedge(t *testing.T, s provisioner.Store) {
	ctx := context.Background()
	first, hedge, other := sampleLease("l1"), sampleLease("l2"), sampleLease("l3")
	hedge.HedgeOf = "l1"
	at := time.UnixMicro(time.Now().UnixMicro()).UTC()
	inTx(t, s, func(tx provisioner.Tx) error {
		if err := tx.InsertLease(ctx, first); err != nil {
			return err
		}
		return tx.InsertLeases(ctx, []*provisioner.Lease{hedge, other})
	})
	got, err := s.Lease(ctx, "l2")
	if err != nil || got.HedgeOf != "l1" || !got.HedgedAt.IsZero() {
		t.Fatalf("inserted hedge: %+v %v", got, err)
	}
	inTx(t, s, func(tx provisioner.Tx) error {
		_, err := tx.UpdateLease(ctx, "l1", func(l *provisioner.Lease) { l.HedgedAt = at })
		return err
	})
	if got, err := s.Lease(ctx, "l1"); err != nil || !got.HedgedAt.Equal(at) || got.HedgeOf != "" {
		t.Fatalf("hedged_at: %+v %v, want %s", got, err, at)
	}
	for _, f := range []provisioner.LeaseFilter{{HedgeOf: "l1"}, {Hedges: true}, {Hedges: true, Class: first.Class, ScopeKey: first.Scope.Key(), States: []provisioner.State{first.State}}} {
		ls, err := s.Leases(ctx, f)
		if err != nil || len(ls) != 1 || ls[0].ID != "l2" {
			t.Fatalf("filter %+v: %v %v, want l2 alone", f, ls, err)
		}
	}
	if ls, err := s.Leases(ctx, provisioner.LeaseFilter{HedgeOf: "l3"}); err != nil || len(ls) != 0 {
		t.Fatalf("hedges of l3: %v %v", ls, err)
	}
	// A hedge that wins, or is promoted, becomes an ordinary lease.
	inTx(t, s, func(tx provisioner.Tx) error {
		_, err := tx.UpdateLease(ctx, "l2", func(l *provisioner.Lease) { l.HedgeOf, l.PromotedFrom = "", "l1" })
		return err
	})
	if got, err := s.Lease(ctx, "l2"); err != nil || got.PromotedFrom != "l1" || got.HedgeOf != "" {
		t.Fatalf("promoted hedge: %+v %v", got, err)
	}
	if got, err := s.Lease(ctx, "l3"); err != nil || got.PromotedFrom != "" {
		t.Fatalf("promoted_from of an ordinary lease: %+v %v", got, err)
	}
	if ls, err := s.Leases(ctx, provisioner.LeaseFilter{Hedges: true}); err != nil || len(ls) != 0 {
		t.Fatalf("hedges after the win: %v %v", ls, err)
	}
}
