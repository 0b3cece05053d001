package status_test

import (
	"context"
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

// The warm hosts section: per class with min_idle, its target, the warm
// hosts ready and starting, since when the oldest ready one idles and
// their price now. A warm lease that took a job, or is being released,
// no longer counts; a page with no class with min_idle has no section.
func TestPageShowsWarmHosts(t *testing.T) {
	ctx := context.Background()
	st, err := sqlite.Open(ctx, filepath.Join(t.TempDir(), "warm.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	if _, body := get(t, newHandler(t, st, "", nil), nil); strings.Contains(body, `id="warm-hosts"`) {
		t.Fatal("warm hosts section without any class with min_idle")
	}
	h, err := status.New(status.Config{Store: st, MinIdle: map[string]int{"a100": 2, "h100": 1},
		Now: func() time.Time { return now }, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	lease := func(id string, state provisioner.State, warm bool, mut func(*provisioner.Lease)) {
		l := &provisioner.Lease{ID: id, Class: "a100", Scope: provisioner.Scope{Org: "acme"}, State: provisioner.StatePending,
			RunnerName: "r-" + id, Warm: warm, CreatedAt: now.Add(-time.Hour)}
		if err := st.InTx(ctx, func(tx provisioner.Tx) error {
			if err := tx.InsertLease(ctx, l); err != nil {
				return err
			}
			path := map[provisioner.State][]provisioner.State{
				provisioner.StatePending: nil,
				provisioner.StateBooting: {provisioner.StateProvisioning, provisioner.StateBooting},
				provisioner.StateIdle:    {provisioner.StateProvisioning, provisioner.StateBooting, provisioner.StateBootstrapping, provisioner.StateIdle},
				provisioner.StateBusy:    {provisioner.StateProvisioning, provisioner.StateBooting, provisioner.StateBootstrapping, provisioner.StateIdle, provisioner.StateBusy},
			}[state]
			for _, s := range path {
				if _, err := tx.Transition(ctx, id, s, "test", func(l *provisioner.Lease) {
					l.Provider, l.PricePerHour = "vast", 1.5
					if s == provisioner.StateBooting {
						l.InstanceID = "i-" + id
					}
					if mut != nil {
						mut(l)
					}
				}); err != nil {
					return err
				}
			}
			return nil
		}); err != nil {
			t.Fatal(err)
		}
	}
	lease("w-ready", provisioner.StateIdle, true, func(l *provisioner.Lease) { l.IdleSince = now.Add(-10 * time.Minute) })
	lease("w-boot", provisioner.StateBooting, true, nil)
	lease("w-taken", provisioner.StateBusy, true, nil)
	lease("o-idle", provisioner.StateIdle, false, nil)
	_, body := get(t, h, nil)
	_, section, ok := strings.Cut(body, `<section id="warm-hosts">`)
	if !ok {
		t.Fatalf("no warm hosts section:\n%s", body)
	}
	section, _, _ = strings.Cut(section, "</section>")
	rows := strings.Split(section, `<tr class="warm-row">`)[1:]
	if len(rows) != 2 {
		t.Fatalf("%d rows, want a100 and h100:\n%s", len(rows), section)
	}
	for _, want := range []string{"<td>a100</td>", `<td class="num">2</td><td class="num">1</td><td class="num">1</td>`, "14:50:00", "$3.00/h"} {
		if !strings.Contains(rows[0], want) {
			t.Errorf("a100 row lacks %q: %s", want, rows[0])
		}
	}
	for _, want := range []string{"<td>h100</td>", `<td class="num">1</td><td class="num">0</td><td class="num">0</td>`, "—", "$0.00/h"} {
		if !strings.Contains(rows[1], want) {
			t.Errorf("h100 row lacks %q: %s", want, rows[1])
		}
	}
}
