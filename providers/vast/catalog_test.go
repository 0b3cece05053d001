package vast_test

import (
	"context"
	"slices"
	"strings"
	"testing"

	"github.com/crabbox/crabbox-runner/providers/vast/vasttest"
	"github.com/crabbox/crabbox-runner/provisioner"
)

// TestOffersFindEveryRealVariant runs classes against a fake market with
// Vast's real gpu_name strings and gpu_ram readings (vasttest.CatalogOffers,
// sources there): each class finds every variant it means, cheapest first,
// and no look-alike; memory is compared in nominal GB.
func TestOffersFindEveryRealVariant(t *testing.T) {
	fake := newFake(t, vasttest.Options{Offers: vasttest.CatalogOffers})
	p := newProvider(t, fake)
	cases := []struct {
		name string
		gpu  provisioner.GPURequirement
		want []string // GPU names of the offers, cheapest first
	}{
		{"A100 ≥ 80 GB", provisioner.GPURequirement{Name: "A100", MinMemoryGB: 80},
			[]string{"A100 PCIE", "A100 SXM", "A100 SXM4"}},
		{"A100 any size", provisioner.GPURequirement{Name: "A100"},
			[]string{"A100 PCIE", "A100 SXM4", "A100 PCIE", "A100 SXM", "A100 SXM4"}},
		{"L40S 48 GB", provisioner.GPURequirement{Name: "L40S", MinMemoryGB: 48}, []string{"L40S", "L40S"}},
		{"A40 48 GB", provisioner.GPURequirement{Name: "A40", MinMemoryGB: 48}, []string{"A40"}},
		{"RTX A6000 48 GB", provisioner.GPURequirement{Name: "RTX A6000", MinMemoryGB: 48}, []string{"RTX A6000"}},
		{"any 48 GB under $0.70", provisioner.GPURequirement{MinMemoryGB: 48},
			[]string{"A40", "RTX A6000", "L40", "L40S", "L40S", "RTX 6000Ada"}},
		{"H100", provisioner.GPURequirement{Name: "H100"}, []string{"H100 PCIE", "H100 SXM", "H100 NVL"}},
		{"H100 ≥ 90 GB", provisioner.GPURequirement{Name: "H100", MinMemoryGB: 90}, []string{"H100 NVL"}},
		{"GH200", provisioner.GPURequirement{Name: "GH200"}, []string{"GH200 SXM"}},
		{"RTX PRO 6000", provisioner.GPURequirement{Name: "RTX PRO 6000", MinMemoryGB: 96}, []string{"RTX PRO 6000 WS", "RTX PRO 6000 S"}},
		{"RTX 4500 Ada", provisioner.GPURequirement{Name: "RTX 4500 Ada"}, []string{"RTX 4500Ada"}},
		{"A10", provisioner.GPURequirement{Name: "A10"}, []string{"A10"}},
		{"RTX 4090", provisioner.GPURequirement{Name: "RTX 4090", MinMemoryGB: 24}, []string{"RTX 4090"}},
	}
	for _, tc := range cases {
		c := a100
		c.GPU = tc.gpu
		c.GPU.Count = 1
		c.MaxPricePerHour = 3
		if tc.gpu.Name == "" {
			c.MaxPricePerHour = 0.70
		}
		offers, err := p.Offers(context.Background(), c)
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		var got []string
		for i, o := range offers {
			got = append(got, o.GPU)
			if i > 0 && o.PricePerHour < offers[i-1].PricePerHour {
				t.Errorf("%s: not cheapest first: %+v", tc.name, offers)
			}
			if tc.gpu.MinMemoryGB > 0 && o.GPUMemoryGB < tc.gpu.MinMemoryGB {
				t.Errorf("%s: %s has %v GB", tc.name, o.GPU, o.GPUMemoryGB)
			}
		}
		if !slices.Equal(got, tc.want) {
			t.Errorf("%s: offers %q, want %q", tc.name, got, tc.want)
		}
	}
	// One search per class: the names went to the server as an `in`
	// filter, never the wider fallback search.
	for _, r := range fake.RequestsFor(vasttest.OpSearch) {
		if strings.Contains(string(r.Body), `"limit":512`) {
			t.Errorf("a fallback search was made: %s", r.Body)
		}
	}
}
