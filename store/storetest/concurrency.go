package storetest

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/crabbox/crabbox-runner/provisioner"
)

// These cases stand for replicas: concurrent transactions on one store are
// what two serve processes on one PostgreSQL do. SQLite passes them by
// running transactions one at a time; PostgreSQL by its row locks, unique
// keys and advisory locks.

// hold is how long a transaction keeps its locks while others queue behind
// it; long enough that they certainly start meanwhile.
const hold = 100 * time.Millisecond

// A lease locked by one transaction: a second transaction moving it waits,
// then judges its move from the state the first committed, and gets a
// TransitionError naming that state rather than a stale one (or an error
// from a write that lost).
func testLockedLeaseWaits(t *testing.T, s provisioner.Store) {
	ctx := context.Background()
	idle := sampleLease("l1")
	idle.State = provisioner.StateIdle
	inTx(t, s, func(tx provisioner.Tx) error { return tx.InsertLease(ctx, idle) })

	locked := make(chan struct{})
	first := make(chan error, 1)
	go func() {
		first <- s.InTx(ctx, func(tx provisioner.Tx) error {
			if _, err := tx.Lease(ctx, "l1"); err != nil {
				return err
			}
			close(locked)
			time.Sleep(hold)
			_, err := tx.Transition(ctx, "l1", provisioner.StateBusy, "first", func(l *provisioner.Lease) { l.Error = "first" })
			return err
		})
	}()
	<-locked
	err := s.InTx(ctx, func(tx provisioner.Tx) error {
		_, err := tx.Transition(ctx, "l1", provisioner.StateBusy, "second", func(l *provisioner.Lease) { l.Error = "second" })
		return err
	})
	if err := <-first; err != nil {
		t.Fatalf("first transaction: %v", err)
	}
	var te *provisioner.TransitionError
	if !errors.As(err, &te) || te.From != provisioner.StateBusy {
		t.Fatalf("second transaction: %v; want a TransitionError from busy", err)
	}
	l, _ := s.Lease(ctx, "l1")
	if l.State != provisioner.StateBusy || l.Error != "first" {
		t.Fatalf("lease: %s %q; want busy, first", l.State, l.Error)
	}
}

// Many transactions make the same move at once: exactly one wins, every
// other gets a TransitionError from the state the winner left, and the
// history has one such move.
func testConcurrentSameMove(t *testing.T, s provisioner.Store) {
	ctx := context.Background()
	idle := sampleLease("l1")
	idle.State = provisioner.StateIdle
	inTx(t, s, func(tx provisioner.Tx) error { return tx.InsertLease(ctx, idle) })

	const n = 8
	errs := race(n, func(i int) error {
		return s.InTx(ctx, func(tx provisioner.Tx) error {
			_, err := tx.Transition(ctx, "l1", provisioner.StateBusy, fmt.Sprint("replica ", i),
				func(l *provisioner.Lease) { l.Error = fmt.Sprint("replica ", i) })
			if err == nil {
				time.Sleep(hold / 4) // keep the row while the others queue
			}
			return err
		})
	})
	winner := -1
	for i, err := range errs {
		var te *provisioner.TransitionError
		switch {
		case err == nil && winner < 0:
			winner = i
		case err == nil:
			t.Fatalf("replicas %d and %d both moved the lease to busy", winner, i)
		case !errors.As(err, &te) || te.From != provisioner.StateBusy:
			t.Fatalf("replica %d: %v; want a TransitionError from busy", i, err)
		}
	}
	if winner < 0 {
		t.Fatal("no replica moved the lease")
	}
	l, _ := s.Lease(ctx, "l1")
	if l.State != provisioner.StateBusy || l.Error != fmt.Sprint("replica ", winner) {
		t.Fatalf("lease: %s %q; want busy by replica %d", l.State, l.Error, winner)
	}
	events, _ := s.LeaseEvents(ctx, "l1")
	if len(events) != 2 || events[1].Reason != fmt.Sprint("replica ", winner) {
		t.Fatalf("events: %+v", events)
	}
}

