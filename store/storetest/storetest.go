// Package storetest is the test suite every provisioner.Store passes, so
// that SQLite and PostgreSQL behave the same for the provisioner.
package storetest

import (
	"context"
	"errors"
	"reflect"
	"testing"
	"time"

	"github.com/crabbox/crabbox-runner/provisioner"
)

// Run runs the suite; newStore returns an empty, migrated store of its own
// to each case (the cases run in parallel).
func Run(t *testing.T, newStore func(t *testing.T) provisioner.Store) {
	tests := map[string]func(*testing.T, provisioner.Store){
		"LeaseRoundTrip":       testLeaseRoundTrip,
		"Transitions":          testTransitions,
		"Deduplication":        testDeduplication,
		"JobsAndDemand":        testJobsAndDemand,
		"RollbackLosesAll":     testRollback,
		"EnqueueBeforeStart":   testEnqueueBeforeStart,
		"LeaseFilters":         testLeaseFilters,
		"UpdateKeepsTheState":  testUpdateKeepsState,
		"QueuedJobsAndScopes":  testQueuedJobsAndScopes,
		"NewestQueuedJobs":     testNewestQueuedJobs,
		"DemandFollowsChanges": testDemandFollowsChanges,
		"InsertLeases":         testInsertLeases,
		"RecordEvent":          testRecordEvent,
		"Unservable":           testUnservable,
		"Rerun":                testRerun,        // rerun.go
		"PruneEvents":          testPruneEvents,  // retention.go
		"PruneHistory":         testPruneHistory, // retention.go
		"LostReason":           testLostReason,   // lost.go
		"Hedge":                testHedge,        // hedge.go
		"Warm":                 testWarm,         // warm.go

		"BadMachines": testBadMachines, // badmachines.go

		"LeaseEventsOf": testLeaseEventsOf, // events.go
		// concurrency.go: what replicas sharing one database rely on.
		"LockedLeaseWaits":     testLockedLeaseWaits,
		"ConcurrentSameMove":   testConcurrentSameMove,
		"ConcurrentMovesChain": testConcurrentMovesChain,
		"ConcurrentDedupe":     testConcurrentDedupe,
		"ConcurrentDemand":     testConcurrentDemand,
	}
	for name, fn := range tests {
		t.Run(name, func(t *testing.T) {
			// Every case has a store of its own, so they can run at once.
			t.Parallel()
			fn(t, newStore(t))
		})
	}
}

func inTx(t *testing.T, s provisioner.Store, fn func(tx provisioner.Tx) error) {
	t.Helper()
	if err := s.InTx(context.Background(), fn); err != nil {
		t.Fatal(err)
	}
}

var t0 = time.Date(2026, 11, 22, 10, 0, 0, 0, time.UTC)

func sampleLease(id string) *provisioner.Lease {
	return &provisioner.Lease{
		ID: id, Class: "a100", Scope: provisioner.Scope{Org: "acme", InstallationID: 9}, State: provisioner.StatePending,
		Provider: "vast", OfferID: "123", GPU: "A100 SXM4", PricePerHour: 1.25, Region: "US",
		InstanceID: "i-1", SSH: provisioner.Endpoint{Host: "127.0.0.1", Port: 2222, User: "root"},
		HostKey: "ssh-ed25519 AAAA", RunnerName: "crabbox-x-" + id, RunnerID: 77, JobID: 42, RunAttempt: 1,
		Attempts: 2, CreatedAt: t0, BootDeadline: t0.Add(time.Minute), ExpiresAt: t0.Add(time.Hour),
		GPUCount: 4, GPUMemoryGB: 80, GPUCheck: "gpu_count: found 3× NVIDIA A100-SXM4-80GB (81920 MiB), wanted 4 GPU(s), as the offer says",
	}
}

