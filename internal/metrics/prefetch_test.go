package metrics

import (
	"testing"
	"time"

	"github.com/crabbox/crabbox-runner/provisioner"
)

func TestRunnerGot(t *testing.T) {
	m := New()
	m.RunnerGot("vast", "prefetched")
	m.RunnerGot("vast", "prefetched")
	m.RunnerGot("lambda", "waited")
	m.RunnerGot("vast", "image")
	m.RunnerGot("lambda", "bogus") // a word the host made up is no label value
	families, err := m.Registry().Gather()
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]float64{}
	for _, f := range families {
		if f.GetName() != "crabbox_runner_prefetch_total" {
			continue
		}
		for _, s := range f.GetMetric() {
			l := map[string]string{}
			for _, p := range s.GetLabel() {
				l[p.GetName()] = p.GetValue()
			}
			got[l["provider"]+"/"+l["result"]] = s.GetCounter().GetValue()
		}
	}
	if len(got) != 3 || got["vast/prefetched"] != 2 || got["lambda/waited"] != 1 || got["vast/image"] != 1 {
		t.Errorf("series %v", got)
	}
}

func TestRunnerFetched(t *testing.T) {
	m := New()
	f := provisioner.RunnerFetch{By: "prefetch", Download: 8 * time.Second, Total: 10 * time.Second, Bytes: 200e6}
	m.RunnerFetched("lambda", f, 3*time.Second)
	m.RunnerFetched("lambda", f, 0)
	f.By = "install"
	m.RunnerFetched("vast", f, 10*time.Second)
	f.By = "someone" // no label value from a word the host made up
	m.RunnerFetched("vast", f, 0)
	families, err := m.Registry().Gather()
	if err != nil {
		t.Fatal(err)
	}
	bytes := map[string]float64{}
	type hist struct {
		count, hidden uint64 // all observations; those at le="0"
		sum           float64
	}
	after := map[string]hist{}
	for _, fam := range families {
		for _, s := range fam.GetMetric() {
			l := map[string]string{}
			for _, p := range s.GetLabel() {
				l[p.GetName()] = p.GetValue()
			}
			key := l["provider"] + "/" + l["by"]
			switch fam.GetName() {
			case "crabbox_runner_download_bytes_total":
				bytes[key] = s.GetCounter().GetValue()
			case "crabbox_runner_fetch_after_ssh_seconds":
				h := s.GetHistogram()
				if b := h.GetBucket(); len(b) > 0 && b[0].GetUpperBound() == 0 {
					after[key] = hist{h.GetSampleCount(), b[0].GetCumulativeCount(), h.GetSampleSum()}
				}
			}
		}
	}
	if len(bytes) != 2 || bytes["lambda/prefetch"] != 400e6 || bytes["vast/install"] != 200e6 {
		t.Errorf("bytes %v", bytes)
	}
	// Both Lambda downloads observed, one hidden by the boot (le="0").
	if len(after) != 2 || after["lambda/prefetch"] != (hist{count: 2, hidden: 1, sum: 3}) {
		t.Errorf("after SSH %v", after)
	}
}
