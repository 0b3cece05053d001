package provisioner

import (
	"context"
	"sync"

	"github.com/riverqueue/river"
)

// announcer tells a Notifier store of committed work, coalescing: one
// announcement makes the queue look for everything available in it, so
// while one waits to be sent, more for the same queue need none of their
// own. Each announcement is a write on SQLite; under a burst, one per
// lease was a thousand writes queued behind the real ones.
type announcer struct {
	n       Notifier
	mu      sync.Mutex
	byQueue map[string]*queueAnnouncement
}

type queueAnnouncement struct {
	// next is the work to name in the next announcement, nil when none is
	// due; sending is set while a goroutine sends.
	next    work
	sending bool
}

// work is a kind of job with its queue.
type work interface {
	river.JobArgs
	river.JobArgsWithInsertOpts
}

func newAnnouncer(store Store) *announcer {
	n, _ := store.(Notifier)
	return &announcer{n: n, byQueue: map[string]*queueAnnouncement{}}
}

// announce asks for the queue of args to look for work soon. args must have
// been enqueued by a committed transaction: an announcement of work that is
// not there would insert it. It never blocks on the store.
func (a *announcer) announce(args work) {
	if a.n == nil {
		return
	}
	queue := args.InsertOpts().Queue
	a.mu.Lock()
	defer a.mu.Unlock()
	q := a.byQueue[queue]
	if q == nil {
		q = &queueAnnouncement{}
		a.byQueue[queue] = q
	}
	// An announcement already due covers this work: it is sent after this
	// work's commit. One being sent may not, so another becomes due.
	q.next = args
	if q.sending {
		return
	}
	q.sending = true
	go a.send(q)
}

func (a *announcer) send(q *queueAnnouncement) {
	a.mu.Lock()
	for q.next != nil {
		args := q.next
		q.next = nil
		a.mu.Unlock()
		a.n.Notify(context.Background(), args)
		a.mu.Lock()
	}
	q.sending = false
	a.mu.Unlock()
}
