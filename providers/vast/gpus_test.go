package vast

import (
	"slices"
	"strings"
	"testing"

	"github.com/crabbox/crabbox-runner/internal/gpus"
	"github.com/crabbox/crabbox-runner/provisioner"
)

// TestGPUNames: a class GPU name expands into every real Vast variant and
// into nothing else. The real names are the official CLI's list (vast-ai/
// vast-cli vastai/data/query.py, "from vast/controller/gpulist.json"),
// which is KnownGPUNames.
func TestGPUNames(t *testing.T) {
	cases := []struct {
		class string
		want  []string // the known names it expands to
		match []string // offer names it must match
		miss  []string // and must not
	}{
		// "A100 SXM" is in Vast's list beside "A100 SXM4" (query.py
		// A100_SXM): the old list lacked it, so those offers were never
		// seen.
		{"A100", []string{"A100 PCIE", "A100 SXM4", "A100 SXM"}, []string{"A100 PCIE", "A100 SXM4", "A100 SXM"}, []string{"A100X", "A10", "A10g", "A800 PCIE"}},
		{"a100_sxm4", []string{"A100 SXM4", "A100 SXM"}, []string{"A100 SXM4", "A100 SXM", "NVIDIA A100-SXM4-80GB"}, []string{"A100 PCIE"}},
		{"A100 SXM", []string{"A100 SXM4", "A100 SXM"}, []string{"A100 SXM"}, []string{"A100 PCIE"}},
		// query.py A10, A10g (AWS's A10G): different cards.
		{"A10", []string{"A10"}, []string{"A10"}, []string{"A10g", "A100 PCIE", "A100X"}},
		{"A10G", []string{"A10g"}, []string{"A10g"}, []string{"A10"}},
		{"A30", []string{"A30"}, []string{"A30"}, []string{"A40", "A100 PCIE"}},
		{"RTX 4090", []string{"RTX 4090"}, []string{"RTX 4090"}, []string{"RTX 4090D", "RTX 4090 Ti", "RTX 4080"}},
		{"4090", []string{"RTX 4090"}, []string{"RTX 4090"}, []string{"RTX 4090D"}},
		{"RTX 4070", []string{"RTX 4070"}, []string{"RTX 4070"}, []string{"RTX 4070 Ti", "RTX 4070S", "RTX 4070 laptop"}},
		{"H100", []string{"H100 PCIE", "H100 SXM", "H100 NVL"}, []string{"H100 SXM", "H100 PCIE", "H100 NVL"}, []string{"GH200 SXM", "H200"}},
		{"H200", []string{"H200", "H200 NVL"}, []string{"H200", "H200 NVL"}, []string{"H100 NVL", "GH200 SXM"}},
		{"GH200", []string{"GH200 SXM"}, []string{"GH200 SXM"}, []string{"H100 SXM"}},
		{"A6000", []string{"RTX A6000"}, []string{"RTX A6000"}, []string{"RTX 6000Ada", "Q RTX 6000"}},
		{"RTX A6000", []string{"RTX A6000"}, []string{"RTX A6000"}, []string{"RTX 6000Ada"}},
		{"L40S", []string{"L40S"}, []string{"L40S"}, []string{"L40", "L4"}},
		{"L40", []string{"L40"}, []string{"L40"}, []string{"L40S", "L4"}},
		// query.py RTX_4500Ada = "RTX 4500Ada": no space before Ada.
		{"RTX 4500 Ada", []string{"RTX 4500Ada"}, []string{"RTX 4500Ada"}, []string{"RTX A4500"}},
		{"RTX 6000 Ada", []string{"RTX 6000Ada"}, []string{"RTX 6000Ada"}, []string{"RTX A6000", "RTX PRO 6000 WS"}},
		// query.py RTX_PRO_6000, _S, _WS, _Max_Q.
		{"RTX PRO 6000", []string{"RTX PRO 6000", "RTX PRO 6000 S", "RTX PRO 6000 WS", "RTX PRO 6000 Max-Q"},
			[]string{"RTX PRO 6000 WS", "RTX PRO 6000 Max-Q"}, []string{"RTX 6000Ada", "RTX PRO 5000"}},
		{"V100", []string{"Tesla V100"}, []string{"Tesla V100"}, nil},
		// Not in the list: no expansion, and offers are matched by words.
		{"B300", nil, []string{"B300 SXM6"}, []string{"B200"}},
	}
	for _, tc := range cases {
		got := vastGPUNames(tc.class)
		if !slices.Equal(got, tc.want) {
			t.Errorf("vastGPUNames(%q) = %q, want %q", tc.class, got, tc.want)
		}
		for _, n := range got {
			if strings.Contains(n, "_") {
				t.Errorf("%q expands to %q, a CLI-style name", tc.class, n)
			}
		}
		for _, m := range tc.match {
			if !gpuMatches(tc.class, m) {
				t.Errorf("%q does not match offer GPU %q", tc.class, m)
			}
		}
		for _, m := range tc.miss {
			if gpuMatches(tc.class, m) {
				t.Errorf("%q matches offer GPU %q", tc.class, m)
			}
		}
	}
	if got := restName("RTX_5090__Ti"); got != "RTX 5090 Ti" {
		t.Errorf("restName = %q", got)
	}
}

