package main

import (
	"strings"
	"testing"
	"time"

	"github.com/crabbox/crabbox-runner/github/githubtest"
	"github.com/crabbox/crabbox-runner/providers/vast/vasttest"
)

// serveImageRunner runs one job on a Vast host whose image carries the
// fake runner release of version (unpacked where examples/images/cuda-runner
// puts it, with the runner's libraries) and returns the lease's "runner
// started on host" line and /metrics.
func serveImageRunner(t *testing.T, version string) (e *vastE2E, line, metrics string) {
	t.Helper()
	tgz, _, err := githubtest.RunnerTarball(version)
	if err != nil {
		t.Fatal(err)
	}
	e = startServeVast(t, "60s", func(int, vasttest.Offer, string) vasttest.Behavior {
		return vasttest.Behavior{RunnerDeps: true, ImageRunner: tgz}
	})
	id := queueSlowJob(e.e2e)
	if job := e.waitJob(id); job.Conclusion != "success" {
		t.Fatalf("job: %q\n%s", job.Conclusion, tail(e.logs.String(), 40))
	}
	e.waitFor("the Vast instance destroyed", 60*time.Second, func() bool { return len(e.vast.Live()) == 0 })
	return e, grepLines(e.logs.String(), `"msg":"runner started on host"`), e.get("/metrics")
}

// TestServeImageRunnerVast: a Vast host whose image has the configured
// runner version runs the job without the runner release ever being
// downloaded (neither by the onstart's prefetch nor by the install), and
// the lease's log line and the metric say the runner came from the image.
func TestServeImageRunnerVast(t *testing.T) {
	e, line, metrics := serveImageRunner(t, "2.330.0")
	if n := e.gh.TarballDownloads(); n != 0 {
		t.Errorf("the runner tarball was downloaded %d times; the image has it", n)
	}
	if !strings.Contains(line, `"runner":"image"`) || !strings.Contains(line, `"deps":"skipped"`) {
		t.Errorf("the lease's log does not say the runner came from the image:\n%s", line)
	}
	if want := `crabbox_runner_prefetch_total{provider="vast",result="image"} 1`; !strings.Contains(metrics, want) {
		t.Errorf("/metrics lacks %s\n%s", want, grepLines(metrics, "crabbox_runner_prefetch_total"))
	}
	e.stop()
}

// TestServeImageRunnerOtherVersionVast: an image with another runner
// version is passed over: the release is downloaded (once, by the
// prefetch) and checked as on any host.
func TestServeImageRunnerOtherVersionVast(t *testing.T) {
	e, line, _ := serveImageRunner(t, "2.329.0")
	checkPrefetched(t, e.e2e, "vast")
	if strings.Contains(line, `"runner":"image"`) {
		t.Errorf("a runner of another version was taken from the image:\n%s", line)
	}
	e.stop()
}
