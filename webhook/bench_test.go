package webhook_test

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/crabbox/crabbox-runner/provisioner"
	"github.com/crabbox/crabbox-runner/store/postgres"
	"github.com/crabbox/crabbox-runner/store/postgres/pgtest"
	"github.com/crabbox/crabbox-runner/store/sqlite"
	"github.com/crabbox/crabbox-runner/webhook"
)

// The benchmarks measure ingest: signature, decode, dedupe and the job row,
// committed to SQLite or to PostgreSQL, with the balancer making the lease
// rows and the provision work beside it on the same database. No worker
// runs, so no cloud is touched. After the deliveries the benchmark waits
// for the last balance and checks that every job got its lease.
type unused struct{ provisioner.GitHub }
type unusedBoot struct{ provisioner.Bootstrapper }

func benchHandler(b *testing.B, st provisioner.Store) (http.Handler, *provisioner.Provisioner) {
	b.Helper()
	b.Cleanup(func() { st.Close() })
	if err := st.StartWork(context.Background(), provisioner.WorkConfig{}); err != nil {
		b.Fatal(err)
	}
	p, err := provisioner.New(provisioner.Config{
		Deployment: "bench", Store: st, GitHub: unused{}, Bootstrapper: unusedBoot{},
		Classes: []provisioner.Class{{Name: "a100", Labels: []string{"self-hosted", "crabbox", "a100"}}},
		Logger:  discardLogger(),
	})
	if err != nil {
		b.Fatal(err)
	}
	h, err := webhook.New(webhook.Config{Secret: secret, Events: p, Logger: discardLogger()})
	if err != nil {
		b.Fatal(err)
	}
	p.StartBalancer()
	b.Cleanup(func() { p.Stop(context.Background()) })
	return h, p
}

func queuedBody(job int64) []byte {
	return []byte(strings.Replace(queued, `"id":42`, fmt.Sprintf(`"id":%d`, job), 1))
}

// BenchmarkWebhookIngestSQLite sends deliveries as fast as 32 senders can
// (the most the store takes); BenchmarkWebhookIngestSQLiteAt2000 sends
// them at 2,000 a second, each on time whatever became of the ones before
// (latency counts from when a delivery was due), as GitHub would.
func BenchmarkWebhookIngestSQLite(b *testing.B)       { benchIngest(b, openSQLite(b), 0) }
func BenchmarkWebhookIngestSQLiteAt2000(b *testing.B) { benchIngest(b, openSQLite(b), 2000) }

// BenchmarkWebhookIngestPostgres and …At2000 are the same on a fresh
// database of the server named by CRABBOX_TEST_POSTGRES_URL
// (scripts/lib/postgres.sh starts one), over loopback TCP.
func BenchmarkWebhookIngestPostgres(b *testing.B)       { benchIngest(b, openPostgres(b), 0) }
func BenchmarkWebhookIngestPostgresAt2000(b *testing.B) { benchIngest(b, openPostgres(b), 2000) }

func openSQLite(b *testing.B) provisioner.Store {
	st, err := sqlite.Open(context.Background(), filepath.Join(b.TempDir(), "bench.db"))
	if err != nil {
		b.Fatal(err)
	}
	return st
}

func openPostgres(b *testing.B) provisioner.Store {
	st, err := postgres.Open(context.Background(), pgtest.NewDatabase(b))
	if err != nil {
		b.Fatal(err)
	}
	return st
}

// benchIngest sends b.N queued deliveries, at rate a second or (0) as fast
// as 32 senders go, then waits for the balancer's last pass and checks
// that every job got its lease.
func benchIngest(b *testing.B, st provisioner.Store, rate float64) {
	h, p := benchHandler(b, st)
	var next atomic.Int64
	var mu sync.Mutex
	lat := make([]time.Duration, 0, b.N)
	send := func(due time.Time) {
		job := next.Add(1)
		body := queuedBody(job)
		req := httptest.NewRequest(http.MethodPost, "/webhook", strings.NewReader(string(body)))
		req.Header.Set("X-GitHub-Event", "workflow_job")
		req.Header.Set("X-GitHub-Delivery", fmt.Sprintf("guid-%d", job))
		req.Header.Set("X-Hub-Signature-256", webhook.Sign(secret, body))
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		d := time.Since(due)
		if rec.Code != http.StatusAccepted {
			b.Errorf("status %d: %s", rec.Code, rec.Body)
			return
		}
		mu.Lock()
		lat = append(lat, d)
		mu.Unlock()
	}
	b.ResetTimer()
	if rate == 0 {
		// GitHub sends deliveries side by side; 32 in flight on 2 cores.
		b.SetParallelism(16)
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				send(time.Now())
			}
		})
	} else {
		due := make(chan time.Time, 1024)
		var wg sync.WaitGroup
		for range 64 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for t := range due {
					send(t)
				}
			}()
		}
		interval := time.Duration(float64(time.Second) / rate)
		at := time.Now()
		for range b.N {
			at = at.Add(interval)
			if d := time.Until(at); d > 0 {
				time.Sleep(d)
			}
			due <- at
		}
		close(due)
		wg.Wait()
	}
	end := time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := p.WaitBalanced(ctx); err != nil {
		b.Fatal(err)
	}
	lag := time.Since(end)
	b.StopTimer()
	leases, err := st.Leases(ctx, provisioner.LeaseFilter{})
	if err != nil {
		b.Fatal(err)
	}
	if int64(len(leases)) != next.Load() {
		b.Fatalf("%d leases for %d queued jobs", len(leases), next.Load())
	}
	b.ReportMetric(float64(lag.Microseconds())/1000, "balance-lag-ms")
	sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
	if len(lat) > 0 {
		b.ReportMetric(float64(len(lat))/b.Elapsed().Seconds(), "deliveries/s")
		b.ReportMetric(float64(lat[len(lat)*50/100].Microseconds()), "p50-µs")
		b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds()), "p99-µs")
	}
}

func discardLogger() *slog.Logger { return slog.New(slog.DiscardHandler) }