func testLeaseRoundTrip(t *testing.T, s provisioner.Store) {
	ctx := context.Background()
	want := sampleLease("l1")
	inTx(t, s, func(tx provisioner.Tx) error { return tx.InsertLease(ctx, want) })
	got, err := s.Lease(ctx, "l1")
	if err != nil {
		t.Fatal(err)
	}
	want.UpdatedAt, want.StateChangedAt = got.UpdatedAt, got.StateChangedAt
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("round trip:\n got %+v\nwant %+v", got, want)
	}
	if _, err := s.Lease(ctx, "nope"); !errors.Is(err, provisioner.ErrNotFound) {
		t.Fatalf("missing lease: %v", err)
	}
	inTx(t, s, func(tx provisioner.Tx) error {
		l, err := tx.LeaseByRunnerName(ctx, "crabbox-x-l1")
		if err != nil || l.ID != "l1" {
			t.Fatalf("by runner name: %v %v", l, err)
		}
		return nil
	})
	// runner names are unique
	err = s.InTx(ctx, func(tx provisioner.Tx) error {
		dup := sampleLease("l2")
		dup.RunnerName = "crabbox-x-l1"
		return tx.InsertLease(ctx, dup)
	})
	if err == nil {
		t.Fatal("a second lease with the same runner name was stored")
	}
}

func testTransitions(t *testing.T, s provisioner.Store) {
	ctx := context.Background()
	inTx(t, s, func(tx provisioner.Tx) error { return tx.InsertLease(ctx, sampleLease("l1")) })
	path := []provisioner.State{provisioner.StateProvisioning, provisioner.StateBooting, provisioner.StateBootstrapping,
		provisioner.StateIdle, provisioner.StateBusy, provisioner.StateReleasing, provisioner.StateReleased}
	for _, to := range path {
		inTx(t, s, func(tx provisioner.Tx) error {
			_, err := tx.Transition(ctx, "l1", to, "step", func(l *provisioner.Lease) { l.Error = string(to) })
			return err
		})
	}
	l, _ := s.Lease(ctx, "l1")
	if l.State != provisioner.StateReleased || l.Error != "released" {
		t.Fatalf("after the path: %s %q", l.State, l.Error)
	}
	// A refused move changes nothing, not even the mutation.
	err := s.InTx(ctx, func(tx provisioner.Tx) error {
		_, err := tx.Transition(ctx, "l1", provisioner.StateIdle, "back", func(l *provisioner.Lease) { l.Error = "changed" })
		return err
	})
	if !provisioner.IsTransitionError(err) {
		t.Fatalf("released → idle: %v", err)
	}
	l, _ = s.Lease(ctx, "l1")
	if l.State != provisioner.StateReleased || l.Error != "released" {
		t.Fatalf("refused transition changed the lease: %s %q", l.State, l.Error)
	}
	events, err := s.LeaseEvents(ctx, "l1")
	if err != nil {
		t.Fatal(err)
	}
	if len(events) != len(path)+1 || events[0].To != provisioner.StatePending || events[len(events)-1].To != provisioner.StateReleased {
		t.Fatalf("events: %+v", events)
	}
}

func testUpdateKeepsState(t *testing.T, s provisioner.Store) {
	ctx := context.Background()
	inTx(t, s, func(tx provisioner.Tx) error { return tx.InsertLease(ctx, sampleLease("l1")) })
	inTx(t, s, func(tx provisioner.Tx) error {
		_, err := tx.UpdateLease(ctx, "l1", func(l *provisioner.Lease) {
			l.State = provisioner.StateReleased // ignored: state changes only by Transition
			l.RunnerID = 99
		})
		return err
	})
	l, _ := s.Lease(ctx, "l1")
	if l.State != provisioner.StatePending || l.RunnerID != 99 {
		t.Fatalf("update: %s %d", l.State, l.RunnerID)
	}
}

