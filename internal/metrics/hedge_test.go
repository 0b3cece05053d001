package metrics

import "testing"

func TestHedges(t *testing.T) {
	m := New()
	m.HedgeStarted("a100")
	m.HedgeSkipped("a100", "budget")
	m.HedgeWon("a100", "second")
	m.HedgeWon("a100", "second")
	m.HedgeExtraCost("a100", 0.25)
	m.HedgeExtraCost("a100", -1) // never: a negative cost is dropped
	want := map[string]float64{
		"crabbox_hedges_started_total":           1,
		"crabbox_hedges_skipped_total":           1,
		"crabbox_hedges_won_total":               2,
		"crabbox_hedge_extra_cost_dollars_total": 0.25,
	}
	families, err := m.Registry().Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range families {
		w, ok := want[f.GetName()]
		if !ok {
			continue
		}
		if got := f.GetMetric()[0].GetCounter().GetValue(); got != w {
			t.Errorf("%s = %v, want %v", f.GetName(), got, w)
		}
		delete(want, f.GetName())
	}
	for name := range want {
		t.Errorf("%s not exposed", name)
	}
}
