package lambda

import (
	"fmt"
	"slices"
	"testing"

	"github.com/crabbox/crabbox-runner/provisioner"
)

// recordedTypes are Lambda's GPU instance types as a real GET
// /instance-types answered: alexandervaneck/lambda-ai-cloud-api-client
// tests/data/m_instance_types_response.json (name, gpu_description,
// specs.gpus, specs.storage_gib).
var recordedTypes = []InstanceType{
	recorded("gpu_1x_a10", "A10 (24 GB PCIe)", 1, 1400),
	recorded("gpu_1x_a100", "A100 (40 GB PCIe)", 1, 512),
	recorded("gpu_1x_a100_sxm4", "A100 (40 GB SXM4)", 1, 512),
	recorded("gpu_1x_a6000", "A6000 (48 GB)", 1, 200),
	recorded("gpu_1x_gh200", "GH200 (96 GB)", 1, 4096),
	recorded("gpu_1x_h100_pcie", "H100 (80 GB PCIe)", 1, 1024),
	recorded("gpu_1x_h100_sxm5", "H100 (80 GB SXM5)", 1, 2816),
	recorded("gpu_1x_rtx6000", "RTX 6000 (24 GB)", 1, 512),
	recorded("gpu_2x_a100", "A100 (40 GB PCIe)", 2, 1024),
	recorded("gpu_2x_a6000", "A6000 (48 GB)", 2, 1024),
	recorded("gpu_2x_h100_sxm5", "H100 (80 GB SXM5)", 2, 5632),
	recorded("gpu_4x_a100", "A100 (40 GB PCIe)", 4, 1024),
	recorded("gpu_4x_a6000", "A6000 (48 GB)", 4, 1024),
	recorded("gpu_4x_h100_sxm5", "H100 (80 GB SXM5)", 4, 11264),
	recorded("gpu_8x_a100", "A100 (40 GB SXM4)", 8, 6144),
	recorded("gpu_8x_a100_80gb_sxm4", "A100 (80 GB SXM4)", 8, 20480),
	recorded("gpu_8x_b200_sxm6", "B200 (180 GB SXM6)", 8, 22528),
	recorded("gpu_8x_h100_sxm5", "H100 (80 GB SXM5)", 8, 22528),
	recorded("gpu_8x_v100", "Tesla V100 (16 GB)", 8, 6041),
}

func recorded(name, gpu string, n, storage int) InstanceType {
	return InstanceType{Name: name, Description: fmt.Sprintf("%dx %s", n, gpu), GPUDescription: gpu,
		Specs: InstanceTypeSpecs{GPUs: n, StorageGiB: storage}}
}

// TestFitsRecordedCatalog: each class name against Lambda's real catalog;
// the types it fits (any GPU count), and so every real variant.
func TestFitsRecordedCatalog(t *testing.T) {
	cases := []struct {
		gpu  string
		mem  float64
		want []string
	}{
		{"A100", 0, []string{"gpu_1x_a100", "gpu_1x_a100_sxm4", "gpu_2x_a100", "gpu_4x_a100", "gpu_8x_a100", "gpu_8x_a100_80gb_sxm4"}},
		{"A100", 80, []string{"gpu_8x_a100_80gb_sxm4"}},
		{"A100 SXM", 0, []string{"gpu_1x_a100_sxm4", "gpu_8x_a100", "gpu_8x_a100_80gb_sxm4"}},
		{"A100 PCIe", 0, []string{"gpu_1x_a100", "gpu_2x_a100", "gpu_4x_a100"}},
		{"A10", 0, []string{"gpu_1x_a10"}},
		// The case: Lambda says "A6000 (48 GB)".
		{"RTX A6000", 48, []string{"gpu_1x_a6000", "gpu_2x_a6000", "gpu_4x_a6000"}},
		{"A6000", 0, []string{"gpu_1x_a6000", "gpu_2x_a6000", "gpu_4x_a6000"}},
		{"RTX 6000", 0, []string{"gpu_1x_rtx6000"}}, // the Quadro RTX 6000
		{"RTX 6000 Ada", 0, nil}, // not on Lambda
		{"H100", 0, []string{"gpu_1x_h100_pcie", "gpu_1x_h100_sxm5", "gpu_2x_h100_sxm5", "gpu_4x_h100_sxm5", "gpu_8x_h100_sxm5"}},
		{"H100 SXM", 0, []string{"gpu_1x_h100_sxm5", "gpu_2x_h100_sxm5", "gpu_4x_h100_sxm5", "gpu_8x_h100_sxm5"}},
		{"GH200", 0, []string{"gpu_1x_gh200"}},
		{"V100", 0, []string{"gpu_8x_v100"}},
		{"B200", 0, []string{"gpu_8x_b200_sxm6"}},
		// Memory alone, nominal GB: the 48 GB class gets the 48 GB cards
		// (on Lambda the A6000; Vast's L40S and A40 read 46068 MiB and
		// count as 48 there too).
		{"", 48, []string{"gpu_1x_a6000", "gpu_1x_gh200", "gpu_1x_h100_pcie", "gpu_1x_h100_sxm5", "gpu_2x_a6000", "gpu_2x_h100_sxm5",
			"gpu_4x_a6000", "gpu_4x_h100_sxm5", "gpu_8x_a100_80gb_sxm4", "gpu_8x_b200_sxm6", "gpu_8x_h100_sxm5"}},
	}
	for _, tc := range cases {
		class := provisioner.Class{GPU: provisioner.GPURequirement{Name: tc.gpu, MinMemoryGB: tc.mem}}
		var got []string
		for _, it := range recordedTypes {
			if Fits(it, class) {
				got = append(got, it.Name)
			}
		}
		if !slices.Equal(got, tc.want) {
			t.Errorf("class %q ≥%v GB fits %q, want %q", tc.gpu, tc.mem, got, tc.want)
		}
	}
}
