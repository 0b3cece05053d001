package vast

import (
	"fmt"
	"regexp"
	"strconv"
	"strings"

	"github.com/crabbox/crabbox-runner/internal/gpus"
	"github.com/crabbox/crabbox-runner/provisioner"
)

// KnownGPUNames are the gpu_name values Vast's search uses, as the official
// CLI lists them: vast-ai/vast-cli vastai/data/query.py, "GPU name
// constants (from vast/controller/gpulist.json, column [1])". Vast's
// gpu_name filter is an exact match, so a class name is expanded against
// this list into an `in` filter of every real variant ("A100" → "A100
// PCIE", "A100 SXM4", "A100 SXM"); the search is narrowed on the server
// and the cheapest matching offers are not crowded out of the answer by
// cheaper, other GPUs. A GPU missing here still works: see Provider.Offers.
var KnownGPUNames = []string{
	// NVIDIA data centre
	"A10", "A10g", "A16", "A30", "A40", "A100 PCIE", "A100 SXM4", "A100 SXM", "A100X", "A800 PCIE",
	"B200", "GH200 SXM", "H100 PCIE", "H100 SXM", "H100 NVL", "H200", "H200 NVL", "L4", "L40", "L40S",
	"Tesla K20c", "Tesla K80", "Tesla M40", "Tesla P4", "Tesla P6", "Tesla P40", "Tesla P100", "Tesla T4", "Tesla V100",
	// GeForce
	"GeForce 970", "GTX 750 Ti", "GTX 1050", "GTX 1050 Ti", "GTX 1060", "GTX 1070", "GTX 1070 Ti",
	"GTX 1080", "GTX 1080 Ti", "GTX 1650", "GTX 1650 S", "GTX 1650 Ti", "GTX 1660", "GTX 1660 S", "GTX 1660 Ti",
	"GTX TITAN X",
	"RTX 2060", "RTX 2060S", "RTX 2070", "RTX 2070S", "RTX 2080", "RTX 2080S", "RTX 2080 Ti",
	"RTX 3050", "RTX 3060", "RTX 3060 laptop", "RTX 3060 Ti", "RTX 3070", "RTX 3070 laptop", "RTX 3070 Ti",
	"RTX 3080", "RTX 3080 Ti", "RTX 3090", "RTX 3090 Ti",
	"RTX 4060", "RTX 4060 laptop", "RTX 4060 Ti", "RTX 4070", "RTX 4070 laptop", "RTX 4070S", "RTX 4070S Ti",
	"RTX 4070 Ti", "RTX 4080", "RTX 4080 laptop", "RTX 4080S", "RTX 4090", "RTX 4090D", "RTX 4090 Ti",
	"RTX 5060", "RTX 5060 Ti", "RTX 5070", "RTX 5070 Ti", "RTX 5080", "RTX 5090", "RTX 5090 Ti",
	"Titan RTX", "Titan V", "TITAN V CEO", "Titan X", "Titan Xp",
	// Workstation
	"Quadro K620", "Quadro K2200", "Quadro P2000", "Quadro P4000", "Quadro P5000", "Quadro P6000",
	"Quadro GP100", "Quadro GV100", "Q RTX 4000", "Q RTX 5000", "Q RTX 6000", "Q RTX 8000",
	"RTX A2000", "RTX A4000", "RTX A4500", "RTX A5000", "RTX A6000",
	"RTX 2000Ada", "RTX 4000Ada", "RTX 4500Ada", "RTX 5000Ada", "RTX 5880Ada", "RTX 6000Ada",
	"RTX PRO 4000", "RTX PRO 4000 Mobile", "RTX PRO 4500", "RTX PRO 5000",
	"RTX PRO 6000", "RTX PRO 6000 S", "RTX PRO 6000 WS", "RTX PRO 6000 Max-Q",
	// Mining and other
	"CMP 50HX", "CMP 170HX", "P104-100", "P106-100",
	// AMD
	"InstinctMI50", "InstinctMI100", "InstinctMI210", "InstinctMI250X",
	"PRO W6800", "PRO W7800", "PRO W7900", "Pro V620", "Radeon VII", "Radeon Pro VII",
	"RX 6800", "RX 6800 XT", "RX 6900 XT", "RX 6950 XT", "RX 7600", "RX 7700 XT", "RX 7800 XT",
	"RX 7900 GRE", "RX 7900 XT", "RX 7900 XTX",
}

