package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/crabbox/crabbox-runner/provisioner"
	"github.com/crabbox/crabbox-runner/store/sqlite"
)

const strictConfig = `deployment: e2e
database_url: sqlite:DIR/serve.db
providers: {local: {dir: DIR/hosts}}
runner: {version: "2.330.0", sha256: "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"}
classes:
  - name: a100
    labels: [self-hosted, a100]
    providers: [local]
`

// writeStrictConfig writes strictConfig with extra appended, its files in a
// directory of the test's own.
func writeStrictConfig(t *testing.T, extra string) string {
	dir := t.TempDir()
	path := dir + "/c.yaml"
	writeFile(t, path, strings.ReplaceAll(strictConfig, "DIR", dir)+extra)
	return path
}

// runServeBounded runs the CLI as runCLI does, but stops it after 10 s: a
// serve that should have refused to start and did not ends the test with
// exit 0 instead of running on.
func runServeBounded(t *testing.T, env map[string]string, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var out, errb bytes.Buffer
	code = run(ctx, args, &out, &errb, func(k string) string { return env[k] })
	return code, out.String(), errb.String()
}

// TestServeRefusesWeakWebhookSecret: serve used to start with
// CRABBOX_WEBHOOK_SECRET=a. It now exits with how to make a secret, without
// echoing the one it was given.
func TestServeRefusesWeakWebhookSecret(t *testing.T) {
	path := writeStrictConfig(t, "")
	weak := "short-secret"
	code, _, errs := runServeBounded(t, map[string]string{"CRABBOX_CONFIG": path, "CRABBOX_WEBHOOK_SECRET": weak, "CRABBOX_GITHUB_TOKEN": "t"},
		"serve", "--listen", "127.0.0.1:0")
	if code == 0 || !strings.Contains(errs, "webhook.secret_file") || !strings.Contains(errs, "openssl rand -hex 32") {
		t.Fatalf("serve with a %d-byte secret: exit %d, %s", len(weak), code, errs)
	}
	if strings.Contains(errs, weak) {
		t.Fatalf("the secret is in the error: %s", errs)
	}
}

// TestServeRefusesNaNCaps: .nan as a price or spend cap meant no cap.
func TestServeRefusesNaNCaps(t *testing.T) {
	for _, tc := range []struct{ extra, key string }{
		{"    max_price_per_hour: .nan\n", "classes[0] (a100).max_price_per_hour"},
		{"limits: {max_spend_per_hour: .nan}\n", "limits.max_spend_per_hour"},
		{"retention: {deliveries: 1h}\n", "retention.deliveries"},
	} {
		path := writeStrictConfig(t, tc.extra)
		code, _, errs := runServeBounded(t, map[string]string{"CRABBOX_CONFIG": path, "CRABBOX_WEBHOOK_SECRET": "0123456789abcdef", "CRABBOX_GITHUB_TOKEN": "t"},
			"serve", "--listen", "127.0.0.1:0")
		if code == 0 || !strings.Contains(errs, tc.key) {
			t.Fatalf("%s: exit %d, %s", tc.extra, code, errs)
		}
	}
}

// TestServePrunesOldDeliveries: the database kept every delivery, lease
// and job forever. Through serve: deliveries and job events older than
// retention.deliveries, and released leases older than retention.history,
// are deleted by the leader's reconcile pass, recent ones kept, and the
// database file is 0600.
func TestServePrunesOldDeliveries(t *testing.T) {
	e := startServeWith(t, serveSetup{extraConfig: "reconcile: {interval: 1s}\nretention: {deliveries: 72h, history: 72h}\n"})
	ctx := context.Background()
	st, err := sqlite.Open(ctx, e.dbPath)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	now := time.Now()
	err = st.InTx(ctx, func(tx provisioner.Tx) error {
		for i := range 50 {
			if _, err := tx.RecordDelivery(ctx, fmt.Sprintf("old-%d", i), "workflow_job", "queued", now.Add(-100*time.Hour)); err != nil {
				return err
			}
			if _, err := tx.RecordJobEvent(ctx, int64(9000+i), 1, "completed", "", now.Add(-100*time.Hour)); err != nil {
				return err
			}
		}
		for name, at := range map[string]time.Time{"old": now.Add(-100 * time.Hour), "recent": now.Add(-70 * time.Hour)} {
			err := tx.InsertLease(ctx, &provisioner.Lease{ID: "hist-" + name, Class: "gpu", State: provisioner.StateReleased,
				RunnerName: "crabbox-hist-" + name, CreatedAt: at.Add(-time.Hour), ReleasedAt: at, ReleaseReason: "job done"})
			if err != nil {
				return err
			}
		}
		_, err := tx.RecordDelivery(ctx, "recent", "workflow_job", "queued", now.Add(-70*time.Hour))
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	count := func(q string) int {
		var n int
		if err := st.DB().QueryRowContext(ctx, q).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}
	deadline := time.Now().Add(20 * time.Second)
	for count(`SELECT count(*) FROM crabbox_delivery WHERE guid LIKE 'old-%'`)+count(`SELECT count(*) FROM crabbox_job_event WHERE job_id >= 9000`)+
		count(`SELECT count(*) FROM crabbox_lease WHERE id = 'hist-old'`) > 0 {
		if time.Now().After(deadline) {
			t.Fatal("old deliveries, job events or released leases still there after 20 s of 1 s reconcile passes")
		}
		time.Sleep(200 * time.Millisecond)
	}
	if count(`SELECT count(*) FROM crabbox_delivery WHERE guid = 'recent'`) != 1 {
		t.Fatal("a delivery inside the retention was pruned")
	}
	if count(`SELECT count(*) FROM crabbox_lease WHERE id = 'hist-recent'`) != 1 {
		t.Fatal("a lease released inside retention.history was pruned")
	}
	if fi, err := os.Stat(e.dbPath); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("database file: %v %v, want mode 600", fi.Mode(), err)
	}
}
