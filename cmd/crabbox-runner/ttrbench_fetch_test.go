package main

// What the hosts measured of the runner tarball's download in a
// time-to-runner run: serve's "runner started on host" lines carry each
// host's own timing (provisioner.RunnerFetch), the instrument that settles
// on a real cloud the size, bandwidth and lead the benchmark assumes
// (docs/live-smoke.md, "What a run tells about time to runner"). In a run
// against the fakes they must give back the benchmark's own parameters.

import (
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"
)

// ttrFetch is one host's fetch, as serve logged it.
type ttrFetch struct {
	By             string `json:"by"`
	Bytes          int64  `json:"bytes"`
	DownloadMS     int64  `json:"download_ms"`
	TotalMS        int64  `json:"total_ms"`
	BeganBeforeSSH int64  `json:"began_before_ssh_ms"`
	AfterSSH       int64  `json:"after_ssh_ms"`
}

// parseTTRFetches reads the fetches of serve's JSON log.
func parseTTRFetches(log string) []ttrFetch {
	var out []ttrFetch
	for _, line := range strings.Split(log, "\n") {
		if !strings.Contains(line, `"msg":"runner started on host"`) || !strings.Contains(line, `"fetch":`) {
			continue
		}
		var l struct {
			Fetch *ttrFetch `json:"fetch"`
		}
		if json.Unmarshal([]byte(line), &l) == nil && l.Fetch != nil {
			out = append(out, *l.Fetch)
		}
	}
	return out
}

// fetchLine is the report's line on the hosts' own timing (real time:
// the download is not scaled).
func fetchLine(fs []ttrFetch) string {
	if len(fs) == 0 {
		return "The hosts timed no download of the runner tarball (every runner came from the image).\n\n"
	}
	var mbps []float64
	var size []int64
	var after, before []time.Duration
	by := map[string]int{}
	for _, f := range fs {
		by[f.By]++
		size = append(size, f.Bytes)
		if f.DownloadMS > 0 {
			mbps = append(mbps, float64(f.Bytes)/float64(f.DownloadMS)*1000/(1<<20))
		}
		after = append(after, time.Duration(f.AfterSSH)*time.Millisecond)
		before = append(before, time.Duration(f.BeganBeforeSSH)*time.Millisecond)
	}
	slices.Sort(mbps)
	slices.Sort(size)
	hidden := 0
	for _, d := range after {
		if d == 0 {
			hidden++
		}
	}
	return fmt.Sprintf("The hosts' own timing of the runner tarball (%d downloads, by %v): size %d MB (median), "+
		"transfer %.1f MB/s (median of %d), began before SSH was up p50 %s (negative: after), "+
		"left after SSH p50 %s, p95 %s, max %s; %d hidden entirely by the boot.\n\n",
		len(fs), by, size[len(size)/2]>>20, median(mbps), len(mbps), fmtSigned(pct(before, 50)),
		fmtDur(pct(after, 50)), fmtDur(pct(after, 95)), fmtDur(pct(after, 100)), hidden)
}

func median(v []float64) float64 {
	if len(v) == 0 {
		return 0
	}
	return v[len(v)/2]
}

func fmtSigned(d time.Duration) string {
	if d < 0 {
		return "-" + fmtDur(-d)
	}
	return fmtDur(d)
}

func TestTTRFetchesFromTheLog(t *testing.T) {
	log := `{"time":"x","level":"INFO","msg":"runner started on host","lease_id":"l1","fetch":{"by":"prefetch","bytes":209715200,"download_ms":8000,"total_ms":9500,"began_before_ssh_ms":-200,"after_ssh_ms":9700}}
{"time":"x","level":"INFO","msg":"runner started on host","lease_id":"l2","runner":"image"}
{"time":"x","level":"INFO","msg":"something else","fetch":{"by":"install"}}
{"time":"x","level":"INFO","msg":"runner started on host","lease_id":"l3","fetch":{"by":"install","bytes":209715200,"download_ms":10000,"total_ms":11000,"began_before_ssh_ms":-500,"after_ssh_ms":11000}}
`
	fs := parseTTRFetches(log)
	if len(fs) != 2 || fs[0].By != "prefetch" || fs[0].AfterSSH != 9700 || fs[1].DownloadMS != 10000 {
		t.Fatalf("fetches %+v", fs)
	}
	line := fetchLine(fs)
	for _, want := range []string{"2 downloads", "size 200 MB", "transfer 25.0 MB/s", "began before SSH was up p50 -"} {
		if !strings.Contains(line, want) {
			t.Errorf("%q lacks %q", line, want)
		}
	}
}
