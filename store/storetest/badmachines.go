package storetest

import (
	"context"
	"testing"
	"time"

	"github.com/crabbox/crabbox-runner/provisioner"
)

// testBadMachines: a mark is read back until it runs out; a later mark on
// the same machine extends it, keeps the first mark's time and counts up,
// and never shortens it; a mark on a machine whose mark ran out starts
// over; the same machine id of another provider is another machine.
func testBadMachines(t *testing.T, s provisioner.Store) {
	ctx := context.Background()
	mark := func(m provisioner.BadMachine) {
		t.Helper()
		inTx(t, s, func(tx provisioner.Tx) error { return tx.MarkBadMachine(ctx, m) })
	}
	read := func(now time.Time) []provisioner.BadMachine {
		t.Helper()
		got, err := s.BadMachines(ctx, now)
		if err != nil {
			t.Fatal(err)
		}
		return got
	}
	mark(provisioner.BadMachine{Provider: "vast", Machine: "4242", Until: t0.Add(24 * time.Hour), Reason: "boot timeout", LeaseID: "l1", LastAt: t0})
	mark(provisioner.BadMachine{Provider: "lambda", Machine: "gpu_1x_a100@us-east-1", Until: t0.Add(time.Hour), Reason: "GPU check failed", LeaseID: "l2", LastAt: t0})
	got := read(t0)
	if len(got) != 2 || got[0].Provider != "lambda" || got[1].Provider != "vast" {
		t.Fatalf("marks %+v, want lambda's and vast's, by provider", got)
	}
	v := got[1]
	if v.Machine != "4242" || !v.Until.Equal(t0.Add(24*time.Hour)) || v.Reason != "boot timeout" || v.LeaseID != "l1" ||
		!v.FirstAt.Equal(t0) || !v.LastAt.Equal(t0) || v.Marks != 1 {
		t.Fatalf("vast mark %+v", v)
	}

	// A second failure two hours later: later end, latest reason, first time kept.
	t1 := t0.Add(2 * time.Hour)
	mark(provisioner.BadMachine{Provider: "vast", Machine: "4242", Until: t1.Add(24 * time.Hour), Reason: "GPU check failed", LeaseID: "l3", LastAt: t1})
	// A mark with an earlier end (a shorter TTL configured since) does not shorten it.
	mark(provisioner.BadMachine{Provider: "vast", Machine: "4242", Until: t1.Add(time.Hour), Reason: "SSH endpoint refused", LeaseID: "l4", LastAt: t1})
	got = read(t1)
	v = got[len(got)-1]
	if !v.Until.Equal(t1.Add(24*time.Hour)) || v.Reason != "SSH endpoint refused" || v.LeaseID != "l4" ||
		!v.FirstAt.Equal(t0) || !v.LastAt.Equal(t1) || v.Marks != 3 {
		t.Fatalf("vast mark after two more %+v", v)
	}

	// Another provider's machine of the same id is another machine.
	mark(provisioner.BadMachine{Provider: "local", Machine: "4242", Until: t1.Add(time.Minute), LastAt: t1})
	if got = read(t1.Add(-time.Hour - time.Second)); len(got) != 3 {
		t.Fatalf("marks %+v, want 3", got)
	}

	// Past its end a mark is not read: lambda's ran out at t0+1h, local's
	// at t1+1m.
	if got = read(t1); len(got) != 2 || got[0].Provider != "local" {
		t.Fatalf("marks at t1 %+v, want local's and vast's", got)
	}
	if got = read(t1.Add(2 * time.Minute)); len(got) != 1 || got[0].Provider != "vast" {
		t.Fatalf("marks after the short ones ran out %+v, want vast's only", got)
	}
	// A machine marked again after its mark ran out starts over.
	t2 := t0.Add(3 * time.Hour)
	mark(provisioner.BadMachine{Provider: "lambda", Machine: "gpu_1x_a100@us-east-1", Until: t2.Add(time.Hour), Reason: "boot timeout", LeaseID: "l5", LastAt: t2})
	got = read(t2)
	if got[0].Provider != "lambda" || got[0].Marks != 1 || !got[0].FirstAt.Equal(t2) || !got[0].Until.Equal(t2.Add(time.Hour)) {
		t.Fatalf("lambda mark marked again after it ran out %+v", got[0])
	}

	// Pruning deletes the rows that ran out, in batches, and nothing else.
	ok := false
	var pruned int
	inTx(t, s, func(tx provisioner.Tx) error {
		p, is := tx.(provisioner.BadMachinePruner)
		if !is {
			return nil
		}
		ok = true
		var err error
		pruned, err = p.PruneBadMachines(ctx, t2.Add(2*time.Hour), 1000)
		return err
	})
	if !ok {
		t.Fatal("the store's Tx does not prune bad machines")
	}
	// At t2+2h: local's (t1+1m) and lambda's (t2+1h) ran out; vast's (t1+24h) holds.
	if pruned != 2 {
		t.Fatalf("pruned %d, want 2", pruned)
	}
	if got = read(t0); len(got) != 1 || got[0].Provider != "vast" {
		t.Fatalf("marks left after pruning %+v, want vast's only", got)
	}
}
