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

// The benchmarks measure ingest alone: signature, decode, dedupe, the job
// and lease rows and the enqueued provision work, committed to SQLite or to
// PostgreSQL. No worker runs, so no cloud is touched.
type unused struct{ provisioner.GitHub }
type unusedBoot struct{ provisioner.Bootstrapper }

func benchHandler(b *testing.B, st provisioner.Store) http.Handler {
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
	return h
}

func queuedBody(job int64) []byte {
	return []byte(strings.Replace(queued, `"id":42`, fmt.Sprintf(`"id":%d`, job), 1))
}

func BenchmarkWebhookIngestSQLite(b *testing.B) {
	st, err := sqlite.Open(context.Background(), filepath.Join(b.TempDir(), "bench.db"))
	if err != nil {
		b.Fatal(err)
	}
	benchIngest(b, benchHandler(b, st))
}

// BenchmarkWebhookIngestPostgres is the same on a fresh database of the
// server named by CRABBOX_TEST_POSTGRES_URL (scripts/lib/postgres.sh starts
// one), over loopback TCP.
func BenchmarkWebhookIngestPostgres(b *testing.B) {
	st, err := postgres.Open(context.Background(), pgtest.NewDatabase(b))
	if err != nil {
		b.Fatal(err)
	}
	benchIngest(b, benchHandler(b, st))
}

func benchIngest(b *testing.B, h http.Handler) {
	var next atomic.Int64
	var mu sync.Mutex
	lat := make([]time.Duration, 0, b.N)
	b.ResetTimer()
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
	b.StopTimer()
	sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
	if len(lat) > 0 {
		b.ReportMetric(float64(len(lat))/b.Elapsed().Seconds(), "deliveries/s")
		b.ReportMetric(float64(lat[len(lat)*50/100].Microseconds()), "p50-µs")
		b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds()), "p99-µs")
	}
}

func discardLogger() *slog.Logger { return slog.New(slog.DiscardHandler) }
