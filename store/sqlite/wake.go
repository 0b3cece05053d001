package sqlite

import (
	"context"
	"database/sql"
	"fmt"
	"sync"

	"github.com/riverqueue/river/riverdriver"
	"github.com/riverqueue/river/riverdriver/riversqlite"
)

// SQLite has no LISTEN/NOTIFY. River's SQLite driver stands in for it with
// an outbox table that its listener reads every 50 ms, and River otherwise
// looks for work every poll interval (100 ms). A job enqueued in a
// transaction therefore waited tens of milliseconds before a worker took
// it, and in a burst the create call of every job did.
//
// In one process nothing needs a table to tell the work queue of new work:
// wakingDriver is River's SQLite driver whose listener also hears of work
// announced in process (Store.Notify, after the commit that enqueued it) and
// passes it on as River's own insert notification, with no write. The
// outbox keeps working beside it, read on the read connections so that its
// polls never wait for the writer.
type wakingDriver struct {
	*riversqlite.Driver
	listenOn *sql.DB
	wake     *waker
}

// GetListener implements riverdriver.Driver.
func (d wakingDriver) GetListener(params *riverdriver.GetListenenerParams) riverdriver.Listener {
	return &wakingListener{Listener: riversqlite.New(d.listenOn).GetListener(params), wake: d.wake}
}

// waker holds the queues announced and not yet passed on.
type waker struct {
	mu     sync.Mutex
	queues map[string]bool
	rung   chan struct{} // capacity 1: a pending wake-up
}

func newWaker() *waker {
	return &waker{queues: map[string]bool{}, rung: make(chan struct{}, 1)}
}

// ring announces new work in queue. It never blocks.
func (w *waker) ring(queue string) {
	w.mu.Lock()
	w.queues[queue] = true
	w.mu.Unlock()
	select {
	case w.rung <- struct{}{}:
	default:
	}
}

func (w *waker) next() (string, bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	for q := range w.queues {
		delete(w.queues, q)
		return q, true
	}
	return "", false
}

// insertTopic is the topic of River's insert notifications, which make the
// producer of the queue named in the payload fetch at once.
const insertTopic = "river_insert"

type wakingListener struct {
	riverdriver.Listener
	wake *waker
}

// WaitForNotification returns the next notification from the outbox, or an
// insert notification for a queue announced in process, whichever is
// first.
func (l *wakingListener) WaitForNotification(ctx context.Context) (*riverdriver.Notification, error) {
	for {
		if q, ok := l.wake.next(); ok {
			return &riverdriver.Notification{Topic: insertTopic, Payload: fmt.Sprintf(`{"queue":%q}`, q)}, nil
		}
		inner, cancel := context.WithCancel(ctx)
		stop, done := make(chan struct{}), make(chan struct{})
		woken := false
		go func() {
			defer close(done)
			select {
			case <-l.wake.rung:
				woken = true
				cancel()
			case <-stop:
			}
		}()
		n, err := l.Listener.WaitForNotification(inner)
		close(stop)
		<-done
		cancel()
		if woken && ctx.Err() == nil {
			if err == nil && n != nil {
				return n, nil // the announced queue follows at the next call
			}
			continue // the wait was cut short for an announcement
		}
		return n, err
	}
}
