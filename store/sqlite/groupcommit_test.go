package sqlite_test

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/crabbox/crabbox-runner/provisioner"
	"github.com/crabbox/crabbox-runner/store/sqlite"
)

// Transactions committed together keep their own outcomes: the work of one
// that fails is undone, its neighbours' is kept, and each caller hears only
// of its own error.
func TestGroupCommitKeepsOutcomesApart(t *testing.T) {
	ctx := context.Background()
	s, err := sqlite.Open(ctx, filepath.Join(t.TempDir(), "g.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	const n = 400
	errOdd := errors.New("odd ones fail")
	var wg sync.WaitGroup
	errs := make([]error, n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = s.InTx(ctx, func(tx provisioner.Tx) error {
				if _, err := tx.RecordDelivery(ctx, fmt.Sprintf("g-%d", i), "workflow_job", "queued", time.Now()); err != nil {
					return err
				}
				if i%2 == 1 {
					return errOdd
				}
				return nil
			})
		}()
	}
	wg.Wait()
	for i, err := range errs {
		if want := i%2 == 1; errors.Is(err, errOdd) != want || (!want && err != nil) {
			t.Fatalf("transaction %d: %v", i, err)
		}
	}
	for i := range n {
		var c int
		if err := s.DB().QueryRow(`SELECT count(*) FROM crabbox_delivery WHERE guid = $1`, fmt.Sprintf("g-%d", i)).Scan(&c); err != nil {
			t.Fatal(err)
		}
		if c != 1-i%2 {
			t.Fatalf("delivery g-%d: %d rows, want %d", i, c, 1-i%2)
		}
	}
}

// A caller whose context ends before its turn is told so and its work is
// not run; one whose statements fail on it is rolled back alone.
func TestGroupCommitCancelledCaller(t *testing.T) {
	ctx := context.Background()
	s, err := sqlite.Open(ctx, filepath.Join(t.TempDir(), "g.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	hold := make(chan struct{})
	started := make(chan struct{})
	go s.InTx(ctx, func(tx provisioner.Tx) error { // keeps the committer busy
		close(started)
		<-hold
		return nil
	})
	<-started
	cctx, cancel := context.WithCancel(ctx)
	ran := false
	done := make(chan error)
	go func() {
		done <- s.InTx(cctx, func(tx provisioner.Tx) error { ran = true; return nil })
	}()
	time.Sleep(20 * time.Millisecond)
	cancel()
	close(hold)
	if err := <-done; !errors.Is(err, context.Canceled) || ran {
		t.Fatalf("cancelled caller: err %v, ran %v", err, ran)
	}
	// The store goes on.
	if err := s.InTx(ctx, func(tx provisioner.Tx) error {
		_, err := tx.RecordDelivery(ctx, "after", "workflow_job", "queued", time.Now())
		return err
	}); err != nil {
		t.Fatal(err)
	}
}

// After Close, a transaction is refused with a clear error.
func TestGroupCommitAfterClose(t *testing.T) {
	s, err := sqlite.Open(context.Background(), filepath.Join(t.TempDir(), "g.db"))
	if err != nil {
		t.Fatal(err)
	}
	s.Close()
	err = s.InTx(context.Background(), func(tx provisioner.Tx) error { return nil })
	if err == nil || err.Error() != "sqlite: store is closed" {
		t.Fatalf("after close: %v", err)
	}
}
