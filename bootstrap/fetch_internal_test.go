package bootstrap

import (
	"testing"
	"time"

	"github.com/crabbox/crabbox-runner/provisioner"
)

// The host's operator controls every byte of the install's output: a
// crabbox-fetch line that is not what host.sh prints tells nothing.
func TestParseInstallFetch(t *testing.T) {
	returned := time.Date(2026, 12, 7, 12, 0, 0, 0, time.UTC)
	var res provisioner.BootstrapResult
	parseInstall("crabbox-runner waited\ncrabbox-fetch prefetch 9000 4000 5000 123456789\n", returned, &res)
	want := provisioner.RunnerFetch{By: "prefetch", Began: returned.Add(-9 * time.Second),
		Download: 4 * time.Second, Total: 5 * time.Second, Bytes: 123456789}
	if res.Fetch == nil || *res.Fetch != want {
		t.Fatalf("fetch %+v, want %+v", res.Fetch, want)
	}
	if bps := res.Fetch.BytesPerSecond(); bps < 30864197 || bps > 30864198 {
		t.Errorf("throughput %f", bps)
	}
	for _, line := range []string{
		"crabbox-fetch someone 9000 4000 5000 1",        // who
		"crabbox-fetch install 9000 6000 5000 1",        // download longer than the whole fetch
		"crabbox-fetch install 4000 1000 5000 1",        // a fetch longer than its age
		"crabbox-fetch install -1 0 0 1",                // negative
		"crabbox-fetch install 9000 4000 5000 1e9",      // not an integer
		"crabbox-fetch install 9000 4000 5000",          // short
		"crabbox-fetch install 9e99 4000 5000 1 2",      // long
		"crabbox-fetch install 99999999999999999 1 1 1", // past any boot
	} {
		var res provisioner.BootstrapResult
		parseInstall(line+"\n", returned, &res)
		if res.Fetch != nil {
			t.Errorf("%q read as %+v", line, *res.Fetch)
		}
	}
}

func TestFetchAfterSSH(t *testing.T) {
	began := time.Date(2026, 12, 7, 12, 0, 0, 0, time.UTC)
	f := &provisioner.RunnerFetch{By: "prefetch", Began: began, Download: 8 * time.Second, Total: 10 * time.Second}
	for _, tc := range []struct {
		sshUp time.Time
		want  time.Duration
	}{
		{began.Add(-time.Second), 10 * time.Second}, // SSH before the prefetch began: all of it
		{began.Add(3 * time.Second), 7 * time.Second},
		{began.Add(10 * time.Second), 0},
		{began.Add(time.Minute), 0},
		{time.Time{}, 10 * time.Second}, // unknown: counted whole
	} {
		if got := f.AfterSSH(tc.sshUp); got != tc.want {
			t.Errorf("SSH up at %v: %s after it, want %s", tc.sshUp, got, tc.want)
		}
	}
}
