package sqlite

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/riverqueue/river/riverdriver"
)

// blockingListener stands for the outbox listener: it returns what is sent
// on notes, or the context's error.
type blockingListener struct {
	riverdriver.Listener
	notes chan *riverdriver.Notification
}

func (l *blockingListener) WaitForNotification(ctx context.Context) (*riverdriver.Notification, error) {
	select {
	case n := <-l.notes:
		return n, nil
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// Work announced in process becomes River's insert notification for its
// queue at once, cutting short the outbox's wait; the outbox's own
// notifications still pass; the caller's cancellation still ends the wait.
func TestWakingListener(t *testing.T) {
	inner := &blockingListener{notes: make(chan *riverdriver.Notification, 1)}
	w := newWaker()
	l := &wakingListener{Listener: inner, wake: w}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	got := make(chan *riverdriver.Notification, 1)
	go func() {
		n, err := l.WaitForNotification(ctx)
		if err != nil {
			t.Error(err)
		}
		got <- n
	}()
	time.Sleep(20 * time.Millisecond) // waiting inside the outbox listener
	w.ring("boot")
	if n := <-got; n == nil || n.Topic != "river_insert" || n.Payload != `{"queue":"boot"}` {
		t.Fatalf("announced work: %+v", n)
	}

	// Announcements made while nobody waits are kept, once per queue.
	w.ring("provision")
	w.ring("provision")
	w.ring("release")
	seen := map[string]int{}
	for range 2 {
		n, err := l.WaitForNotification(ctx)
		if err != nil {
			t.Fatal(err)
		}
		seen[n.Payload]++
	}
	if seen[`{"queue":"provision"}`] != 1 || seen[`{"queue":"release"}`] != 1 {
		t.Fatalf("announcements: %v", seen)
	}

	inner.notes <- &riverdriver.Notification{Topic: "river_control", Payload: "{}"}
	if n, err := l.WaitForNotification(ctx); err != nil || n.Topic != "river_control" {
		t.Fatalf("outbox notification: %+v, %v", n, err)
	}

	cctx, ccancel := context.WithCancel(ctx)
	go func() { time.Sleep(20 * time.Millisecond); ccancel() }()
	if _, err := l.WaitForNotification(cctx); !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled wait: %v", err)
	}
}
