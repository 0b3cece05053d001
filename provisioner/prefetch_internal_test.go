package provisioner

import (
	"testing"
	"time"
)

func TestFetchSummary(t *testing.T) {
	sshUp := time.Date(2026, 12, 7, 12, 0, 0, 0, time.UTC)
	res := &BootstrapResult{Fetch: &RunnerFetch{By: FetchByPrefetch, Began: sshUp.Add(-3 * time.Second),
		Download: 8 * time.Second, Total: 10 * time.Second, Bytes: 200e6}}
	for _, tc := range []struct {
		sshUp time.Time
		want  string
	}{
		{sshUp, "prefetch: 200000000 bytes in 8s (25.0 MB/s), 10s with checksum and unpack; began 3s before SSH was up, 7s of it after"},
		{sshUp.Add(-4 * time.Second), "prefetch: 200000000 bytes in 8s (25.0 MB/s), 10s with checksum and unpack; began 1s after SSH was up, 10s of it after"},
		{time.Time{}, "prefetch: 200000000 bytes in 8s (25.0 MB/s), 10s with checksum and unpack; SSH's time unknown, 10s of it after"},
	} {
		if got := fetchSummary(res, tc.sshUp); got != tc.want {
			t.Errorf("got  %s\nwant %s", got, tc.want)
		}
	}
	if got := fetchSummary(&BootstrapResult{}, sshUp); got != "" {
		t.Errorf("no fetch: %q", got)
	}
}
