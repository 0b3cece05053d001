package storetest

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"reflect"
	"slices"
	"testing"
	"time"

	"github.com/crabbox/crabbox-runner/provisioner"
)

// testDemandFollowsChanges walks jobs and leases of two classes in two
// scopes through random changes, some in transactions that roll back, and
// after each checks Demand against a model of what it must count. SQLite
// keeps the counts in a table moved by triggers; this is what keeps those
// triggers honest.
func testDemandFollowsChanges(t *testing.T, s provisioner.Store) {
	ctx := context.Background()
	rng := rand.New(rand.NewPCG(7, 11))
	classes := []string{"a100", "h100"}
	scopes := []provisioner.Scope{{Org: "acme"}, {Repo: "solo/ml"}}
	jobStatuses := []provisioner.JobStatus{provisioner.JobWaiting, provisioner.JobQueued, provisioner.JobInProgress, provisioner.JobCompleted}

	jobs := map[int64]*provisioner.Job{}
	leases := map[string]*provisioner.Lease{}
	errRollback := errors.New("roll back")
	nextJob, nextLease := int64(0), 0

	check := func(step int) {
		t.Helper()
		for _, c := range classes {
			for _, sc := range scopes {
				wantQ, wantA := 0, 0
				for _, j := range jobs {
					if j.Class == c && j.Scope.Key() == sc.Key() && j.Status == provisioner.JobQueued && j.Unservable.Kind == "" {
						wantQ++
					}
				}
				for _, l := range leases {
					if l.Class == c && l.Scope.Key() == sc.Key() && l.ReleaseReason == "" && l.State.Available() {
						wantA++
					}
				}
				// The failure is reported after the transaction ends: a
				// Fatalf inside it would leave it open and hang the store.
				var q, a int
				inTx(t, s, func(tx provisioner.Tx) error {
					var err error
					q, a, err = tx.Demand(ctx, c, sc.Key())
					return err
				})
				if q != wantQ || a != wantA {
					t.Fatalf("step %d, %s in %s: demand queued %d available %d; want %d and %d", step, c, sc.Key(), q, a, wantQ, wantA)
				}
			}
		}
	}

	for step := range 300 {
		rollback := rng.IntN(6) == 0
		// Changes are made on copies and kept in the model only on commit.
		newJobs := map[int64]*provisioner.Job{}
		newLeases := map[string]*provisioner.Lease{}
		err := s.InTx(ctx, func(tx provisioner.Tx) error {
			for range 1 + rng.IntN(3) {
				switch op := rng.IntN(4); {
				case op == 0 || len(jobs) == 0: // a new job
					nextJob++
					id := nextJob
					j := &provisioner.Job{ID: id, RunAttempt: 1, Repo: "acme/ml", Class: classes[rng.IntN(2)],
						Scope: scopes[rng.IntN(2)], Status: jobStatuses[rng.IntN(3)]}
					if rng.IntN(4) == 0 {
						j.Unservable = provisioner.Unservable{Kind: provisioner.RefusedPublic, Reason: "public", At: t0}
					}
					if err := tx.PutJob(ctx, j); err != nil {
						return err
					}
					newJobs[id] = j
				case op == 1: // a job moves on, or is rewritten as it is
					var ids []int64
					for id := range jobs {
						ids = append(ids, id)
					}
					slices.Sort(ids)
					id := ids[rng.IntN(len(ids))]
					j := *jobs[id]
					if nj, ok := newJobs[id]; ok {
						j = *nj
					}
					switch r := rng.IntN(6); {
					case r < 3 && j.Status != provisioner.JobCompleted:
						j.Status = jobStatuses[min(int(rankOf(j.Status))+1, 3)]
					case r == 3 && j.Unservable.Kind == "":
						// Marked unservable: no longer demand.
						j.Unservable = provisioner.Unservable{Kind: provisioner.UnservableGroup, Reason: "group", At: t0}
					case r == 4:
						j.Unservable = provisioner.Unservable{}
					}
					if err := tx.PutJob(ctx, &j); err != nil {
						return err
					}
					newJobs[id] = &j
				case op == 2 || len(leases) == 0: // a new lease
					nextLease++
					l := sampleLease(fmt.Sprintf("d%d", nextLease))
					l.Class, l.Scope = classes[rng.IntN(2)], scopes[rng.IntN(2)]
					l.State = provisioner.AllStates[rng.IntN(len(provisioner.AllStates))]
					if rng.IntN(5) == 0 {
						l.ReleaseReason = "asked"
					}
					if err := tx.InsertLease(ctx, l); err != nil {
						return err
					}
					newLeases[l.ID] = l
				default: // a lease moves on, or is asked to stop
					var ids []string
					for id := range leases {
						ids = append(ids, id)
					}
					slices.Sort(ids)
					id := ids[rng.IntN(len(ids))]
					cur, err := tx.Lease(ctx, id)
					if err != nil {
						return err
					}
					var next []provisioner.State
					for _, to := range provisioner.AllStates {
						if provisioner.CanTransition(cur.State, to) {
							next = append(next, to)
						}
					}
					var l *provisioner.Lease
					if len(next) > 0 && rng.IntN(3) > 0 {
						l, err = tx.Transition(ctx, id, next[rng.IntN(len(next))], "walk", nil)
					} else {
						l, err = tx.UpdateLease(ctx, id, func(l *provisioner.Lease) {
							if l.ReleaseReason == "" {
								l.ReleaseReason = "asked"
							} else {
								l.ReleaseReason = ""
							}
						})
					}
					if err != nil {
						return err
					}
					newLeases[id] = l
				}
			}
			if rollback {
				return errRollback
			}
			return nil
		})
		if err != nil && !errors.Is(err, errRollback) {
			t.Fatalf("step %d: %v", step, err)
		}
		if err == nil {
			for id, j := range newJobs {
				jobs[id] = j
			}
			for id, l := range newLeases {
				leases[id] = l
			}
		}
		check(step)
	}
}