// TestKnownGPUNamesAreInTheCatalog: every NVIDIA name of Vast's list is a
// model of internal/gpus, so no Vast name falls back to word matching.
func TestKnownGPUNamesAreInTheCatalog(t *testing.T) {
	amd := []string{"Instinct", "PRO W", "Pro V", "Radeon", "RX "}
	for _, n := range KnownGPUNames {
		if slices.ContainsFunc(amd, func(p string) bool { return strings.HasPrefix(n, p) }) {
			continue
		}
		if gpus.Of(n) == nil {
			t.Errorf("%q is not in internal/gpus", n)
		}
	}
}

// TestOfferMemoryIsNominal: gpu_ram is MiB as nvidia-smi reads it; offers
// carry the nominal size and a min_memory_gb class compares like with like.
func TestOfferMemoryIsNominal(t *testing.T) {
	for _, tc := range []struct {
		gpu  string
		mib  float64
		want float64
	}{
		{"L40S", 46068, 48}, {"A40", 46068, 48}, {"RTX A6000", 49140, 48},
		{"H100 SXM", 81559, 80}, {"A100 SXM4", 81920, 80}, {"A100 PCIE", 40960, 40}, {"RTX 4090", 24564, 24},
	} {
		if got := gpuMemoryGB(Offer{GPUName: tc.gpu, GPURAM: tc.mib}); got != tc.want {
			t.Errorf("%s %v MiB = %v GB, want %v", tc.gpu, tc.mib, got, tc.want)
		}
	}
}

// TestOffersBelowMinCUDAOrDriver: an offer that says its cuda_max_good or
// driver_version (vast-api.md §3.1) and says less than the class's
// min_cuda or min_driver is not rented; one that does not say is (the GPU
// gate checks the host).
func TestOffersBelowMinCUDAOrDriver(t *testing.T) {
	c := provisioner.Class{GPU: provisioner.GPURequirement{Name: "A100", Count: 1}, MinCUDA: "12.4", MinDriver: "550.54"}
	base := Offer{ID: 1, GPUName: "A100 SXM4", NumGPUs: 1, GPURAM: 81920, Rentable: true, Verified: true, DirectPortCount: 1, Reliability: 1}
	for _, tt := range []struct {
		cuda   float64
		driver string
		ok     bool
	}{
		{12.8, "550.54.15", true},
		{12.4, "550.54", true},
		{0, "", true},
		{12.2, "550.54.15", false},
		{12.8, "535.86.05", false},
		{12.8, driverVersion("535086005"), false},
		{12.8, driverVersion("570124006"), true},
	} {
		o := base
		o.CUDAMaxGood, o.DriverVersion = tt.cuda, tt.driver
		if ok, why := fits(o, c, 1); ok != tt.ok {
			t.Errorf("cuda %g driver %q: fits %v (%s), want %v", tt.cuda, tt.driver, ok, why, tt.ok)
		}
	}
	if got := driverVersion("535086005"); got != "535.86.05" {
		t.Errorf("driver 535086005 read as %q", got)
	}
	if q := searchQueryCUDA(c); q != 12.4 {
		t.Errorf("cuda_max_good filter %v, want 12.4", q)
	}
}

func searchQueryCUDA(c provisioner.Class) float64 { return classCUDA(c) }
