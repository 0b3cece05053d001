package main

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/crabbox/crabbox-runner/github/githubtest"
	"github.com/crabbox/crabbox-runner/provisioner"
	"github.com/crabbox/crabbox-runner/store"
	"github.com/crabbox/crabbox-runner/store/sqlite"
)

// leases shows what serve runs; release stops it, with serve doing the
// work, even in the middle of a job.
func TestLeasesAndReleaseCommands(t *testing.T) {
	e := startServe(t, "60s", nil)
	id := e.gh.QueueJob(githubtest.JobSpec{Repo: "acme/vision", Org: "acme", Labels: []string{"self-hosted", "crabbox", "a100"},
		Name: "long", Script: "sleep 120"})
	e.waitFor("job running", 60*time.Second, func() bool {
		j, _ := e.gh.Job(id)
		return j.Status == githubtest.StatusInProgress
	})
	e.waitFor("lease busy", 10*time.Second, func() bool {
		ls := e.leases()
		return len(ls) == 1 && ls[0].State == provisioner.StateBusy
	})

	code, out, errs := runCLI(t, e.env, "leases", "--output", "json")
	if code != 0 {
		t.Fatalf("leases: %d %s", code, errs)
	}
	var got []leaseJSON
	if err := json.Unmarshal([]byte(out), &got); err != nil || len(got) != 1 {
		t.Fatalf("leases json: %v\n%s", err, out)
	}
	l := got[0]
	if l.State != "busy" || l.BoundJobID != id || l.Provider != "local" || l.InstanceID == "" || l.PricePerHour == 0 {
		t.Fatalf("lease %+v", l)
	}
	// The job's page on the (fake) GitHub, and a host that has cost
	// something by now.
	j, _ := e.gh.Job(id)
	if want := fmt.Sprintf("%s/acme/vision/actions/runs/%d/job/%d", e.gh.URL(), j.RunID, id); l.JobURL != want || l.CostSoFar <= 0 || l.CostSoFar > 0.89 {
		t.Fatalf("lease job URL %q (want %q), cost %v", l.JobURL, want, l.CostSoFar)
	}
	code, out, _ = runCLI(t, e.env, "leases")
	if code != 0 || !strings.Contains(out, l.ID) || !strings.Contains(out, "cost $0.89/hour") {
		t.Fatalf("leases table:\n%s", out)
	}

	code, out, errs = runCLI(t, e.env, "release", l.ID, "--reason", "test", "--wait", "60s")
	if code != 0 || !strings.Contains(out, "released: 1 of 1") {
		t.Fatalf("release: %d\n%s\n%s", code, out, errs)
	}
	if n := len(e.hosts.Live()); n != 0 {
		t.Fatalf("%d hosts still running", n)
	}
	code, out, _ = runCLI(t, e.env, "leases")
	if code != 0 || !strings.Contains(out, "no leases") {
		t.Fatalf("after release:\n%s", out)
	}
	if code, _, errs := runCLI(t, e.env, "release", "lnosuchlease"); code == 0 || !strings.Contains(errs, "not found") {
		t.Fatalf("release of an unknown lease: %d %s", code, errs)
	}
}

// leaseStore is a SQLite store with leases and jobs written at chosen
// times, for leases and release to read without serve.
type leaseStore struct {
	t     *testing.T
	path  string
	clock time.Time
	st    provisioner.Store
	env   map[string]string
}

func newLeaseStore(t *testing.T) *leaseStore {
	dir := t.TempDir()
	cfg := filepath.Join(dir, "c.yaml")
	os.WriteFile(cfg, []byte(`deployment: doc
providers: {local: {dir: `+dir+`}}
classes:
  - {name: a100, labels: [self-hosted, a100], gpu: {name: A100}, providers: [local]}
`), 0o600)
	ls := &leaseStore{t: t, path: filepath.Join(dir, "d.db")}
	ls.env = map[string]string{"CRABBOX_CONFIG": cfg, "CRABBOX_DATABASE_URL": "sqlite:" + ls.path}
	st, err := store.Open(context.Background(), "sqlite:"+ls.path)
	if err != nil {
		t.Fatal(err)
	}
	st.(*sqlite.Store).SetNow(func() time.Time { return ls.clock })
	ls.st = st
	return ls
}

func (ls *leaseStore) close() { ls.st.Close() }