// Many transactions make different moves at once. Whatever order they take,
// the history is one chain: each move starts where the one before ended and
// is one the lifecycle allows, and every refused move was refused from a
// state the lease really was in.
func testConcurrentMovesChain(t *testing.T, s provisioner.Store) {
	ctx := context.Background()
	l := sampleLease("l1")
	l.State = provisioner.StateBootstrapping
	inTx(t, s, func(tx provisioner.Tx) error { return tx.InsertLease(ctx, l) })

	targets := []provisioner.State{provisioner.StateIdle, provisioner.StateBusy, provisioner.StateFailed,
		provisioner.StateReleasing, provisioner.StateReleased}
	const n = 20
	errs := race(n, func(i int) error {
		return s.InTx(ctx, func(tx provisioner.Tx) error {
			_, err := tx.Transition(ctx, "l1", targets[i%len(targets)], "race", nil)
			return err
		})
	})
	events, err := s.LeaseEvents(ctx, "l1")
	if err != nil {
		t.Fatal(err)
	}
	visited := map[provisioner.State]bool{events[0].To: true}
	for i, e := range events[1:] {
		if prev := events[i].To; e.From != prev || !provisioner.CanTransition(e.From, e.To) {
			t.Fatalf("event %d: %s → %s after a move to %s", i+1, e.From, e.To, prev)
		}
		visited[e.To] = true
	}
	moved := 0
	for i, err := range errs {
		var te *provisioner.TransitionError
		switch {
		case err == nil:
			moved++
		case !errors.As(err, &te):
			t.Fatalf("move %d: %v; want success or a TransitionError", i, err)
		case !visited[te.From]:
			t.Fatalf("move %d refused from %s, a state the lease never was in", i, te.From)
		}
	}
	if moved != len(events)-1 {
		t.Fatalf("%d moves succeeded, %d recorded", moved, len(events)-1)
	}
	cur, _ := s.Lease(ctx, "l1")
	if last := events[len(events)-1].To; cur.State != last {
		t.Fatalf("lease in %s, history ends in %s", cur.State, last)
	}
}

// Many transactions record the same delivery, or the same job event, at
// once: exactly one is told it is new. A winner that rolls back leaves it to
// another: in the end exactly one committed.
func testConcurrentDedupe(t *testing.T, s provisioner.Store) {
	ctx := context.Background()
	// Each round records its own key: a GUID, or a job id.
	record := map[string]func(tx provisioner.Tx, round int) (bool, error){
		"delivery": func(tx provisioner.Tx, round int) (bool, error) {
			return tx.RecordDelivery(ctx, fmt.Sprint("guid-", round), "workflow_job", "queued", t0)
		},
		"job event": func(tx provisioner.Tx, round int) (bool, error) {
			return tx.RecordJobEvent(ctx, int64(round), 1, "queued", "guid", t0)
		},
	}
	errRollback := errors.New("rolled back on purpose")
	round := 0
	for name, rec := range record {
		for _, rollbacks := range []int32{0, 2} {
			round++
			var fresh, left atomic.Int32
			left.Store(rollbacks)
			errs := race(12, func(int) error {
				return s.InTx(ctx, func(tx provisioner.Tx) error {
					ok, err := rec(tx, round)
					if err != nil || !ok {
						return err
					}
					time.Sleep(hold / 4) // keep the key uncommitted while the others insert
					if left.Add(-1) >= 0 {
						return errRollback
					}
					fresh.Add(1)
					return nil
				})
			})
			for i, err := range errs {
				if err != nil && !errors.Is(err, errRollback) {
					t.Fatalf("%s, %d rollbacks: transaction %d: %v", name, rollbacks, i, err)
				}
			}
			if fresh.Load() != 1 || left.Load() >= 0 {
				t.Fatalf("%s, %d rollbacks: %d committed it as new (want 1), %d rollbacks left (want none)",
					name, rollbacks, fresh.Load(), max(left.Load(), 0))
			}
			inTx(t, s, func(tx provisioner.Tx) error {
				if ok, err := rec(tx, round); ok || err != nil {
					t.Fatalf("%s, %d rollbacks: not stored: %v %v", name, rollbacks, ok, err)
				}
				return nil
			})
		}
	}
}

// Two transactions balance one class in one scope: the second counts what
// the first created, so two replicas do not both create the lease one
// queued job needs.
func testConcurrentDemand(t *testing.T, s provisioner.Store) {
	ctx := context.Background()
	scope := provisioner.Scope{Org: "acme"}
	inTx(t, s, func(tx provisioner.Tx) error {
		return tx.PutJob(ctx, &provisioner.Job{ID: 1, RunAttempt: 1, Scope: scope, Class: "a100", Status: provisioner.JobQueued})
	})
	counted := make(chan struct{})
	first := make(chan error, 1)
	go func() {
		first <- s.InTx(ctx, func(tx provisioner.Tx) error {
			q, a, err := tx.Demand(ctx, "a100", scope.Key())
			if err != nil || q != 1 || a != 0 {
				return fmt.Errorf("first demand: %d %d %v", q, a, err)
			}
			close(counted)
			time.Sleep(hold)
			l := sampleLease("l1")
			l.Scope = scope
			return tx.InsertLease(ctx, l)
		})
	}()
	<-counted
	inTx(t, s, func(tx provisioner.Tx) error {
		q, a, err := tx.Demand(ctx, "a100", scope.Key())
		if err != nil || q != 1 || a != 1 {
			t.Errorf("second demand: queued %d available %d err %v; want 1 and 1 (the first's lease)", q, a, err)
		}
		return err
	})
	if err := <-first; err != nil {
		t.Fatal(err)
	}
}

// race runs fn(0) … fn(n-1) in goroutines released together and returns
// their errors.
func race(n int, fn func(i int) error) []error {
	errs := make([]error, n)
	start := make(chan struct{})
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			<-start
			errs[i] = fn(i)
		})
	}
	close(start)
	wg.Wait()
	return errs
}