func rankOf(s provisioner.JobStatus) int {
	switch s {
	case provisioner.JobWaiting:
		return 0
	case provisioner.JobQueued:
		return 1
	case provisioner.JobInProgress:
		return 2
	}
	return 3
}

// testInsertLeases inserts more leases than one statement takes: each reads
// back whole, with its "created" event, and the counts follow.
func testInsertLeases(t *testing.T, s provisioner.Store) {
	ctx := context.Background()
	var ls []*provisioner.Lease
	for i := range 450 {
		l := sampleLease(fmt.Sprintf("m%03d", i))
		l.QueuedAt = t0.Add(-time.Second)
		ls = append(ls, l)
	}
	inTx(t, s, func(tx provisioner.Tx) error { return tx.InsertLeases(ctx, ls) })
	all, err := s.Leases(ctx, provisioner.LeaseFilter{})
	if err != nil || len(all) != len(ls) {
		t.Fatalf("%d leases read back, want %d (%v)", len(all), len(ls), err)
	}
	got, err := s.Lease(ctx, "m321")
	if err != nil {
		t.Fatal(err)
	}
	want := *ls[321]
	// Times are kept to the microsecond, in UTC.
	want.UpdatedAt = want.UpdatedAt.Truncate(time.Microsecond).UTC()
	want.StateChangedAt = want.StateChangedAt.Truncate(time.Microsecond).UTC()
	if !reflect.DeepEqual(*got, want) {
		t.Fatalf("lease m321:\n got %+v\nwant %+v", *got, want)
	}
	events, err := s.LeaseEvents(ctx, "m449")
	if err != nil || len(events) != 1 || events[0].To != provisioner.StatePending || events[0].Reason != "created" {
		t.Fatalf("events of m449: %+v %v", events, err)
	}
	inTx(t, s, func(tx provisioner.Tx) error {
		_, a, err := tx.Demand(ctx, "a100", provisioner.Scope{Org: "acme", InstallationID: 9}.Key())
		if err != nil || a != len(ls) {
			t.Fatalf("available %d, want %d (%v)", a, len(ls), err)
		}
		return nil
	})
}

// testRecordEvent: the start of every delivery, one round trip on
// PostgreSQL and statements in turn on SQLite, with the same answers.
func testRecordEvent(t *testing.T, s provisioner.Store) {
	ctx := context.Background()
	rec := func(e provisioner.EventRecord) provisioner.EventRecorded {
		t.Helper()
		var out provisioner.EventRecorded
		inTx(t, s, func(tx provisioner.Tx) error {
			var err error
			out, err = tx.RecordEvent(ctx, e)
			return err
		})
		return out
	}
	ev := provisioner.EventRecord{GUID: "g1", Event: "workflow_job", Action: "queued", At: t0, Job: true, JobID: 5, RunAttempt: 1, Status: "queued"}
	if got := rec(ev); !got.NewDelivery || !got.NewJobEvent || got.Job != nil {
		t.Fatalf("first: %+v", got)
	}
	if got := rec(ev); got.NewDelivery || got.NewJobEvent || got.Job != nil {
		t.Fatalf("same GUID: %+v", got)
	}
	ev.GUID = "g2"
	if got := rec(ev); !got.NewDelivery || got.NewJobEvent {
		t.Fatalf("same job event, new GUID: %+v", got)
	}
	ev.GUID = ""
	if got := rec(ev); !got.NewDelivery || got.NewJobEvent {
		t.Fatalf("same job event, no GUID: %+v", got)
	}
	// A stored job is read back with a new status of it.
	inTx(t, s, func(tx provisioner.Tx) error {
		return tx.PutJob(ctx, &provisioner.Job{ID: 5, RunAttempt: 1, Repo: "acme/ml", Scope: provisioner.Scope{Org: "acme"},
			Class: "a100", Status: provisioner.JobQueued})
	})
	ev.GUID, ev.Action, ev.Status = "g3", "in_progress", "in_progress"
	if got := rec(ev); !got.NewDelivery || !got.NewJobEvent || got.Job == nil || got.Job.Status != provisioner.JobQueued {
		t.Fatalf("new status of a stored job: %+v", got)
	}
	// Not ours: only the delivery is recorded.
	other := provisioner.EventRecord{GUID: "g4", Event: "workflow_job", Action: "queued", At: t0, JobID: 6, RunAttempt: 1, Status: "queued"}
	if got := rec(other); !got.NewDelivery || got.NewJobEvent || got.Job != nil {
		t.Fatalf("not ours: %+v", got)
	}
	other.Job, other.GUID = true, "g5"
	if got := rec(other); !got.NewDelivery || !got.NewJobEvent {
		t.Fatalf("job 6's event was recorded by the delivery that was not ours: %+v", got)
	}
}