func testDeduplication(t *testing.T, s provisioner.Store) {
	ctx := context.Background()
	inTx(t, s, func(tx provisioner.Tx) error {
		for i, want := range []bool{true, false} {
			fresh, err := tx.RecordDelivery(ctx, "guid-1", "workflow_job", "queued", t0)
			if err != nil || fresh != want {
				t.Fatalf("delivery %d: fresh=%v err=%v", i, fresh, err)
			}
			fresh, err = tx.RecordJobEvent(ctx, 42, 1, "queued", "guid-1", t0)
			if err != nil || fresh != want {
				t.Fatalf("job event %d: fresh=%v err=%v", i, fresh, err)
			}
		}
		fresh, err := tx.RecordJobEvent(ctx, 42, 2, "queued", "guid-2", t0)
		if err != nil || !fresh {
			t.Fatalf("another attempt is another event: %v %v", fresh, err)
		}
		return nil
	})
}

func testJobsAndDemand(t *testing.T, s provisioner.Store) {
	ctx := context.Background()
	scope := provisioner.Scope{Org: "acme"}
	inTx(t, s, func(tx provisioner.Tx) error {
		for i := int64(1); i <= 3; i++ {
			j := &provisioner.Job{ID: i, RunAttempt: 1, Repo: "acme/ml", Scope: scope, Class: "a100",
				Labels: []string{"self-hosted", "a100"}, Status: provisioner.JobQueued}
			if err := tx.PutJob(ctx, j); err != nil {
				return err
			}
		}
		// One job moves on; one lease of each available state and some that are not.
		j, err := tx.Job(ctx, 3, 1)
		if err != nil {
			return err
		}
		j.Status, j.RunnerName = provisioner.JobInProgress, "r"
		if err := tx.PutJob(ctx, j); err != nil {
			return err
		}
		for i, st := range []provisioner.State{provisioner.StatePending, provisioner.StateIdle, provisioner.StateBusy, provisioner.StateReleased} {
			l := sampleLease(string(rune('a' + i)))
			l.Scope, l.State = scope, st
			if err := tx.InsertLease(ctx, l); err != nil {
				return err
			}
		}
		flagged := sampleLease("z")
		flagged.Scope, flagged.State, flagged.ReleaseReason = scope, provisioner.StateBooting, "going"
		return tx.InsertLease(ctx, flagged)
	})
	inTx(t, s, func(tx provisioner.Tx) error {
		q, a, err := tx.Demand(ctx, "a100", scope.Key())
		if err != nil || q != 2 || a != 2 {
			t.Fatalf("demand: queued %d available %d err %v; want 2 and 2", q, a, err)
		}
		q, a, _ = tx.Demand(ctx, "a100", "org:other")
		if q != 0 || a != 0 {
			t.Fatalf("other scope: %d %d", q, a)
		}
		return nil
	})
	j, err := s.Job(ctx, 3, 1)
	if err != nil || j.Status != provisioner.JobInProgress || j.RunnerName != "r" || len(j.Labels) != 2 || j.Scope != scope {
		t.Fatalf("job: %+v %v", j, err)
	}
	if _, err := s.Job(ctx, 99, 1); !errors.Is(err, provisioner.ErrNotFound) {
		t.Fatalf("missing job: %v", err)
	}
}

func testRollback(t *testing.T, s provisioner.Store) {
	ctx := context.Background()
	boom := errors.New("boom")
	err := s.InTx(ctx, func(tx provisioner.Tx) error {
		if _, err := tx.RecordDelivery(ctx, "g", "workflow_job", "queued", t0); err != nil {
			return err
		}
		if err := tx.InsertLease(ctx, sampleLease("l1")); err != nil {
			return err
		}
		return boom
	})
	if !errors.Is(err, boom) {
		t.Fatalf("InTx returned %v", err)
	}
	if _, err := s.Lease(ctx, "l1"); !errors.Is(err, provisioner.ErrNotFound) {
		t.Fatalf("rolled back lease is there: %v", err)
	}
	inTx(t, s, func(tx provisioner.Tx) error {
		fresh, err := tx.RecordDelivery(ctx, "g", "workflow_job", "queued", t0)
		if !fresh {
			t.Fatalf("rolled back delivery is there: %v", err)
		}
		return err
	})
}

