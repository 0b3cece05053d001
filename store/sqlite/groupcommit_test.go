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
	s := openGroupStore(t)
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
	s := openGroupStore(t)
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
	s := openGroupStore(t)
	s.Close()
	err := s.InTx(context.Background(), func(tx provisioner.Tx) error { return nil })
	if err == nil || err.Error() != "sqlite: store is closed" {
		t.Fatalf("after close: %v", err)
	}
}

// Work left for the end of a group runs once per key, after every function
// of the group and in its transaction; work left by a function that fails
// is dropped; work that fails is undone alone, and whoever left it hears.
func TestGroupCommitEndHooks(t *testing.T) {
	ctx := context.Background()
	s := openGroupStore(t)
	record := func(tx provisioner.Tx, guid string) error {
		_, err := tx.RecordDelivery(ctx, guid, "workflow_job", "queued", time.Now())
		return err
	}

	hold, started := make(chan struct{}), make(chan struct{})
	go s.InTx(ctx, func(tx provisioner.Tx) error { // keeps the committer busy while the group queues
		close(started)
		<-hold
		return nil
	})
	<-started

	const n = 20
	errFail, errHook := errors.New("function fails"), errors.New("hook fails")
	var mu sync.Mutex
	runs := map[string]int{}
	afters := map[string][]error{}
	after := func(key string) func(error) {
		return func(err error) { mu.Lock(); afters[key] = append(afters[key], err); mu.Unlock() }
	}
	var wg sync.WaitGroup
	errs := make([]error, n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = s.InTx(ctx, func(tx provisioner.Tx) error {
				if err := record(tx, fmt.Sprintf("f-%d", i)); err != nil {
					return err
				}
				gt, ok := tx.(provisioner.GroupTx)
				if !ok {
					t.Error("an SQLite transaction is no GroupTx")
					return nil
				}
				gt.AtGroupEnd("shared", func(tx provisioner.Tx) error {
					mu.Lock()
					runs["shared"]++
					mu.Unlock()
					// It comes after every function of the group, and
					// sees their work.
					for j := range n {
						if j == 3 {
							continue
						}
						isNew, err := tx.RecordDelivery(ctx, fmt.Sprintf("f-%d", j), "workflow_job", "queued", time.Now())
						if err != nil {
							return err
						}
						if isNew {
							return fmt.Errorf("the end of the group does not see f-%d", j)
						}
					}
					return record(tx, "hook-shared")
				}, after("shared"))
				switch i {
				case 3:
					gt.AtGroupEnd("dropped", func(tx provisioner.Tx) error {
						mu.Lock()
						runs["dropped"]++
						mu.Unlock()
						return nil
					}, after("dropped"))
					return errFail
				case 5:
					gt.AtGroupEnd("bad", func(tx provisioner.Tx) error {
						mu.Lock()
						runs["bad"]++
						mu.Unlock()
						if err := record(tx, "hook-bad"); err != nil {
							return err
						}
						return errHook
					}, after("bad"))
				}
				return nil
			})
		}()
	}
	time.Sleep(100 * time.Millisecond) // all queued behind the held transaction: one group
	close(hold)
	wg.Wait()

	for i, err := range errs {
		if want := i == 3; errors.Is(err, errFail) != want || (!want && err != nil) {
			t.Fatalf("function %d: %v", i, err)
		}
	}
	exists := func(guid string) bool {
		var c int
		if err := s.DB().QueryRow(`SELECT count(*) FROM crabbox_delivery WHERE guid = $1`, guid).Scan(&c); err != nil {
			t.Fatal(err)
		}
		return c == 1
	}
	for i := range n {
		if exists(fmt.Sprintf("f-%d", i)) != (i != 3) {
			t.Errorf("delivery f-%d: committed %v", i, !(i != 3))
		}
	}
	if runs["shared"] != 1 || !exists("hook-shared") {
		t.Errorf("shared hook ran %d times, its work kept: %v; want once, kept", runs["shared"], exists("hook-shared"))
	}
	if len(afters["shared"]) != n-1 {
		t.Errorf("shared hook's outcome told %d times, want %d (every function that did not fail)", len(afters["shared"]), n-1)
	}
	for _, err := range afters["shared"] {
		if err != nil {
			t.Errorf("shared hook's outcome: %v", err)
		}
	}
	if runs["dropped"] != 0 || len(afters["dropped"]) != 0 {
		t.Errorf("the failed function's hook ran %d times and was told %d times; want neither", runs["dropped"], len(afters["dropped"]))
	}
	if runs["bad"] != 1 || exists("hook-bad") || len(afters["bad"]) != 1 || !errors.Is(afters["bad"][0], errHook) {
		t.Errorf("failing hook: ran %d, its work kept %v, told %v; want once, undone, its error", runs["bad"], exists("hook-bad"), afters["bad"])
	}

	// Alone in its group, a function's hook runs too.
	ran := false
	if err := s.InTx(ctx, func(tx provisioner.Tx) error {
		tx.(provisioner.GroupTx).AtGroupEnd("alone", func(tx provisioner.Tx) error { return record(tx, "hook-alone") }, func(err error) { ran = err == nil })
		return record(tx, "alone")
	}); err != nil {
		t.Fatal(err)
	}
	if !ran || !exists("alone") || !exists("hook-alone") {
		t.Errorf("alone: hook told %v, function's work %v, hook's work %v", ran, exists("alone"), exists("hook-alone"))
	}
}

// openGroupStore opens a store on a new file, closed when the test ends.
func openGroupStore(t *testing.T) *sqlite.Store {
	t.Helper()
	s, err := sqlite.Open(context.Background(), filepath.Join(t.TempDir(), "g.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}
