package status_test

import (
	"context"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/crabbox/crabbox-runner/provisioner"
	"github.com/crabbox/crabbox-runner/store/sqlite"
)

// The machines avoided are listed with provider, machine, until when, the
// count of marks and the reason, escaped; marks that ran out are not.
func TestPageShowsBadMachines(t *testing.T) {
	ctx := context.Background()
	st, err := sqlite.Open(ctx, filepath.Join(t.TempDir(), "bad.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	h := newHandler(t, st, "", nil)
	if _, body := get(t, h, nil); !strings.Contains(body, "No machine is avoided") {
		t.Fatalf("page without marks lacks the empty note:\n%s", body)
	}
	for _, m := range []provisioner.BadMachine{
		{Provider: "vast", Machine: "4242", Until: now.Add(20 * time.Hour), Reason: hostileError, LeaseID: "l-1", LastAt: now.Add(-4 * time.Hour)},
		{Provider: "vast", Machine: "4242", Until: now.Add(23 * time.Hour), Reason: "GPU check failed", LeaseID: "l-2", LastAt: now.Add(-time.Hour)},
		{Provider: "lambda", Machine: "gpu_1x_a100@us-east-1", Until: now.Add(30 * time.Minute), Reason: hostileError, LastAt: now.Add(-30 * time.Minute)},
		{Provider: "vast", Machine: "77", Until: now.Add(-time.Minute), Reason: "ran out", LastAt: now.Add(-25 * time.Hour)},
	} {
		if err := st.InTx(ctx, func(tx provisioner.Tx) error { return tx.MarkBadMachine(ctx, m) }); err != nil {
			t.Fatal(err)
		}
	}
	_, body := get(t, h, nil)
	_, section, _ := strings.Cut(body, `<section id="bad-machines">`)
	section, _, _ = strings.Cut(section, "</section>")
	rows := strings.Split(section, `<tr class="bad-machine">`)[1:]
	if len(rows) != 2 {
		t.Fatalf("%d rows, want the two marks not run out:\n%s", len(rows), section)
	}
	// The one ending last first: vast 4242, marked twice, the latest reason.
	for _, want := range []string{"<td>vast</td><td>4242</td>", "Nov 24 14:00", "<td>2</td>", "GPU check failed", "lease l-2"} {
		if !strings.Contains(rows[0], want) {
			t.Errorf("row 1 lacks %q: %s", want, rows[0])
		}
	}
	for _, want := range []string{"<td>lambda</td><td>gpu_1x_a100@us-east-1</td>", "15:30:00", "boot timeout &lt;img src=x"} {
		if !strings.Contains(rows[1], want) {
			t.Errorf("row 2 lacks %q: %s", want, rows[1])
		}
	}
	if strings.Contains(section, "ran out") || strings.Contains(body, "<img src=x") {
		t.Errorf("a run-out mark or unescaped text on the page:\n%s", section)
	}
}