// testNewestQueuedJobs: the jobs a balance makes leases for are the newest
// queued ones without a lease that can still take a job. A lease that
// failed, was released, is flagged for release or runs another job leaves
// its job wanting one.
func testNewestQueuedJobs(t *testing.T, s provisioner.Store) {
	ctx := context.Background()
	scope := provisioner.Scope{Org: "acme"}
	inTx(t, s, func(tx provisioner.Tx) error {
		for i := int64(1); i <= 8; i++ {
			j := &provisioner.Job{ID: i, RunAttempt: 1, Repo: "acme/ml", Scope: scope, Class: "a100",
				Status: provisioner.JobQueued, CreatedAt: t0.Add(time.Duration(i) * time.Second)}
			if i == 8 {
				j.Status = provisioner.JobInProgress
			}
			if err := tx.PutJob(ctx, j); err != nil {
				return err
			}
		}
		// Jobs 1 and 2 have leases that can take them; 3 to 6 had leases
		// that cannot any more; 7 never had one.
		for i, l := range []struct {
			job    int64
			state  provisioner.State
			reason string
		}{
			{1, provisioner.StatePending, ""}, {2, provisioner.StateIdle, ""},
			{3, provisioner.StateFailed, ""}, {4, provisioner.StateReleased, ""},
			{5, provisioner.StateBooting, "cancelled"}, {6, provisioner.StateBusy, ""},
		} {
			lease := sampleLease(fmt.Sprintf("n%d", i))
			lease.Scope, lease.State, lease.ReleaseReason, lease.JobID, lease.RunAttempt = scope, l.state, l.reason, l.job, 1
			if err := tx.InsertLease(ctx, lease); err != nil {
				return err
			}
		}
		return nil
	})
	inTx(t, s, func(tx provisioner.Tx) error {
		for _, tc := range []struct {
			n    int
			want []int64
		}{{10, []int64{3, 4, 5, 6, 7}}, {2, []int64{6, 7}}} {
			jobs, err := tx.NewestQueuedJobs(ctx, "a100", scope.Key(), tc.n)
			if err != nil {
				return err
			}
			var got []int64
			for _, j := range jobs {
				got = append(got, j.ID)
			}
			if !slices.Equal(got, tc.want) {
				t.Errorf("newest %d queued jobs without a lease: %v, want %v", tc.n, got, tc.want)
			}
		}
		return nil
	})

	// The look is bounded: a job under n+1000 or more newer ones that
	// have leases is not dug out (a balance that fell behind would dig
	// through them on every pass).
	deep := provisioner.Scope{Org: "deep"}
	inTx(t, s, func(tx provisioner.Tx) error {
		var leases []*provisioner.Lease
		for i := int64(1); i <= 1012; i++ {
			j := &provisioner.Job{ID: 1000 + i, RunAttempt: 1, Repo: "deep/ml", Scope: deep, Class: "a100",
				Status: provisioner.JobQueued, CreatedAt: t0.Add(time.Duration(i) * time.Second)}
			if err := tx.PutJob(ctx, j); err != nil {
				return err
			}
			if i > 1 {
				l := sampleLease(fmt.Sprintf("d%04d", i))
				l.Scope, l.JobID, l.RunAttempt, l.RunnerName = deep, j.ID, 1, fmt.Sprintf("deep-%d", i)
				leases = append(leases, l)
			}
		}
		return tx.InsertLeases(ctx, leases)
	})
	inTx(t, s, func(tx provisioner.Tx) error {
		for _, tc := range []struct {
			n    int
			want int
		}{{12, 1}, {11, 0}, {1, 0}} {
			jobs, err := tx.NewestQueuedJobs(ctx, "a100", deep.Key(), tc.n)
			if err != nil {
				return err
			}
			if len(jobs) != tc.want || (tc.want == 1 && jobs[0].ID != 1001) {
				t.Errorf("n %d: %d jobs found under 1,011 newer ones with leases, want %d", tc.n, len(jobs), tc.want)
			}
		}
		return nil
	})
}
