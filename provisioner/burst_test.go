package provisioner_test

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/crabbox/crabbox-runner/provisioner"
)

// phaseRecorder collects phase durations for the burst benchmark.
type phaseRecorder struct {
	mu sync.Mutex
	d  map[provisioner.Phase][]time.Duration
}

func (r *phaseRecorder) Phase(_, _ string, p provisioner.Phase, d time.Duration) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.d == nil {
		r.d = map[provisioner.Phase][]time.Duration{}
	}
	r.d[p] = append(r.d[p], d)
}
func (r *phaseRecorder) Spent(string, string, float64)   {}
func (r *phaseRecorder) LimitWait(string, time.Duration) {}

func (r *phaseRecorder) pct(p provisioner.Phase, q float64) (time.Duration, int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	ds := append([]time.Duration(nil), r.d[p]...)
	if len(ds) == 0 {
		return 0, 0
	}
	sort.Slice(ds, func(i, j int) bool { return ds[i] < ds[j] })
	return ds[min(int(float64(len(ds))*q), len(ds)-1)], len(ds)
}

// BenchmarkBurst sends a burst of queued jobs (CRABBOX_BURST, default 1000)
// through the real provisioner, store and work queue, with providers,
// GitHub and hosts that answer at once (no limits), then completes every
// job. It reports the phases issue 7 sets goals for and the memory used.
//
//	go test -run '^$' -bench BenchmarkBurst -benchtime 1x ./provisioner/
func BenchmarkBurst(b *testing.B) {
	n := 1000
	if s := os.Getenv("CRABBOX_BURST"); s != "" {
		n, _ = strconv.Atoi(s)
	}
	for range b.N {
		burst(b, n)
	}
}

func burst(b *testing.B, n int) {
	rec := &phaseRecorder{}
	h := newHarness(b, func(c *provisioner.Config) {
		c.Observer = rec
		c.Logger = discardLog()
		// serve's defaults (workers, queue polling, deadline scan), but
		// for how often a booting host is looked at: the fake hosts
		// answer at once, and serve's 2 s would only measure waiting.
		c.QueuePollInterval, c.InlineWait = 0, 0
		c.PollInterval = 20 * time.Millisecond
		c.Reconcile.DeadlineInterval = 0
	})
	ctx := context.Background()
	var before runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	start := time.Now()

	var wg sync.WaitGroup
	jobs := make(chan int, n)
	for j := 1; j <= n; j++ {
		jobs <- j
	}
	close(jobs)
	for range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := range jobs {
				h.send(ctx, "queued", int64(j), "")
			}
		}()
	}
	wg.Wait()
	ingest := time.Since(start)
	h.waitForB(b, "all online", 5*time.Minute, func() bool { return h.count(provisioner.StateIdle) == n })
	online := time.Since(start)
	var peak runtime.MemStats
	runtime.ReadMemStats(&peak)

	leases, _ := h.store.Leases(ctx, provisioner.LeaseFilter{States: []provisioner.State{provisioner.StateIdle}})
	for i, l := range leases {
		h.send(ctx, "in_progress", int64(i+1), l.RunnerName)
	}
	completeStart := time.Now()
	jobsCh := make(chan int, len(leases))
	for i := range leases {
		jobsCh <- i
	}
	close(jobsCh)
	for range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range jobsCh {
				h.send(ctx, "completed", int64(i+1), leases[i].RunnerName)
			}
		}()
	}
	wg.Wait()
	h.waitForB(b, "all released", 5*time.Minute, func() bool { return h.count(provisioner.StateReleased) == n })
	released := time.Since(completeStart)

	live, created, destroyed := h.prov.counts()
	if live != 0 || created != n || destroyed != n {
		b.Fatalf("hosts: live %d created %d destroyed %d; want 0, %d, %d", live, created, destroyed, n, n)
	}
	q50, _ := rec.pct(provisioner.PhaseQueuedToCreate, 0.50)
	q99, cnt := rec.pct(provisioner.PhaseQueuedToCreate, 0.99)
	r50, _ := rec.pct(provisioner.PhaseReleaseDestroy, 0.50)
	r99, rcnt := rec.pct(provisioner.PhaseReleaseDestroy, 0.99)
	b.ReportMetric(float64(q99.Milliseconds()), "queued→create-p99-ms")
	b.ReportMetric(float64(r99.Milliseconds()), "completed→destroyed-p99-ms")
	b.ReportMetric(float64(peak.Sys)/(1<<20), "peak-sys-MiB")
	hwm := peakRSS()
	b.ReportMetric(float64(hwm)/(1<<20), "peak-rss-MiB")
	fmt.Fprintf(os.Stderr, "burst of %d: ingest %s, all online %s, all released %s after the completions\n"+
		"  queued→create: p50 %s p99 %s (%d)\n  completed→destroyed: p50 %s p99 %s (%d)\n"+
		"  hosts created %d destroyed %d; Go heap in use at peak %.0f MiB, sys %.0f MiB (before %.0f MiB); process peak RSS %.0f MiB\n",
		n, ingest.Round(time.Millisecond), online.Round(time.Millisecond), released.Round(time.Millisecond),
		q50.Round(time.Millisecond), q99.Round(time.Millisecond), cnt, r50.Round(time.Millisecond), r99.Round(time.Millisecond), rcnt,
		created, destroyed, float64(peak.HeapInuse)/(1<<20), float64(peak.Sys)/(1<<20), float64(before.Sys)/(1<<20),
		float64(hwm)/(1<<20))
}

// peakRSS is the process's peak resident memory (VmHWM), SQLite's page
// cache and all, which the Go runtime's figures do not count.
func peakRSS() int64 {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			kb, _ := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			return kb << 10
		}
	}
	return 0
}

func discardLog() *slog.Logger { return slog.New(slog.DiscardHandler) }

func (h *harness) send(ctx context.Context, action string, job int64, runner string) {
	// ReceivedAt as the webhook handler sets it: the phases count from the
	// delivery's arrival, before it waits for the database.
	ev := provisioner.JobEvent{DeliveryID: fmt.Sprintf("%s-%d", action, job), Action: action, Status: action, JobID: job,
		RunID: job, RunAttempt: 1, Labels: []string{"self-hosted", "a100"}, Repo: "acme/ml", Org: "acme", Visibility: "private", RunnerName: runner,
		ReceivedAt: time.Now()}
	if _, err := h.p.HandleJobEvent(ctx, ev); err != nil {
		h.t.Fatal(err)
	}
}

func (h *harness) count(s provisioner.State) int {
	ls, err := h.store.Leases(context.Background(), provisioner.LeaseFilter{States: []provisioner.State{s}})
	if err != nil {
		h.t.Fatal(err)
	}
	return len(ls)
}

func (h *harness) waitForB(b *testing.B, what string, within time.Duration, cond func() bool) {
	deadline := time.Now().Add(within)
	last := time.Now()
	for !cond() {
		if time.Now().After(deadline) {
			b.Fatalf("timed out waiting for %s", what)
		}
		if time.Since(last) > 5*time.Second {
			last = time.Now()
			var counts []string
			for _, s := range provisioner.AllStates {
				if n := h.count(s); n > 0 {
					counts = append(counts, fmt.Sprintf("%s=%d", s, n))
				}
			}
			fmt.Fprintf(os.Stderr, "  waiting for %s: %v\n", what, counts)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