// at runs fn in a transaction at the given time.
func (ls *leaseStore) at(when time.Time, fn func(tx provisioner.Tx) error) {
	ls.t.Helper()
	ls.clock = when
	if err := ls.st.InTx(context.Background(), fn); err != nil {
		ls.t.Fatal(err)
	}
}

// lease creates a lease at t0 and moves it through states, one a minute:
// booting means its host was created and bills from then.
func (ls *leaseStore) lease(id string, t0 time.Time, price float64, jobID int64, states ...provisioner.State) {
	ls.t.Helper()
	ls.at(t0, func(tx provisioner.Tx) error {
		return tx.InsertLease(context.Background(), &provisioner.Lease{ID: id, Class: "a100", Scope: provisioner.Scope{Org: "acme"},
			State: provisioner.StatePending, JobID: jobID, RunAttempt: 1, RunnerName: "crabbox-doc-" + id})
	})
	for i, s := range states {
		ls.at(t0.Add(time.Duration(i+1)*time.Minute), func(tx provisioner.Tx) error {
			_, err := tx.Transition(context.Background(), id, s, "test", func(l *provisioner.Lease) {
				switch s {
				case provisioner.StateBooting:
					l.Provider, l.InstanceID, l.PricePerHour, l.GPU = "local", "i-"+id, price, "A100 PCIE"
				case provisioner.StateReleased:
					l.ReleasedAt = ls.clock
				}
			})
			return err
		})
	}
}

func (ls *leaseStore) job(id, attempt, runID int64, repo string) {
	ls.t.Helper()
	ls.at(ls.clock, func(tx provisioner.Tx) error {
		return tx.PutJob(context.Background(), &provisioner.Job{ID: id, RunAttempt: attempt, RunID: runID, Repo: repo,
			Scope: provisioner.Scope{Org: "acme"}, Class: "a100", Labels: []string{"self-hosted", "a100"}, Status: provisioner.JobInProgress,
			CreatedAt: ls.clock, UpdatedAt: ls.clock})
	})
}

func (ls *leaseStore) bind(id string, jobID int64) {
	ls.t.Helper()
	ls.at(ls.clock, func(tx provisioner.Tx) error {
		_, err := tx.UpdateLease(context.Background(), id, func(l *provisioner.Lease) { l.BoundJobID = jobID })
		return err
	})
}

