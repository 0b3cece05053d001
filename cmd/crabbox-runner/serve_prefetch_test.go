package main

import (
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/crabbox/crabbox-runner/github/githubtest"
	"github.com/crabbox/crabbox-runner/providers/lambda/lambdatest"
)

// checkPrefetched: the one host downloaded the runner once (its boot-time
// prefetch), and the lease's log line and the metric say the install took
// the prefetch's (ready, or waited for).
func checkPrefetched(t *testing.T, e *e2e, provider string) {
	t.Helper()
	if n := e.gh.TarballDownloads(); n != 1 {
		t.Errorf("the runner tarball was downloaded %d times for one host, want once", n)
	}
	metrics := e.get("/metrics")
	prefetched := `crabbox_runner_prefetch_total{provider="` + provider + `",result="prefetched"} 1`
	waited := `crabbox_runner_prefetch_total{provider="` + provider + `",result="waited"} 1`
	if !strings.Contains(metrics, prefetched) && !strings.Contains(metrics, waited) {
		t.Errorf("/metrics lacks %s (or waited)\n%s", prefetched, grepLines(metrics, "crabbox_runner_prefetch_total"))
	}
	line := grepLines(e.logs.String(), `"msg":"runner started on host"`)
	if !strings.Contains(line, `"runner":"prefetched"`) && !strings.Contains(line, `"runner":"waited"`) {
		t.Errorf("the lease's log does not say the runner was prefetched:\n%s\n%s", line, grepLines(e.logs.String(), "bootstrap"))
	}
	if !strings.Contains(line, `"phases":"upload=`) {
		t.Errorf("the lease's log lacks the bootstrap's phases:\n%s", line)
	}
	// The host timed its download, and serve counts it: the tarball's
	// bytes, and one download's share left after SSH came up.
	if !strings.Contains(line, `"fetch":{"by":"prefetch","bytes":`) || !strings.Contains(line, `"after_ssh_ms":`) {
		t.Errorf("the lease's log does not tell the prefetch's download:\n%s", line)
	}
	bytes := regexp.MustCompile(`(?m)^crabbox_runner_download_bytes_total\{by="prefetch",provider="` + provider + `"\} ([0-9.e+]+)$`).FindStringSubmatch(metrics)
	if bytes == nil || bytes[1] == "0" {
		t.Errorf("/metrics lacks the prefetch's downloaded bytes\n%s", grepLines(metrics, "crabbox_runner_download"))
	}
	for _, m := range []string{"crabbox_runner_download_seconds", "crabbox_runner_fetch_after_ssh_seconds"} {
		if want := m + `_count{by="prefetch",provider="` + provider + `"} 1`; !strings.Contains(metrics, want) {
			t.Errorf("/metrics lacks %s\n%s", want, grepLines(metrics, m))
		}
	}
}

// TestServePrefetchVast: a Vast host prefetches the runner in its onstart
// while it boots (its image without the runner's libraries: the prefetch
// installs them too); the job runs and the install phase takes the
// prefetched runner.
func TestServePrefetchVast(t *testing.T) {
	e := startServeVast(t, "60s", nil)
	id := queueSlowJob(e.e2e)
	if job := e.waitJob(id); job.Conclusion != "success" {
		t.Fatalf("job: %q\n%s", job.Conclusion, tail(e.logs.String(), 40))
	}
	e.waitFor("the Vast instance destroyed", 60*time.Second, func() bool { return len(e.vast.Live()) == 0 })
	checkPrefetched(t, e.e2e, "vast")
	line := grepLines(e.logs.String(), `"msg":"runner started on host"`)
	if !strings.Contains(line, `"deps":"prefetched"`) {
		t.Errorf("deps not installed by the prefetch:\n%s", line)
	}
	e.stop()
}

// TestServePrefetchLambda: a Lambda host prefetches the runner from its
// cloud-init bootcmd; its image has the runner's libraries, so nothing is
// installed.
func TestServePrefetchLambda(t *testing.T) {
	fake := lambdatest.New(t, lambdatest.Options{APIKey: testLambdaKey, BootDelay: 200 * time.Millisecond})
	e := startServeLambda(t, fake)
	id := queueSlowJob(e.e2e)
	if job := e.waitJob(id); job.Conclusion != "success" {
		t.Fatalf("job: %q\n%s", job.Conclusion, tail(e.logs.String(), 40))
	}
	e.waitFor("the Lambda instance terminated", 60*time.Second, func() bool { return len(fake.Live()) == 0 })
	checkPrefetched(t, e.e2e, "lambda")
	line := grepLines(e.logs.String(), `"msg":"runner started on host"`)
	if !strings.Contains(line, `"deps":"skipped"`) {
		t.Errorf("deps not skipped on an image that has them:\n%s", line)
	}
	if v := fake.Violations(); len(v) != 0 {
		t.Fatalf("violations: %q", v)
	}
	e.stop()
}

// queueSlowJob queues a job that runs for a few seconds: on a busy
// machine a job of no time can be done, and its host destroyed, before
// the bootstrap's start phase has returned, and then no "runner started"
// line is logged for the lease.
func queueSlowJob(e *e2e) int64 {
	return e.gh.QueueJob(githubtest.JobSpec{Repo: "acme/vision", Org: "acme", Labels: []string{"self-hosted", "crabbox", "A100"},
		Name: "train", Script: `sleep 8; echo trained`})
}

// TestServePrefetchLambdaBeforeSSH: the Lambda user-data starts the
// prefetch from bootcmd, in cloud-init's network stage, which runs before
// sshd: with the stage a few seconds ahead of SSH (InitStageLead), the
// runner is downloaded while the instance is still booting, and the
// install takes it.
func TestServePrefetchLambdaBeforeSSH(t *testing.T) {
	const boot = 5 * time.Second
	fake := lambdatest.New(t, lambdatest.Options{APIKey: testLambdaKey, BootDelay: boot,
		Behavior: func(int, lambdatest.LaunchRequest) lambdatest.Behavior {
			return lambdatest.Behavior{InitStageLead: boot}
		}})
	e := startServeLambda(t, fake)
	id := queueSlowJob(e.e2e)
	e.waitFor("the runner downloaded", 60*time.Second, func() bool { return e.gh.TarballDownloads() > 0 })
	if live := fake.Live(); len(live) != 1 || fake.Status(live[0]) != "booting" {
		t.Errorf("the prefetch did not download while the host booted: instances %q", live)
	}
	if job := e.waitJob(id); job.Conclusion != "success" {
		t.Fatalf("job: %q\n%s", job.Conclusion, tail(e.logs.String(), 40))
	}
	e.waitFor("the Lambda instance terminated", 60*time.Second, func() bool { return len(fake.Live()) == 0 })
	checkPrefetched(t, e.e2e, "lambda")
	if v := fake.Violations(); len(v) != 0 {
		t.Fatalf("violations: %q", v)
	}
	e.stop()
}
