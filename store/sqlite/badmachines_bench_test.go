package sqlite_test

import (
	"context"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/crabbox/crabbox-runner/provisioner"
	"github.com/crabbox/crabbox-runner/store/sqlite"
)

// BenchmarkBadMachines: the read each process makes at most every 5 s
// while it looks at offers, with 10,000 machines marked (docs/benchmarks.md,
// "Bad machines"); and one mark's write.
func BenchmarkBadMachines(b *testing.B) {
	ctx := context.Background()
	st, err := sqlite.Open(ctx, filepath.Join(b.TempDir(), "bench.db"))
	if err != nil {
		b.Fatal(err)
	}
	defer st.Close()
	now := time.Now()
	if err := st.InTx(ctx, func(tx provisioner.Tx) error {
		for i := range 10000 {
			m := provisioner.BadMachine{Provider: "vast", Machine: fmt.Sprint(i), Until: now.Add(time.Hour), Reason: "GPU check failed", LeaseID: "l", LastAt: now}
			if err := tx.MarkBadMachine(ctx, m); err != nil {
				return err
			}
		}
		return nil
	}); err != nil {
		b.Fatal(err)
	}
	b.Run("read10k", func(b *testing.B) {
		for b.Loop() {
			ms, err := st.BadMachines(ctx, now)
			if err != nil || len(ms) != 10000 {
				b.Fatal(len(ms), err)
			}
		}
	})
	b.Run("mark", func(b *testing.B) {
		i := 0
		for b.Loop() {
			i++
			m := provisioner.BadMachine{Provider: "vast", Machine: fmt.Sprint(i % 20000), Until: now.Add(time.Hour), Reason: "boot timeout", LastAt: now}
			if err := st.InTx(ctx, func(tx provisioner.Tx) error { return tx.MarkBadMachine(ctx, m) }); err != nil {
				b.Fatal(err)
			}
		}
	})
}
