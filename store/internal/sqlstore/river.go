package sqlstore

import (
	"context"
	"log/slog"
	"sync"
	"time"

	"github.com/riverqueue/river"
	"github.com/riverqueue/river/riverdriver"

	"github.com/crabbox/crabbox-runner/provisioner"
)

// RiverConfig turns the provisioner's WorkConfig into River's, the same for
// both databases; the caller adds what is its own (PollOnly on SQLite).
// Without workers the client only inserts: tools and benchmarks that enqueue
// work for a server to run.
func RiverConfig(cfg provisioner.WorkConfig) *river.Config {
	poll := cfg.PollInterval
	if poll <= 0 {
		poll = time.Second
	}
	var queues map[string]river.QueueConfig
	if cfg.Workers != nil {
		queues = map[string]river.QueueConfig{}
		for name, n := range cfg.Queues {
			// River wants a queue's gap no longer than its poll interval;
			// zero keeps the client's.
			queues[name] = river.QueueConfig{MaxWorkers: n, FetchCooldown: min(cfg.FetchGaps[name], poll)}
		}
		if len(queues) == 0 {
			queues[river.QueueDefault] = river.QueueConfig{MaxWorkers: 10}
		}
	}
	rc := &river.Config{
		Queues:            queues,
		Workers:           cfg.Workers,
		PeriodicJobs:      cfg.PeriodicJobs,
		FetchPollInterval: poll,
		FetchCooldown:     min(poll, 100*time.Millisecond),
		Logger:            QuietLogger(cfg.Logger),
		JobTimeout:        2 * time.Minute, // workers that need longer say so
	}
	if cfg.RescueAfter > 0 {
		rc.RescueStuckJobsAfter = cfg.RescueAfter
		// River refuses a rescue time under the default job timeout.
		rc.JobTimeout = min(rc.JobTimeout, cfg.RescueAfter/2)
	}
	return rc
}

// Queue holds a store's River client: none until StartWork, then an
// insert-only one or one that works.
type Queue[TTx any] struct {
	mu     sync.RWMutex
	client *river.Client[TTx]
}

// Start creates the client from rc and, when cfg has workers, runs
// beforeStart (if any) and starts it.
func (q *Queue[TTx]) Start(ctx context.Context, d *Dialect, driver riverdriver.Driver[TTx], rc *river.Config,
	cfg provisioner.WorkConfig, beforeStart func() error) error {
	client, err := river.NewClient(driver, rc)
	if err != nil {
		return d.errorf("work queue: %w", err)
	}
	q.mu.Lock()
	q.client = client
	q.mu.Unlock()
	if cfg.Workers == nil {
		return nil
	}
	if beforeStart != nil {
		if err := beforeStart(); err != nil {
			return err
		}
	}
	if err := client.Start(ctx); err != nil {
		return d.errorf("start work queue: %w", err)
	}
	return nil
}

// Client returns the client, nil before Start.
func (q *Queue[TTx]) Client() *river.Client[TTx] {
	q.mu.RLock()
	defer q.mu.RUnlock()
	return q.client
}

// Stop stops fetching new work and waits for running work to end, or for
// ctx. An insert-only client stops at once.
func (q *Queue[TTx]) Stop(ctx context.Context) error {
	if c := q.Client(); c != nil {
		return c.Stop(ctx)
	}
	return nil
}

// Enqueuer returns the EnqueueFunc for transaction tx: nil before Start, so
// that Tx.Enqueue reports provisioner.ErrQueueNotStarted.
func (q *Queue[TTx]) Enqueuer(tx TTx) EnqueueFunc {
	client := q.Client()
	if client == nil {
		return nil
	}
	return func(ctx context.Context, params []river.InsertManyParams) error {
		_, err := client.InsertManyTx(ctx, tx, params)
		return err
	}
}

// QuietLogger keeps River's own info chatter out of serve's logs; warnings
// and errors still come through.
func QuietLogger(l *slog.Logger) *slog.Logger {
	if l == nil {
		l = slog.Default()
	}
	return slog.New(levelFilter{l.Handler(), slog.LevelWarn}).With("component", "river")
}

type levelFilter struct {
	slog.Handler
	min slog.Level
}

func (f levelFilter) Enabled(ctx context.Context, l slog.Level) bool {
	return l >= f.min && f.Handler.Enabled(ctx, l)
}
func (f levelFilter) WithAttrs(a []slog.Attr) slog.Handler {
	return levelFilter{f.Handler.WithAttrs(a), f.min}
}
func (f levelFilter) WithGroup(g string) slog.Handler {
	return levelFilter{f.Handler.WithGroup(g), f.min}
}
