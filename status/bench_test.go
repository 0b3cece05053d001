package status_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/crabbox/crabbox-runner/provisioner"
	"github.com/crabbox/crabbox-runner/status"
	"github.com/crabbox/crabbox-runner/store/sqlite"
)

// seedMany writes n leases of today over two classes: three in four
// released after a whole life, the rest busy.
func seedMany(b *testing.B, n int) *seeded {
	b.Helper()
	st, err := sqlite.Open(context.Background(), filepath.Join(b.TempDir(), "many.db"))
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { st.Close() })
	s := &seeded{st: st}
	st.SetNow(s.now)
	ctx := context.Background()
	for i := range n {
		start := at(0, 10).Add(time.Duration(i) * 4 * time.Minute)
		sec := func(d int) time.Time { return start.Add(time.Duration(d) * time.Second) }
		l := &provisioner.Lease{ID: fmt.Sprintf("m%03d", i), Class: []string{"a100", "h100"}[i%2], Scope: provisioner.Scope{Org: "acme"},
			Provider: "vast", GPU: "A100", PricePerHour: 1.5, JobID: int64(1000 + i), RunAttempt: 1, QueuedAt: start,
			State: provisioner.StatePending, RunnerName: fmt.Sprintf("crabbox-m%03d", i)}
		s.set(start)
		j := &provisioner.Job{ID: l.JobID, RunAttempt: 1, RunID: int64(5000 + i), Name: "train", WorkflowName: "gpu",
			Repo: "acme/vision", Scope: l.Scope, Class: l.Class, Status: provisioner.JobInProgress}
		if err := st.InTx(ctx, func(tx provisioner.Tx) error {
			if err := tx.PutJob(ctx, j); err != nil {
				return err
			}
			return tx.InsertLease(ctx, l)
		}); err != nil {
			b.Fatal(err)
		}
		steps := []step{{sec(1), provisioner.StateProvisioning, nil}, {sec(3), provisioner.StateBooting, host(l.ID)},
			{sec(60 + i%120), provisioner.StateBootstrapping, nil}, {sec(200 + i%60), provisioner.StateIdle, nil},
			{sec(230 + i%60), provisioner.StateBusy, func(l *provisioner.Lease) { l.BoundJobID = l.JobID }}}
		if i%4 != 0 {
			steps = append(steps, step{sec(600), provisioner.StateReleasing, nil},
				step{sec(630), provisioner.StateReleased, released(sec(630), "job completed")})
		}
		err := st.InTx(ctx, func(tx provisioner.Tx) error {
			for _, stp := range steps {
				s.set(stp.at)
				if _, err := tx.Transition(ctx, l.ID, stp.to, "bench", stp.mut); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			b.Fatal(err)
		}
	}
	return s
}

// The page with 200 leases of today (50 live, 150 released): how long a
// view takes and how big it is, with the released leases' histories kept
// from the view before (warm) and on a fresh handler (cold).
func BenchmarkStatusPage200(b *testing.B) {
	s := seedMany(b, 200)
	newH := func() *status.Handler {
		h, err := status.New(status.Config{Store: s.st, Now: func() time.Time { return now },
			Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
		if err != nil {
			b.Fatal(err)
		}
		return h
	}
	for _, mode := range []string{"warm", "cold"} {
		b.Run(mode, func(b *testing.B) {
			h := newH()
			var size, section int
			for b.Loop() {
				if mode == "cold" {
					h = newH()
				}
				resp, body := get(b, h, nil)
				if resp.StatusCode != 200 {
					b.Fatalf("GET: %d", resp.StatusCode)
				}
				size = len(body)
				i := strings.Index(body, `<section id="timeline">`)
				section = strings.Index(body[i:], "</section>")
			}
			b.ReportMetric(float64(size), "bytes/page")
			b.ReportMetric(float64(section), "timeline-bytes/page")
		})
	}
}
