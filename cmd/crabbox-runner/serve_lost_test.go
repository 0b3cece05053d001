package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/crabbox/crabbox-runner/github/githubtest"
	"github.com/crabbox/crabbox-runner/provisioner"
)

// A lost job's whole way back, across the parts of issue 17: a Vast host is
// lost under its job (outbid, or crashed without a word from Vast), the
// job fails on GitHub once its runner stops renewing, crabbox-runner
// re-runs it once, and the re-run runs to success on a new host.

// lostJobSetup serves an A100 class with rerun_lost_jobs (and bids when
// interruptible), a reconcile pass every interval, and a fake GitHub that
// fails a job lostJobTimeout after its runner's last renewal. The job it
// returns sleeps on its first run and succeeds on the next.
func lostJobSetup(t *testing.T, interruptible bool, interval time.Duration) (*vastE2E, int64, string) {
	t.Helper()
	lines := "    rerun_lost_jobs: true\n"
	if interruptible {
		lines += "    interruptible: {bid: 1.2}\n"
	}
	e2eConfigTweak = func(cfg string) string {
		cfg = strings.Replace(cfg, "    max_lifetime: 30m\n", "    max_lifetime: 30m\n"+lines, 1)
		return cfg + fmt.Sprintf("reconcile: {interval: %s}\n", interval)
	}
	e2eLostRunnerTimeout = lostJobTimeout
	t.Cleanup(func() { e2eConfigTweak, e2eLostRunnerTimeout = nil, 0 })
	e := startServeVast(t, "60s", nil)
	mark := filepath.Join(t.TempDir(), "ran-once")
	id := e.gh.QueueJob(githubtest.JobSpec{Repo: "acme/vision", Org: "acme", Labels: []string{"self-hosted", "crabbox", "A100"},
		Name: "train", Script: `if [ -e ` + mark + ` ]; then echo second run; else touch ` + mark + `; sleep 600; fi`})
	return e, id, mark
}

// busyLease waits until job runs on a busy lease and, when mark is set,
// its script has started (mark exists: GitHub calls a job in progress once
// a runner took it, before its first step), and returns the lease.
func busyLease(e *e2e, job int64, mark string) *provisioner.Lease {
	e.t.Helper()
	if mark != "" {
		e.waitFor("the job's script started", 90*time.Second, func() bool {
			_, err := os.Stat(mark)
			return err == nil
		})
	}
	var l *provisioner.Lease
	e.waitFor("the job's lease busy", 90*time.Second, func() bool {
		for _, x := range e.leases() {
			if x.BoundJobID == job && x.State == provisioner.StateBusy {
				l = x
				return true
			}
		}
		return false
	})
	return l
}

// checkRerunOnNewHost checks that job failed, was re-run exactly once, and
// that the re-run succeeded on another lease and instance than lost.
func checkRerunOnNewHost(e *vastE2E, job int64, lost *provisioner.Lease, wantReason string) {
	t := e.t
	t.Helper()
	if j := e.waitJob(job); j.Conclusion != "failure" {
		t.Fatalf("the lost job: %+v", j)
	}
	var rerun int64
	e.waitFor("the re-run", 60*time.Second, func() bool {
		for _, j := range e.gh.Jobs() {
			if j.RerunOf == job {
				rerun = j.ID
				return true
			}
		}
		return false
	})
	if j := e.waitJob(rerun); j.Conclusion != "success" {
		t.Fatalf("the re-run: %+v\n%s", j, tail(e.logs.String(), 30))
	}
	var first, second *provisioner.Lease
	for _, l := range e.leases() {
		switch l.ID {
		case lost.ID:
			first = l
		default:
			if l.BoundJobID == rerun {
				second = l
			}
		}
	}
	if first == nil || first.LostReason != wantReason {
		t.Fatalf("the lost lease: %+v", first)
	}
	if second == nil || second.InstanceID == first.InstanceID {
		t.Fatalf("the re-run's lease %+v, the lost one's instance %s", second, first.InstanceID)
	}
	if c := e.gh.RequestStats().ByEndpoint["POST /repos/{owner}/{repo}/actions/jobs/{job_id}/rerun"]; c.Counted != 1 {
		t.Errorf("re-run requests: %+v, want 1", c)
	}
	if n, _ := strconv.ParseInt(first.InstanceID, 10, 64); n != 0 {
		if inst, _ := e.vast.Instance(n); !inst.Destroyed {
			t.Errorf("the lost host %d was not destroyed", n)
		}
	}
	if m := e.get("/metrics"); !strings.Contains(m, `crabbox_jobs_rerun_total{class="a100",result="requested"} 1`) {
		t.Errorf("/metrics: %s", grepLines(m, "crabbox_jobs_rerun"))
	}
}

// Outbid mid-job, seen by the host watch: the lease is released as
// outbid, GitHub fails the job, the job is re-run on a new host.
func TestServeOutbidJobRerunOnNewHost(t *testing.T) {
	e, id, mark := lostJobSetup(t, true, time.Second)
	l := busyLease(e.e2e, id, mark)
	n, _ := strconv.ParseInt(l.InstanceID, 10, 64)
	if !l.Interruptible || !e.vast.Outbid(n) {
		t.Fatalf("lease %+v: not a running bid host", l)
	}
	checkRerunOnNewHost(e, id, l, provisioner.LostOutbid)
	e.stop()
}

// GitHub fails the job before any host watch pass sees the loss (a pass
// an hour away): the failed job's host is looked at before it is
// destroyed, found outbid, and the job is re-run all the same.
func TestServeLostJobFailedBeforeTheWatchIsRerun(t *testing.T) {
	e, id, mark := lostJobSetup(t, true, time.Hour)
	l := busyLease(e.e2e, id, mark)
	n, _ := strconv.ParseInt(l.InstanceID, 10, 64)
	if !e.vast.Outbid(n) {
		t.Fatalf("lease %+v: not a running bid host", l)
	}
	checkRerunOnNewHost(e, id, l, provisioner.LostOutbid)
	if logs := e.logs.String(); !strings.Contains(logs, `"msg":"failed job's host found lost at release"`) {
		t.Errorf("logs: %s", grepLines(logs, "lost"))
	}
	e.stop()
}

// An on-demand host dies without Vast noticing (its status stays
// running): only GitHub sees it, failing the job. At release the host is
// running by Vast's word but answers no SSH: lost (unreachable), its
// machine avoided, the job re-run on another machine.
func TestServeSilentlyDeadHostFoundAtRelease(t *testing.T) {
	e, id, mark := lostJobSetup(t, false, time.Hour)
	l := busyLease(e.e2e, id, mark)
	n, _ := strconv.ParseInt(l.InstanceID, 10, 64)
	if !e.vast.Crash(n) {
		t.Fatalf("lease %+v: host not running", l)
	}
	checkRerunOnNewHost(e, id, l, provisioner.LostUnreachable)
	logs := e.logs.String()
	if !strings.Contains(logs, `"msg":"avoiding machine"`) || !strings.Contains(logs, `"machine_id":"`+l.MachineID+`"`) {
		t.Errorf("the dead host's machine %s not avoided: %s", l.MachineID, grepLines(logs, "avoiding"))
	}
	e.stop()
}
