package lambdatest

import (
	"fmt"
	"slices"
)

// InstanceType is one machine shape the fake offers.
type InstanceType struct {
	Name           string // e.g. gpu_1x_a100_sxm4
	GPUDescription string // e.g. "A100 (40 GB SXM4)"; the description is "<gpus>x " + this
	GPUs           int
	PriceCents     int // price_cents_per_hour
	VCPUs          int
	MemoryGiB      int
	StorageGiB     int
	// Regions have capacity for the type at the start; see SetCapacity.
	Regions []string
	// Machine is what `uname -m` answers on the type's hosts; this
	// machine's own when empty. GH200 hosts are arm64: the Grace CPU is
	// an Arm Neoverse V2, and Lambda's images come per architecture
	// (lambda-openapi.json ImageArchitecture: x86_64, arm64).
	Machine string
}

// DefaultInstanceTypes are Lambda's catalogue as a real GET /instance-types
// gave it: names, gpu_description (the description is "<gpus>x " + it),
// prices and specs from alexandervaneck/lambda-ai-cloud-api-client
// tests/data/m_instance_types_response.json. Note Lambda's own words:
// "A6000 (48 GB)", not "RTX A6000"; "RTX 6000 (24 GB)" is the Quadro RTX
// 6000; the H100 SXM is "SXM5". Capacity (Regions) is the fake's: the
// recorded answer had none for several 1x types, which would leave the
// tests nothing to launch; gpu_8x_h100_sxm5 has none anywhere, as often
// happens.
var DefaultInstanceTypes = []InstanceType{
	{Name: "gpu_1x_rtx6000", GPUDescription: "RTX 6000 (24 GB)", GPUs: 1, PriceCents: 50, VCPUs: 14, MemoryGiB: 46, StorageGiB: 512, Regions: nil},
	{Name: "gpu_1x_a10", GPUDescription: "A10 (24 GB PCIe)", GPUs: 1, PriceCents: 75, VCPUs: 30, MemoryGiB: 200, StorageGiB: 1400, Regions: []string{"us-east-1", "us-west-1"}},
	{Name: "gpu_1x_a6000", GPUDescription: "A6000 (48 GB)", GPUs: 1, PriceCents: 80, VCPUs: 14, MemoryGiB: 100, StorageGiB: 200, Regions: []string{"us-south-1"}},
	{Name: "gpu_1x_a100", GPUDescription: "A100 (40 GB PCIe)", GPUs: 1, PriceCents: 129, VCPUs: 30, MemoryGiB: 200, StorageGiB: 512, Regions: nil},
	{Name: "gpu_1x_a100_sxm4", GPUDescription: "A100 (40 GB SXM4)", GPUs: 1, PriceCents: 129, VCPUs: 30, MemoryGiB: 200, StorageGiB: 512, Regions: []string{"us-east-1", "us-west-2", "us-south-1"}},
	{Name: "gpu_1x_gh200", GPUDescription: "GH200 (96 GB)", GPUs: 1, PriceCents: 149, VCPUs: 64, MemoryGiB: 432, StorageGiB: 4096, Regions: []string{"us-east-3"}, Machine: "aarch64"},
	{Name: "gpu_1x_h100_pcie", GPUDescription: "H100 (80 GB PCIe)", GPUs: 1, PriceCents: 249, VCPUs: 26, MemoryGiB: 200, StorageGiB: 1024, Regions: []string{"us-west-3", "us-south-2"}},
	{Name: "gpu_1x_h100_sxm5", GPUDescription: "H100 (80 GB SXM5)", GPUs: 1, PriceCents: 329, VCPUs: 26, MemoryGiB: 225, StorageGiB: 2816, Regions: []string{"us-south-2", "us-south-3"}},
	{Name: "gpu_2x_a100_sxm4", GPUDescription: "A100 (40 GB SXM4)", GPUs: 2, PriceCents: 258, VCPUs: 60, MemoryGiB: 450, StorageGiB: 1024, Regions: []string{"us-east-1"}},
	{Name: "gpu_8x_v100", GPUDescription: "Tesla V100 (16 GB)", GPUs: 8, PriceCents: 440, VCPUs: 92, MemoryGiB: 448, StorageGiB: 6041, Regions: nil},
	{Name: "gpu_8x_a100_80gb_sxm4", GPUDescription: "A100 (80 GB SXM4)", GPUs: 8, PriceCents: 1432, VCPUs: 240, MemoryGiB: 1800, StorageGiB: 20480, Regions: []string{"us-midwest-1"}},
	{Name: "gpu_8x_h100_sxm5", GPUDescription: "H100 (80 GB SXM5)", GPUs: 8, PriceCents: 2392, VCPUs: 208, MemoryGiB: 1800, StorageGiB: 24780, Regions: nil},
	{Name: "gpu_8x_b200_sxm6", GPUDescription: "B200 (180 GB SXM6)", GPUs: 8, PriceCents: 3992, VCPUs: 208, MemoryGiB: 2900, StorageGiB: 22528, Regions: []string{"australia-east-1", "us-east-1"}},
}

// regionDescriptions are the locations Lambda gives its region codes.
var regionDescriptions = map[string]string{
	"europe-central-1": "Germany",
	"asia-south-1":     "India",
	"australia-east-1": "Australia",
	"me-west-1":        "Israel",
	"asia-northeast-1": "Tokyo, Japan",
	"asia-northeast-2": "Seoul, South Korea",
	"us-east-1":        "Virginia, USA",
	"us-west-2":        "Arizona, USA",
	"us-west-1":        "California, USA",
	"us-south-1":       "Texas, USA",
	"us-west-3":        "Utah, USA",
	"us-midwest-1":     "Illinois, USA",
	"us-east-2":        "Washington DC, USA",
	"us-south-2":       "North Texas, USA",
	"us-south-3":       "Central Texas, USA",
	"us-east-3":        "Virginia, USA",
	"us-midwest-2":     "Ohio, USA",
}

// regionCodes are the PublicRegionCode enum of the document.
func regionCodes() []string {
	out := make([]string, 0, len(regionDescriptions))
	for k := range regionDescriptions {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

func region(name string) wRegion {
	return wRegion{Name: name, Description: regionDescriptions[name]}
}

func (t InstanceType) wire() wInstanceType {
	return wInstanceType{
		Name:              t.Name,
		Description:       fmt.Sprintf("%dx %s", t.GPUs, t.GPUDescription),
		GPUDescription:    t.GPUDescription,
		PriceCentsPerHour: t.PriceCents,
		Specs:             wSpecs{VCPUs: t.VCPUs, MemoryGiB: t.MemoryGiB, StorageGiB: t.StorageGiB, GPUs: t.GPUs},
	}
}
