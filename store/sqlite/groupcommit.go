package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"sync"
)

// SQLite commits one transaction at a time, and each commit writes every
// page it changed to the WAL: under a burst of webhook deliveries the
// commits, not the work in them, were a third of the time. So the store
// commits in groups. Transactions wait in a queue; one goroutine takes all
// that wait, runs each inside a savepoint of one transaction and commits
// once. A function that fails is rolled back to its savepoint and gets its
// error, exactly as if it had run alone; the others are unaffected. A
// failed commit fails every function of its group, none of whose work is
// then kept. Alone in the queue, a transaction runs as it always did.
//
// What a caller sees is unchanged: InTx returns once its work is committed
// or rolled back. What it must not do is unchanged too: start another
// transaction from inside one (with one connection that never worked).

// maxGroup bounds a group, and so the wait of its first member.
const maxGroup = 128

type txRequest struct {
	ctx   context.Context
	fn    func(*sql.Tx, *endHooks) error
	done  chan error
	hooks endHooks
}

// An endHook is work a function leaves for the end of its group: it runs
// once, in the group's transaction, after every function of the group, for
// all the functions that left work under the same key. That is how one
// balance serves every delivery of a group, inside the transaction that
// records them, instead of in a transaction of its own after it.
type endHook struct {
	key string
	fn  func(*sql.Tx) error
	// after learns the outcome: fn's error, or the commit's. It is called
	// on the committer before the group's callers return, so it must be
	// quick and must not use the store.
	after func(error)
}

type endHooks []endHook

func (h *endHooks) add(key string, fn func(*sql.Tx) error, after func(error)) {
	*h = append(*h, endHook{key: key, fn: fn, after: after})
}

type committer struct {
	db    *sql.DB
	queue chan *txRequest
	// mu orders sends on queue before close: once shut is set under the
	// write lock, nothing more is queued, and run drains what was.
	mu     sync.RWMutex
	shut   bool
	closed chan struct{}
	wg     sync.WaitGroup
}

func newCommitter(db *sql.DB) *committer {
	c := &committer{db: db, queue: make(chan *txRequest, maxGroup), closed: make(chan struct{})}
	c.wg.Add(1)
	go c.run()
	return c
}

var errClosed = errors.New("sqlite: store is closed")

// inTx queues fn and waits for its group's outcome. fn may leave work for
// the end of the group; a function that fails leaves none.
func (c *committer) inTx(ctx context.Context, fn func(*sql.Tx, *endHooks) error) error {
	req := &txRequest{ctx: ctx, fn: fn, done: make(chan error, 1)}
	c.mu.RLock()
	if c.shut {
		c.mu.RUnlock()
		return errClosed
	}
	select {
	case c.queue <- req:
		c.mu.RUnlock()
	case <-ctx.Done():
		c.mu.RUnlock()
		return ctx.Err()
	}
	// Once queued, the request is answered: waiting for it even when ctx
	// ends keeps the caller from returning while its work may still commit.
	return <-req.done
}

// close stops taking transactions, after the group under way.
func (c *committer) close() {
	c.mu.Lock()
	if !c.shut {
		c.shut = true
		close(c.closed)
	}
	c.mu.Unlock()
	c.wg.Wait()
}

func (c *committer) run() {
	defer c.wg.Done()
	group := make([]*txRequest, 0, maxGroup)
	for {
		select {
		case <-c.closed:
			c.drain()
			return
		case req := <-c.queue:
			group = append(group[:0], req)
		}
	more:
		for len(group) < maxGroup {
			select {
			case req := <-c.queue:
				group = append(group, req)
			default:
				break more
			}
		}
		c.commit(group)
	}
}

// drain answers what is still queued at close.
func (c *committer) drain() {
	for {
		select {
		case req := <-c.queue:
			req.done <- errClosed
		default:
			return
		}
	}
}

func (c *committer) commit(group []*txRequest) {
	live := group[:0:0]
	for _, req := range group {
		if err := req.ctx.Err(); err != nil {
			req.done <- err
			continue
		}
		live = append(live, req)
	}
	if len(live) == 0 {
		return
	}
	// The transaction runs on no caller's context: one caller giving up
	// must not roll back the others' work. Each function runs with its
	// own context.
	tx, err := c.db.BeginTx(context.Background(), nil)
	if err != nil {
		err = fmt.Errorf("sqlite: begin: %w", err)
		for _, req := range live {
			req.done <- err
		}
		return
	}
	results := make([]error, len(live))
	if len(live) == 1 {
		// Alone, a function needs no savepoint: its failure is the
		// transaction's.
		req := live[0]
		if err := req.fn(tx, &req.hooks); err != nil {
			tx.Rollback()
			req.done <- err
			return
		}
	} else {
		for i, req := range live {
			var fatal error
			results[i], fatal = runInSavepoint(tx, func(tx *sql.Tx) error { return req.fn(tx, &req.hooks) })
			if fatal != nil {
				// The transaction is in no known state: keep none of it.
				tx.Rollback()
				for j, req := range live {
					if j > i || results[j] == nil {
						results[j] = fatal
					}
					req.done <- results[j]
				}
				return
			}
		}
	}
	hooks, hookErrs, fatal := runHooks(tx, live, results)
	err = fatal
	if fatal != nil {
		tx.Rollback()
	} else if err = tx.Commit(); err != nil {
		err = fmt.Errorf("sqlite: commit: %w", err)
	}
	for i, h := range hooks {
		if err != nil {
			h.after(err)
		} else {
			h.after(hookErrs[h.key])
		}
		hooks[i] = endHook{}
	}
	for i, req := range live {
		if err != nil && results[i] == nil {
			results[i] = err
		}
		req.done <- results[i]
	}
}

// runHooks runs, each in a savepoint, the end work that the group's
// successful functions left, once per key. It returns every hook whose
// caller is to learn the outcome, and the error of each key's run; fatal
// reports a savepoint that failed.
func runHooks(tx *sql.Tx, live []*txRequest, results []error) (hooks []endHook, errs map[string]error, fatal error) {
	for i, req := range live {
		if results[i] == nil {
			hooks = append(hooks, req.hooks...)
		}
		req.hooks = nil
	}
	if len(hooks) == 0 {
		return nil, nil, nil
	}
	errs = map[string]error{}
	for _, h := range hooks {
		if _, done := errs[h.key]; done {
			continue
		}
		var err error
		if err, fatal = runInSavepoint(tx, h.fn); fatal != nil {
			return hooks, errs, fatal
		}
		errs[h.key] = err
	}
	return hooks, errs, nil
}

// runInSavepoint runs one function of a group, undoing its changes if it
// fails. fatal reports that the savepoint itself failed, after which the
// group's transaction cannot be trusted.
func runInSavepoint(tx *sql.Tx, fn func(*sql.Tx) error) (err, fatal error) {
	// No caller context for the savepoint statements: undoing must happen
	// even when the caller's context is what made fn fail.
	bg := context.Background()
	if _, err := tx.ExecContext(bg, `SAVEPOINT crabbox_group`); err != nil {
		return nil, fmt.Errorf("sqlite: savepoint: %w", err)
	}
	if err = fn(tx); err != nil {
		if _, rerr := tx.ExecContext(bg, `ROLLBACK TO crabbox_group`); rerr != nil {
			return err, fmt.Errorf("sqlite: rollback to savepoint: %w", rerr)
		}
	}
	if _, rerr := tx.ExecContext(bg, `RELEASE crabbox_group`); rerr != nil {
		return err, fmt.Errorf("sqlite: release savepoint: %w", rerr)
	}
	return err, nil
}