// TestLeasesCostAndJobURL: leases shows each lease's cost so far (billed
// from its host's creation to its release or now) and its job's page on
// GitHub, github.com or the GHES host of the API URL.
func TestLeasesCostAndJobURL(t *testing.T) {
	ls := newLeaseStore(t)
	now := time.Now()
	t0 := now.Add(-2 * time.Hour)
	B := provisioner.StateBooting
	// Busy for two hours, billed from t0+2m at $1.50/h; its runner took a
	// later attempt's job (100002, attempt 2), not the one it was made for.
	ls.lease("lbusy", t0, 1.5, 100001, provisioner.StateProvisioning, B, provisioner.StateBootstrapping, provisioner.StateIdle, provisioner.StateBusy)
	ls.job(100002, 2, 900002, "acme/vision")
	ls.bind("lbusy", 100002)
	// Released after exactly 30 billed minutes at $2/h.
	ls.lease("ldone", t0, 2, 0, provisioner.StateProvisioning, B, provisioner.StateBootstrapping, provisioner.StateReleasing)
	ls.at(t0.Add(32*time.Minute), func(tx provisioner.Tx) error {
		_, err := tx.Transition(context.Background(), "ldone", provisioner.StateReleased, "test", func(l *provisioner.Lease) { l.ReleasedAt = ls.clock })
		return err
	})
	// Pending for its queued job: no host, no cost.
	ls.lease("lwait", now.Add(-90*time.Second), 0, 100003)
	ls.job(100003, 1, 900003, "acme/tools")
	ls.close()

	ls.env["CRABBOX_GITHUB_API_URL"] = "https://ghe.example.com/api/v3"
	code, out, errs := runCLI(t, ls.env, "leases", "--all", "--output", "json")
	if code != 0 {
		t.Fatalf("leases: %d %s", code, errs)
	}
	t.Logf("leases --all --output json:\n%s", out)
	var got []leaseJSON
	if err := json.Unmarshal([]byte(out), &got); err != nil || len(got) != 3 {
		t.Fatalf("json: %v\n%s", err, out)
	}
	byID := map[string]leaseJSON{}
	for _, l := range got {
		byID[l.ID] = l
	}
	busy, done, wait := byID["lbusy"], byID["ldone"], byID["lwait"]
	wantBusy := 1.5 * time.Since(t0.Add(2*time.Minute)).Hours()
	if busy.State != "busy" || busy.JobID != 100001 || busy.BoundJobID != 100002 || busy.InstanceID != "i-lbusy" ||
		busy.JobURL != "https://ghe.example.com/acme/vision/actions/runs/900002/job/100002" || busy.JobRepo != "acme/vision" || busy.JobRunID != 900002 ||
		math.Abs(busy.CostSoFar-wantBusy) > 0.01 || busy.AgeSeconds < 7199 || busy.PricePerHour != 1.5 {
		t.Errorf("busy lease: %+v (want cost %.4f)", busy, wantBusy)
	}
	if done.State != "released" || done.CostSoFar != 1.0 || done.JobURL != "" || done.ReleasedAt.IsZero() {
		t.Errorf("released lease: %+v", done)
	}
	if wait.State != "pending" || wait.CostSoFar != 0 || wait.JobURL != "https://ghe.example.com/acme/tools/actions/runs/900003/job/100003" ||
		wait.AgeSeconds < 89 || wait.AgeSeconds > 600 {
		t.Errorf("pending lease: %+v", wait)
	}

	// The table, against github.com, without the released lease.
	delete(ls.env, "CRABBOX_GITHUB_API_URL")
	code, out, errs = runCLI(t, ls.env, "leases")
	if code != 0 {
		t.Fatalf("leases: %d %s", code, errs)
	}
	t.Logf("leases:\n%s", out)
	lines := strings.Split(strings.TrimSpace(out), "\n")
	want := [][]string{
		{"LEASE", "CLASS", "PROVIDER", "INSTANCE", "STATE", "AGE", "$/H", "COST", "JOB", "URL", "GPU", "NOTE"},
		{"lbusy", "a100", "local", "i-lbusy", "busy", "2h", "1.50", "COST", "100002", "https://github.com/acme/vision/actions/runs/900002/job/100002", "-"},
		{"lwait", "a100", "-", "-", "pending", "1m", "0.00", "0.000", "(100003)", "https://github.com/acme/tools/actions/runs/900003/job/100003", "-"},
		{"2 leases; hosts running now cost $1.50/hour; these leases cost $"},
	}
	if len(lines) != len(want) {
		t.Fatalf("table:\n%s", out)
	}
	for i, cells := range want[:3] {
		fields := strings.Fields(lines[i])
		if len(fields) != len(cells) {
			t.Errorf("line %d %q: %d cells, want %d", i, lines[i], len(fields), len(cells))
			continue
		}
		for j, c := range cells {
			if i == 1 && c == "COST" {
				if cost, err := strconv.ParseFloat(fields[j], 64); err != nil || math.Abs(cost-wantBusy) > 0.01 {
					t.Errorf("lbusy cost %q, want %.3f", fields[j], wantBusy)
				}
			} else if !strings.HasPrefix(fields[j], c) {
				t.Errorf("line %d cell %d %q, want %q", i, j, fields[j], c)
			}
		}
	}
	var total float64
	if _, err := fmt.Sscanf(strings.TrimPrefix(lines[3], want[3][0]), "%f so far", &total); err != nil || math.Abs(total-wantBusy) > 0.01 {
		t.Errorf("footer %q: %v", lines[3], err)
	}
	if code, _, errs := runCLI(t, ls.env, "leases", "--output", "yaml"); code == 0 || !strings.Contains(errs, "--output") {
		t.Errorf("--output yaml: %d %s", code, errs)
	}
}

