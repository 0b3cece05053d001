package metrics

import "testing"

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
