package metrics

import "testing"

func TestExtraHostsDestroyed(t *testing.T) {
	m := New()
	m.ExtraHostDestroyed("vast")
	m.ExtraHostDestroyed("vast")
	families, err := m.Registry().Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range families {
		if f.GetName() != "crabbox_extra_hosts_destroyed_total" {
			continue
		}
		for _, s := range f.GetMetric() {
			if s.GetLabel()[0].GetValue() == "vast" && s.GetCounter().GetValue() == 2 {
				return
			}
		}
	}
	t.Error("crabbox_extra_hosts_destroyed_total{provider=\"vast\"} is not 2")
}