// TestReleaseCommand: release moves a lease to releasing and enqueues its
// release for serve's workers, says what it did with leases already on
// their way out, and names leases that do not exist.
func TestReleaseCommand(t *testing.T) {
	ls := newLeaseStore(t)
	t0 := time.Now().Add(-time.Hour)
	ls.lease("lidle", t0, 1, 0, provisioner.StateProvisioning, provisioner.StateBooting, provisioner.StateBootstrapping, provisioner.StateIdle)
	// Busy: releasing lidle must not touch it (an idle one would be
	// released too, as a surplus with no job queued).
	ls.lease("lother", t0, 1, 0, provisioner.StateProvisioning, provisioner.StateBooting, provisioner.StateBootstrapping, provisioner.StateBusy)
	ls.lease("lgone", t0, 1, 0, provisioner.StateReleasing, provisioner.StateReleased)
	ls.close()

	code, out, errs := runCLI(t, ls.env, "release", "lidle", "--reason", "by hand in a test")
	if code != 0 || !strings.Contains(out, "lease lidle: release requested (was idle)") {
		t.Fatalf("release: %d\n%s\n%s", code, out, errs)
	}
	code, out, _ = runCLI(t, ls.env, "release", "lidle", "lgone")
	if code != 0 || !strings.Contains(out, "lease lidle: already being released") || !strings.Contains(out, "lease lgone: already released") {
		t.Fatalf("release again: %d\n%s", code, out)
	}
	code, out, errs = runCLI(t, ls.env, "release", "lnosuch", "lother", "lnothere")
	if code != 1 || !strings.Contains(out, "lease lother: release requested") ||
		!strings.Contains(errs, "lease lnosuch: not found") || !strings.Contains(errs, "lease lnothere: not found") {
		t.Fatalf("release with unknown leases: %d\n%s\n%s", code, out, errs)
	}

	st, err := store.Open(context.Background(), "sqlite:"+ls.path)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	for _, id := range []string{"lidle", "lother"} {
		l, err := st.Lease(context.Background(), id)
		if err != nil || l.State != provisioner.StateReleasing {
			t.Errorf("%s: %v %+v", id, err, l)
		}
	}
	if l, _ := st.Lease(context.Background(), "lidle"); l.ReleaseReason != "by hand in a test" {
		t.Errorf("release reason %q", l.ReleaseReason)
	}
	// The release is durable work for serve: one job per lease.
	rows, err := st.(*sqlite.Store).DB().Query(`SELECT kind, args FROM river_job ORDER BY id`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var jobs []string
	for rows.Next() {
		var kind, args string
		if err := rows.Scan(&kind, &args); err != nil {
			t.Fatal(err)
		}
		jobs = append(jobs, kind+" "+args)
	}
	if len(jobs) != 2 || !strings.Contains(jobs[0], "release") || !strings.Contains(jobs[0], "lidle") || !strings.Contains(jobs[1], "lother") {
		t.Errorf("river jobs: %q", jobs)
	}

	// Without a database there is nothing to release.
	env := map[string]string{"CRABBOX_CONFIG": ls.env["CRABBOX_CONFIG"], "CRABBOX_DATABASE_URL": "sqlite:" + filepath.Join(t.TempDir(), "none.db")}
	if code, _, errs := runCLI(t, env, "release", "lidle"); code == 0 || !strings.Contains(errs, "no database at") {
		t.Errorf("release without a database: %d %s", code, errs)
	}
}

// A hedge (hedge_after) says whose hedge it is, in the table and the JSON;
// the lease it hedges says when the hedge started.
func TestLeasesShowHedge(t *testing.T) {
	ls := newLeaseStore(t)
	t0 := time.Now().Add(-5 * time.Minute)
	ls.lease("lfirst", t0, 1.5, 100001, provisioner.StateProvisioning, provisioner.StateBooting)
	ls.lease("lsecond", t0.Add(3*time.Minute), 0, 100001)
	ls.at(t0.Add(3*time.Minute), func(tx provisioner.Tx) error {
		if _, err := tx.UpdateLease(context.Background(), "lsecond", func(l *provisioner.Lease) { l.HedgeOf = "lfirst" }); err != nil {
			return err
		}
		_, err := tx.UpdateLease(context.Background(), "lfirst", func(l *provisioner.Lease) { l.HedgedAt = ls.clock })
		return err
	})
	ls.close()
	code, out, errs := runCLI(t, ls.env, "leases")
	if code != 0 {
		t.Fatalf("leases: %d %s", code, errs)
	}
	for _, line := range strings.Split(out, "\n") {
		if strings.HasPrefix(line, "lsecond") != strings.Contains(line, "hedge of lfirst") {
			t.Errorf("line %q", line)
		}
	}
	code, out, errs = runCLI(t, ls.env, "leases", "--output", "json")
	if code != 0 {
		t.Fatalf("leases: %d %s", code, errs)
	}
	var got []leaseJSON
	if err := json.Unmarshal([]byte(out), &got); err != nil || len(got) != 2 {
		t.Fatalf("json: %v\n%s", err, out)
	}
	if got[0].ID != "lfirst" || got[0].HedgedAt.IsZero() || got[0].HedgeOf != "" || got[1].HedgeOf != "lfirst" {
		t.Errorf("json: %+v", got)
	}
}
