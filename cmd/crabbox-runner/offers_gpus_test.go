package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/crabbox/crabbox-runner/providers/lambda/lambdatest"
	"github.com/crabbox/crabbox-runner/providers/vast/vasttest"
)

// TestOffersFindEveryRealVariant is the figure of docs/benchmarks.md "GPU
// catalogs (#14)": `offers --class` for the issue's classes, on both
// providers at once, against fakes that carry the providers' real GPU
// names and memory (vasttest.CatalogOffers: Vast's gpu_name list and
// nvidia-smi MiB readings; lambdatest.DefaultInstanceTypes: a recorded GET
// /instance-types). Every real variant of each class is listed, no
// look-alike is, and the list is cheapest first.
func TestOffersFindEveryRealVariant(t *testing.T) {
	v := vasttest.New(vasttest.Options{Dir: t.TempDir(), Logf: t.Logf, Offers: vasttest.CatalogOffers})
	t.Cleanup(v.Close)
	l := lambdatest.New(t, lambdatest.Options{})
	cfg := filepath.Join(t.TempDir(), "c.yaml")
	class := func(name, gpu string) string {
		price := "5"
		if strings.Contains(gpu, "count: 8") {
			price = "20"
		}
		return `  - name: ` + name + `
    labels: [self-hosted, ` + name + `]
    gpu: {` + gpu + `}
    providers: [vast, lambda]
    max_price_per_hour: ` + price + `
    min_reliability: 0.95
    disk_gb: 40
`
	}
	os.WriteFile(cfg, []byte(`providers: {vast: {min_request_interval: 1ms}, lambda: {min_request_interval: 1ms}}
classes:
`+class("a100-80", "name: A100, min_memory_gb: 80")+
		class("a100-80x8", "name: A100, count: 8, min_memory_gb: 80")+
		class("l40s", "name: L40S, min_memory_gb: 48")+
		class("rtx-a6000", `name: "RTX A6000", min_memory_gb: 48`)+
		class("any-48", "min_memory_gb: 48")+
		class("h100", "name: H100")+
		class("gh200", "name: GH200")), 0o600)
	env := map[string]string{"CRABBOX_CONFIG": cfg,
		"VAST_API_KEY": v.APIKey(), "CRABBOX_VAST_API_URL": v.URL(),
		"LAMBDA_API_KEY": l.APIKey(), "CRABBOX_LAMBDA_API_URL": l.URL()}

	cases := []struct {
		class  string
		vast   []string // every real variant on Vast, by GPU name, cheapest first
		lambda []string // and on Lambda
	}{
		// 80 GB A100s on Vast in all three spellings, never the A100X; on
		// Lambda the only 80 GB A100 is the 8x type.
		{"a100-80", []string{"A100 PCIE", "A100 SXM", "A100 SXM4"}, nil},
		{"a100-80x8", nil, []string{"A100 SXM4"}},
		// L40S reads 46068 MiB on Vast: 48 GB nominal. Lambda has none.
		{"l40s", []string{"L40S", "L40S"}, nil},
		// Lambda calls it "A6000 (48 GB)".
		{"rtx-a6000", []string{"RTX A6000"}, []string{"A6000"}},
		// Memory alone: the 48 GB cards of both (A40 and L40S included),
		// and the bigger ones (the A100X too: no name was asked for).
		{"any-48", []string{"A40", "RTX A6000", "L40", "L40S", "L40S", "RTX 6000Ada", "A100X", "A800 PCIE", "A100 PCIE",
			"RTX PRO 6000 WS", "A100 SXM", "A100 SXM4", "RTX PRO 6000 S", "GH200 SXM", "H100 PCIE", "H100 SXM", "H100 NVL", "H200 NVL", "H200"},
			[]string{"A6000", "GH200", "H100 PCIe", "H100 SXM5"}},
		{"h100", []string{"H100 PCIE", "H100 SXM", "H100 NVL"}, []string{"H100 PCIe", "H100 SXM5"}},
		{"gh200", []string{"GH200 SXM"}, []string{"GH200"}},
	}
	for _, tc := range cases {
		code, table, errs := runCLI(t, env, "offers", "--class", tc.class, "--limit", "0")
		if code != 0 {
			t.Fatalf("%s: exit %d: %s", tc.class, code, errs)
		}
		t.Logf("offers --class %s --limit 0:\n%s", tc.class, table)
		code, out, errs := runCLI(t, env, "offers", "--class", tc.class, "--limit", "0", "--output", "json")
		if code != 0 {
			t.Fatalf("%s: exit %d: %s", tc.class, code, errs)
		}
		var offers []offerJSON
		if err := json.Unmarshal([]byte(out), &offers); err != nil {
			t.Fatalf("%s: %v\n%s", tc.class, err, out)
		}
		got := map[string][]string{}
		seen := map[string]bool{}
		for i, o := range offers {
			if i > 0 && o.PricePerHour < offers[i-1].PricePerHour {
				t.Errorf("%s: offer %d is cheaper than the one before it", tc.class, i)
			}
			// Lambda lists one offer per region; the variant counts once.
			if o.Provider == "lambda" {
				if seen[o.GPU] {
					continue
				}
				seen[o.GPU] = true
			}
			got[o.Provider] = append(got[o.Provider], o.GPU)
		}
		if !slices.Equal(got["vast"], tc.vast) {
			t.Errorf("%s on vast: %q, want %q", tc.class, got["vast"], tc.vast)
		}
		if !slices.Equal(got["lambda"], tc.lambda) {
			t.Errorf("%s on lambda: %q, want %q", tc.class, got["lambda"], tc.lambda)
		}
		if tc.class != "any-48" && strings.Contains(out, "A100X") || strings.Contains(out, `"A10"`) || strings.Contains(out, "A10g") {
			t.Errorf("%s: a look-alike is listed:\n%s", tc.class, out)
		}
	}
}
