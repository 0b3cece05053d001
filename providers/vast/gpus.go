package vast

import (
	"regexp"
	"strconv"
	"strings"
)

// KnownGPUNames are gpu_name values as Vast's search reports them, with
// spaces. A class names a GPU the way people do ("A100", "4090", "RTX
// A6000"); it is expanded against this list into an exact `in` filter, so
// the search is narrowed on the server and the cheapest matching offers are
// not crowded out of the answer by cheaper, other GPUs. A GPU missing here
// still works: see Provider.Offers.
var KnownGPUNames = []string{
	"A10", "A100 PCIE", "A100 SXM4", "A100X", "A16", "A40", "A800 PCIE",
	"B200", "GH200 SXM", "GTX 1080 Ti", "GTX 1660 S", "GTX 1660 Ti",
	"H100 NVL", "H100 PCIE", "H100 SXM", "H200", "H200 NVL",
	"L4", "L40", "L40S", "Q RTX 6000", "Q RTX 8000",
	"RTX 2080 Ti", "RTX 3060", "RTX 3060 Ti", "RTX 3070", "RTX 3080", "RTX 3080 Ti",
	"RTX 3090", "RTX 3090 Ti", "RTX 4060 Ti", "RTX 4070", "RTX 4070S", "RTX 4070 Ti",
	"RTX 4080", "RTX 4080S", "RTX 4090", "RTX 4090D", "RTX 5070", "RTX 5070 Ti",
	"RTX 5080", "RTX 5090", "RTX 4000Ada", "RTX 5000Ada", "RTX 6000Ada",
	"RTX A2000", "RTX A4000", "RTX A4500", "RTX A5000", "RTX A6000",
	"RTX PRO 6000 WS", "RTX PRO 6000 S",
	"Tesla P100", "Tesla P4", "Tesla P40", "Tesla T4", "Tesla V100",
	"Titan RTX", "Titan V", "Titan Xp",
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

// gpuMatches reports whether the offer's GPU is the class's: every token of
// the class name is a token of the offer's. "A100" matches "A100 PCIE" and
// "A100 SXM4" but not "A100X"; "RTX 4090" does not match "RTX 4090D".
func gpuMatches(want, have string) bool {
	wt := gpuTokens(want)
	if len(wt) == 0 {
		return true
	}
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

// vastGPUNames expands a class GPU name into the known Vast names it
// matches; empty when the name is not known.
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