type noopArgs struct{}

func (noopArgs) Kind() string { return "noop" }

func testEnqueueBeforeStart(t *testing.T, s provisioner.Store) {
	err := s.InTx(context.Background(), func(tx provisioner.Tx) error {
		return tx.Enqueue(context.Background(), noopArgs{}, nil)
	})
	if !errors.Is(err, provisioner.ErrQueueNotStarted) {
		t.Fatalf("enqueue before start: %v", err)
	}
}

func testLeaseFilters(t *testing.T, s provisioner.Store) {
	ctx := context.Background()
	inTx(t, s, func(tx provisioner.Tx) error {
		for i, st := range []provisioner.State{provisioner.StatePending, provisioner.StateIdle, provisioner.StateIdle} {
			l := sampleLease(string(rune('a' + i)))
			l.State = st
			l.CreatedAt = t0.Add(time.Duration(i) * time.Second)
			if i == 2 {
				l.Class = "h100"
			}
			if err := tx.InsertLease(ctx, l); err != nil {
				return err
			}
		}
		return nil
	})
	got, err := s.Leases(ctx, provisioner.LeaseFilter{States: []provisioner.State{provisioner.StateIdle}, Class: "a100"})
	if err != nil || len(got) != 1 || got[0].ID != "b" {
		t.Fatalf("filter: %v %v", got, err)
	}
	all, _ := s.Leases(ctx, provisioner.LeaseFilter{})
	if len(all) != 3 || all[0].ID != "a" || all[2].ID != "c" {
		t.Fatalf("all, oldest first: %v", all)
	}
	lim, _ := s.Leases(ctx, provisioner.LeaseFilter{Limit: 2})
	if len(lim) != 2 {
		t.Fatalf("limit: %d", len(lim))
	}
}

func testQueuedJobsAndScopes(t *testing.T, s provisioner.Store) {
	ctx := context.Background()
	acme, other := provisioner.Scope{Org: "acme", InstallationID: 3}, provisioner.Scope{Repo: "bob/x"}
	inTx(t, s, func(tx provisioner.Tx) error {
		for i, st := range []provisioner.JobStatus{provisioner.JobQueued, provisioner.JobInProgress, provisioner.JobQueued} {
			j := &provisioner.Job{ID: int64(i + 1), RunAttempt: 1, Repo: "acme/ml", Scope: acme, Class: "a100", Status: st}
			if err := tx.PutJob(ctx, j); err != nil {
				return err
			}
		}
		l := sampleLease("l1")
		l.Scope, l.Class, l.State = other, "h100", provisioner.StateIdle
		if err := tx.InsertLease(ctx, l); err != nil {
			return err
		}
		gone := sampleLease("l2")
		gone.Scope, gone.Class, gone.State = provisioner.Scope{Org: "gone"}, "a100", provisioner.StateReleased
		return tx.InsertLease(ctx, gone)
	})
	q, err := s.QueuedJobs(ctx, time.Now().Add(time.Minute))
	if err != nil || len(q) != 2 || q[0].Status != provisioner.JobQueued || q[0].Scope != acme {
		t.Fatalf("queued jobs: %+v %v", q, err)
	}
	if q, _ := s.QueuedJobs(ctx, time.Now().Add(-time.Hour)); len(q) != 0 {
		t.Fatalf("jobs updated before an hour ago: %d", len(q))
	}
	cs, err := s.ClassScopes(ctx)
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]bool{}
	for _, c := range cs {
		got[c.Class+" "+c.Scope.Key()] = true
	}
	if len(cs) != 2 || !got["a100 org:acme"] || !got["h100 repo:bob/x"] {
		t.Fatalf("class scopes: %+v", cs)
	}
}
