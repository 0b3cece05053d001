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

func BenchmarkWebhookIngestSQLite(b *testing.B) {
	st, err := sqlite.Open(context.Background(), filepath.Join(b.TempDir(), "bench.db"))
	if err != nil {
		b.Fatal(err)
	}
	h, p := benchHandler(b, st)
	benchIngest(b, h, p, st)
}

// BenchmarkWebhookIngestPostgres is the same on a fresh database of the
// server named by CRABBOX_TEST_POSTGRES_URL (scripts/lib/postgres.sh starts
// one), over loopback TCP.
func BenchmarkWebhookIngestPostgres(b *testing.B) {
	st, err := postgres.Open(context.Background(), pgtest.NewDatabase(b))
	if err != nil {
		b.Fatal(err)
	}
	h, p := benchHandler(b, st)
	benchIngest(b, h, p, st)
}

func benchIngest(b *testing.B, h http.Handler, p *provisioner.Provisioner, st provisioner.Store) {
	var next atomic.Int64
	var mu sync.Mutex
	lat := make([]time.Duration, 0, b.N)
	b.ResetTimer()
	// GitHub sends deliveries side by side; 32 in flight on 2 cores.
	b.SetParallelism(16)
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			job := next.Add(1)
			body := queuedBody(job)
			req := httptest.NewRequest(http.MethodPost, "/webhook", strings.NewReader(string(body)))
			req.Header.Set("X-GitHub-Event", "workflow_job")
			req.Header.Set("X-GitHub-Delivery", fmt.Sprintf("guid-%d", job))
			req.Header.Set("X-Hub-Signature-256", webhook.Sign(secret, body))
			rec := httptest.NewRecorder()
			start := time.Now()
			h.ServeHTTP(rec, req)
			d := time.Since(start)
			if rec.Code != http.StatusAccepted {
				b.Errorf("status %d: %s", rec.Code, rec.Body)
				return
			}
			mu.Lock()
			lat = append(lat, d)
			mu.Unlock()
		}
	})
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