// gpuTokens normalises a GPU name into upper-case tokens: "rtx_4090",
// "RTX-4090" and "RTX 4090" all become [RTX 4090]; the "NVIDIA" vendor
// prefix is dropped.
func gpuTokens(name string) []string {
	name = strings.NewReplacer("_", " ", "-", " ").Replace(strings.ToUpper(name))
	var out []string
	for _, t := range strings.Fields(name) {
		if t != "NVIDIA" && t != "GEFORCE" {
			out = append(out, t)
		}
	}
	return out
}

// gpuMatches reports whether the offer's GPU is the class's. Names the
// catalog knows are matched by model (internal/gpus: "A100" is every A100
// variant, "A6000" is "RTX A6000", "A10" is neither "A10g" nor "A100");
// otherwise every token of the class name must be a token of the offer's,
// so a GPU newer than the catalog is still found by its words.
func gpuMatches(want, have string) bool {
	if ok, known := gpus.Match(want, have); known {
		return ok
	}
	wt := gpuTokens(want)
	ht := map[string]bool{}
	for _, t := range gpuTokens(have) {
		ht[t] = true
	}
	for _, t := range wt {
		if !ht[t] {
			return false
		}
	}
	return true
}

// vastGPUNames expands a class GPU name into every name in KnownGPUNames
// it matches; empty when it matches none.
func vastGPUNames(want string) []string {
	if len(gpuTokens(want)) == 0 {
		return nil
	}
	var out []string
	for _, n := range KnownGPUNames {
		if gpuMatches(want, n) {
			out = append(out, n)
		}
	}
	return out
}

// gpuMemoryGB is an offer's memory per GPU in nominal GB. Vast's gpu_ram is
// what nvidia-smi reports, in MiB (vast-ai/vast-cli
// vastai/cli/commands/benchmarks.py keeps "RTX 4090": 24564 and "RTX
// A6000": 49140 as VRAM in its units), below the size the card is sold as
// when ECC is on (an L40S or A40 reads 46068 for 48 GB).
func gpuMemoryGB(o Offer) float64 { return gpus.NominalGB(o.GPUName, o.GPURAM) }

// restName writes a class name as Vast's REST API spells GPU names: with
// spaces (the CLI's RTX_4090 is CLI syntax, not a value the API knows).
func restName(want string) string {
	return strings.Join(strings.Fields(strings.ReplaceAll(want, "_", " ")), " ")
}

var cudaImageRe = regexp.MustCompile(`(?i)(?:^|/)cuda:(\d+)\.(\d+)`)

// imageCUDA returns the CUDA version an nvidia/cuda-style image needs (0
// when the tag tells none). A host whose driver supports less fails the
// container at start with "OCI runtime create failed … cuda>=X.Y", so
// offers are filtered on cuda_max_good up front.
func imageCUDA(image string) float64 {
	m := cudaImageRe.FindStringSubmatch(image)
	if m == nil {
		return 0
	}
	v, err := strconv.ParseFloat(m[1]+"."+m[2], 64)
	if err != nil {
		return 0
	}
	return v
}

// driverVersion reads an offer's driver_version: "535.86.05" as it is, or
// the zero-padded integer the CLI sends in filters (535086005) back into
// that form. Anything else is "" (unknown: the GPU gate checks the host).
func driverVersion(v string) string {
	if provisioner.ValidVersion(v) {
		return v
	}
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil || n < 1_000_000 {
		return ""
	}
	return fmt.Sprintf("%d.%02d.%02d", n/1_000_000, n/1000%1000, n%1000)
}

// classCUDA is the lowest cuda_max_good an offer needs: the class's
// min_cuda or the image's CUDA, whichever is higher.
func classCUDA(c provisioner.Class) float64 {
	v := imageCUDA(image(c))
	if m, err := strconv.ParseFloat(c.MinCUDA, 64); err == nil && provisioner.ValidVersion(c.MinCUDA) && strings.Count(c.MinCUDA, ".") == 1 {
		v = max(v, m)
	}
	return v
}
