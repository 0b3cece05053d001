package main

// The two-host model: what hedging can do for one job on its own, with no
// queue. The benchmark runs webhook mode, where any runner takes the oldest
// job, so a slow host's job is often run by another job's runner: the
// queue spreads the tail across jobs before any hedge does, and the plain
// run's p95 is shorter than one job on its own would see. This model puts
// a figure on that difference (docs/benchmarks.md, "Hedging over five
// seeds"). It draws from the benchmark's own Vast distribution (vastDraw).

import (
	"fmt"
	"os"
	"slices"
	"strings"
	"testing"
	"time"
)

// twoHostTime is one job's time to runner on its own: its first host, and
// with hedgeAfter > 0 a second one hedgeAfter after the first's create,
// whichever runner is online first. A host that fails fast is replaced 10 s
// on; one that never boots holds the job for bootTimeout. overhead is ours
// after each boot (bootstrap, and the image's runner layer).
func (p ttrParams) twoHostTime(job int, hedgeAfter, overhead time.Duration) time.Duration {
	host := func(role string, start time.Duration) time.Duration {
		t := start
		for n := 0; ; n++ {
			boot, fate, _ := p.vastDraw(fmt.Sprintf("m%d/%s%d", job, role, n))
			switch fate {
			case "fail":
				t += 10 * time.Second
			case "never":
				t += p.BootTimeout
			default:
				return t + boot + overhead
			}
		}
	}
	first := host("first", 0)
	if hedgeAfter <= 0 || first <= hedgeAfter {
		return first
	}
	return min(first, host("hedge", hedgeAfter))
}

// TestTTRTwoHostModel prints the model's p50 and p95 for several
// hedge_after values (CRABBOX_TTR_MODEL=1).
func TestTTRTwoHostModel(t *testing.T) {
	if os.Getenv("CRABBOX_TTR_MODEL") != "1" {
		t.Skip("the two-host model prints with CRABBOX_TTR_MODEL=1")
	}
	p := ttrDefaults()
	const jobs = 200000
	overhead := 11 * time.Second // IMAGE_RUNNER=true: the 8 s layer pull and about 3 s of ours
	var b strings.Builder
	b.WriteString("| hedge_after | p50 | p95 | p95 ratio |\n|---|---:|---:|---:|\n")
	var base time.Duration
	for _, h := range []time.Duration{0, 3 * time.Minute, 2 * time.Minute, 90 * time.Second, time.Minute, 30 * time.Second, 15 * time.Second} {
		ts := make([]time.Duration, jobs)
		for j := range ts {
			ts[j] = p.twoHostTime(j, h, overhead)
		}
		slices.Sort(ts)
		p95 := pct(ts, 95)
		if h == 0 {
			base = p95
		}
		fmt.Fprintf(&b, "| %v | %s | %s | %.2f |\n", h, fmtDur(pct(ts, 50)), fmtDur(p95), float64(p95)/float64(base))
	}
	t.Log("\n" + b.String())
}
