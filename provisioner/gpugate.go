package provisioner

import (
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/crabbox/crabbox-runner/internal/gpus"
)

// The GPU gate: before a runner is registered for a host, what the host's
// nvidia-smi says is judged against what the lease paid for (the offer) and
// what the class asks. A rented machine is not always the one advertised:
// a GPU fell off the bus, one of four is missing, the driver is too old for
// the job's CUDA, memory errors pile up. A host that fails is destroyed and
// its machine avoided; the job goes to the next offer.

// GPUReport is what a host's nvidia-smi told (bootstrap reads it from the
// host script's gpu-check phase).
type GPUReport struct {
	// GPUs are the GPUs that answered the query, in index order.
	GPUs []GPUFound
	// Driver is the driver version (the first GPU's; they share one
	// driver) and CUDA the highest CUDA version it supports, from
	// nvidia-smi's header. Empty when not reported.
	Driver, CUDA string
	// Lost are the GPUs (or nvidia-smi calls) that did not answer, in
	// nvidia-smi's words: "Unable to determine the device handle for GPU
	// 0000:0B:00.0: Unknown Error", "GPU 1: [GPU requires reset]".
	Lost []string
	// NoGPU says why nvidia-smi reported no GPU at all (missing driver,
	// no nvidia-smi); empty otherwise.
	NoGPU string
	// Said are the other lines nvidia-smi printed (a few, each once), for
	// people: the host's operator controls them.
	Said []string
}

// GPUFound is one GPU that answered.
type GPUFound struct {
	Index    int
	Name     string // e.g. "NVIDIA A100-SXM4-80GB"
	MemMiB   int    // memory.total in MiB
	BusID    string // pci.bus_id
	Driver   string
	Health   GPUHealth
	Answered bool // every queried value was a value, not an error
}

// GPUHealth are the memory-health counters a GPU reports; each is -1 when
// the GPU does not report it ("[N/A]", "[Not Supported]", a field the
// driver does not know).
type GPUHealth struct {
	UncorrectedECC int64 // ecc.errors.uncorrected.volatile.total
	RetiredPending int   // retired_pages.pending: 1 yes, 0 no
	RemapPending   int   // remapped_rows.pending: 1 yes (or a count), 0 no
	RemapFailure   int   // remapped_rows.failure: 1 yes, 0 no
}

// NoHealth is a GPUHealth with nothing reported.
var NoHealth = GPUHealth{UncorrectedECC: -1, RetiredPending: -1, RemapPending: -1, RemapFailure: -1}

// GateWant is what a host must show: from the lease's offer and its class.
type GateWant struct {
	Count       int     // the offer's GPU count (0: at least one)
	OfferGPU    string  // the offer's GPU name, e.g. "A100 SXM4"
	ClassGPU    string  // the class's GPU name, e.g. "A100"
	MinMemoryGB float64 // per GPU, nominal GB: the larger of the class's and the offer's
	MinCUDA     string  // e.g. "12.4"; empty: any
	MinDriver   string  // e.g. "550.54"; empty: any
}

// The gate's rules, as stable slugs for logs, metrics and `leases`.
const (
	GateNoGPU        = "no_gpu"
	GateGPULost      = "gpu_lost"
	GateGPUCount     = "gpu_count"
	GateGPUModel     = "gpu_model"
	GateGPUMemory    = "gpu_memory"
	GateDriver       = "driver"
	GateCUDA         = "cuda"
	GateECC          = "ecc"
	GateRetiredPages = "retired_pages"
	GateRowRemap     = "row_remap"
)

// GateRules lists the rules in the order they are checked.
var GateRules = []string{GateNoGPU, GateGPULost, GateGPUCount, GateGPUModel, GateGPUMemory,
	GateDriver, GateCUDA, GateECC, GateRetiredPages, GateRowRemap}

// GateResult is the gate's verdict.
type GateResult struct {
	Passed bool
	Rule   string // the failed rule; empty when passed
	Found  string // what the host showed
	Wanted string // what the rule wanted; empty when passed
}

// String is the verdict for a lease's gpu_check column, its events and
// the logs: "passed: 4× H100 80GB HBM3 (81559 MiB), driver 550.54.15,
// CUDA 12.4" or "gpu_count: found 3× …, wanted 4".
func (r GateResult) String() string {
	if r.Passed {
		return "passed: " + r.Found
	}
	return r.Rule + ": found " + r.Found + ", wanted " + r.Wanted
}

// GateError is a failed gate, as the bootstrap returns it. It is an
// ErrGPUCheck.
type GateError struct{ Result GateResult }

func (e *GateError) Error() string { return "GPU check failed: " + e.Result.String() }

// Is makes a GateError an ErrGPUCheck.
func (e *GateError) Is(target error) bool { return target == ErrGPUCheck }

// GateFailure returns the gate result inside err, if err is a failed gate.
func GateFailure(err error) (GateResult, bool) {
	var ge *GateError
	if errors.As(err, &ge) {
		return ge.Result, true
	}
	return GateResult{}, false
}

// JudgeGPU applies the gate's rules, in the order of GateRules, and
// returns the first that fails or a pass.
func JudgeGPU(r *GPUReport, w GateWant) GateResult {
	summary := r.Summary()
	fail := func(rule, found, wanted string) GateResult {
		return GateResult{Rule: rule, Found: found, Wanted: wanted}
	}
	wantCount := max(w.Count, 1)
	switch {
	case r == nil || (len(r.GPUs) == 0 && len(r.Lost) == 0):
		why := "no GPU"
		if r != nil && r.NoGPU != "" {
			why = "no GPU (" + clip(r.NoGPU, 200) + ")"
		}
		return fail(GateNoGPU, why, fmt.Sprintf("%d GPU(s)", wantCount))
	case len(r.Lost) > 0:
		return fail(GateGPULost, clip(strings.Join(r.Lost, "; "), 300), "every GPU answering")
	}
	for _, g := range r.GPUs {
		if !g.Answered {
			return fail(GateGPULost, fmt.Sprintf("GPU %d did not answer every query", g.Index), "every GPU answering")
		}
	}
	if w.Count > 0 && len(r.GPUs) != w.Count {
		return fail(GateGPUCount, summary, fmt.Sprintf("%d GPU(s), as the offer says", w.Count))
	}
	for _, g := range r.GPUs {
		if !modelFits(w.OfferGPU, g.Name) || !modelFits(w.ClassGPU, g.Name) {
			return fail(GateGPUModel, fmt.Sprintf("GPU %d is %s", g.Index, clip(g.Name, 80)), wantedModel(w))
		}
	}
	if w.MinMemoryGB > 0 {
		for _, g := range r.GPUs {
			if gb := gpus.NominalGB(g.Name, float64(g.MemMiB)); gb < w.MinMemoryGB {
				return fail(GateGPUMemory, fmt.Sprintf("GPU %d has %d MiB (%g GB)", g.Index, g.MemMiB, gb),
					fmt.Sprintf("at least %g GB per GPU", w.MinMemoryGB))
			}
		}
	}
	if w.MinDriver != "" {
		if r.Driver == "" || CompareVersions(r.Driver, w.MinDriver) < 0 {
			return fail(GateDriver, "driver "+or(r.Driver, "not reported"), "driver "+w.MinDriver+" or newer")
		}
	}
	if w.MinCUDA != "" {
		if r.CUDA == "" || CompareVersions(r.CUDA, w.MinCUDA) < 0 {
			return fail(GateCUDA, "CUDA "+or(r.CUDA, "not reported")+" (driver "+or(r.Driver, "?")+")", "CUDA "+w.MinCUDA+" or newer")
		}
	}
	for _, g := range r.GPUs {
		switch h := g.Health; {
		case h.UncorrectedECC > 0:
			return fail(GateECC, fmt.Sprintf("GPU %d has %d uncorrected volatile ECC errors", g.Index, h.UncorrectedECC), "none")
		case h.RetiredPending > 0:
			return fail(GateRetiredPages, fmt.Sprintf("GPU %d has retired pages pending", g.Index), "none pending (a reset retires them)")
		case h.RemapFailure > 0:
			return fail(GateRowRemap, fmt.Sprintf("GPU %d failed a row remap", g.Index), "no row-remap failure")
		case h.RemapPending > 0:
			return fail(GateRowRemap, fmt.Sprintf("GPU %d has row remaps pending", g.Index), "none pending (a reset remaps them)")
		}
	}
	return GateResult{Passed: true, Found: summary}
}

// Summary is the report in a line: "4× NVIDIA H100 80GB HBM3 (81559 MiB),
// driver 550.54.15, CUDA 12.4".
func (r *GPUReport) Summary() string {
	if r == nil || len(r.GPUs) == 0 {
		if r != nil && len(r.Lost) > 0 {
			return "no GPU answered"
		}
		return "no GPU"
	}
	var parts []string
	for i := 0; i < len(r.GPUs); {
		j := i
		for j < len(r.GPUs) && r.GPUs[j].Name == r.GPUs[i].Name && r.GPUs[j].MemMiB == r.GPUs[i].MemMiB {
			j++
		}
		parts = append(parts, fmt.Sprintf("%d× %s (%d MiB)", j-i, clip(r.GPUs[i].Name, 80), r.GPUs[i].MemMiB))
		i = j
	}
	s := strings.Join(parts, " + ")
	if r.Driver != "" {
		s += ", driver " + r.Driver
	}
	if r.CUDA != "" {
		s += ", CUDA " + r.CUDA
	}
	return s
}

// modelFits reports whether nvidia-smi's name for a GPU (have) is the
// model an offer or class names (want), by the offers' rules (internal/gpus,
// docs/providers/gpus.md): when the catalog knows both, the model must be
// the one named or of the family named; otherwise every word of want must
// be a word of have, so a GPU newer than the catalog is judged by its words.
func modelFits(want, have string) bool {
	if strings.TrimSpace(want) == "" {
		return true
	}
	if ok, known := gpus.Match(want, have); known {
		return ok
	}
	hw := map[string]bool{}
	for _, t := range nameWords(have) {
		hw[t] = true
	}
	for _, t := range nameWords(want) {
		if !hw[t] {
			return false
		}
	}
	return true
}

// nameWords splits a GPU name into upper-case words without the vendor
// words and memory sizes, so that "NVIDIA A100-SXM4-80GB" is [A100 SXM4].
func nameWords(name string) []string {
	var out []string
	toks := strings.FieldsFunc(strings.ToUpper(name), func(r rune) bool {
		return !(r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '.')
	})
	for i, t := range toks {
		switch {
		case t == "NVIDIA" || t == "GEFORCE" || t == "TESLA":
		case strings.HasSuffix(t, "GB") && isDigits(strings.TrimSuffix(t, "GB")):
		case isDigits(t) && i+1 < len(toks) && toks[i+1] == "GB":
		case t == "GB" && i > 0 && isDigits(toks[i-1]):
		default:
			out = append(out, t)
		}
	}
	return out
}

func wantedModel(w GateWant) string {
	switch {
	case w.OfferGPU != "" && w.ClassGPU != "":
		return w.OfferGPU + " (offer), a " + w.ClassGPU + " (class)"
	case w.OfferGPU != "":
		return w.OfferGPU + " (offer)"
	}
	return w.ClassGPU + " (class)"
}

// CompareVersions compares dotted numeric versions ("550.54.15" and
// "550.54", "12.4" and "12.10"), part by part; missing parts are 0. A part
// that is not a number compares as 0.
func CompareVersions(a, b string) int {
	pa, pb := strings.Split(strings.TrimSpace(a), "."), strings.Split(strings.TrimSpace(b), ".")
	for i := range max(len(pa), len(pb)) {
		var x, y int
		if i < len(pa) {
			x, _ = strconv.Atoi(pa[i])
		}
		if i < len(pb) {
			y, _ = strconv.Atoi(pb[i])
		}
		if x != y {
			if x < y {
				return -1
			}
			return 1
		}
	}
	return 0
}

// ValidVersion reports whether s is a dotted numeric version with two or
// three parts, as min_cuda ("12.4") and min_driver ("550.54") are written.
func ValidVersion(s string) bool {
	parts := strings.Split(s, ".")
	if len(parts) < 2 || len(parts) > 3 {
		return false
	}
	for _, p := range parts {
		if !isDigits(p) || len(p) > 6 {
			return false
		}
	}
	return true
}

func isDigits(s string) bool {
	if s == "" {
		return false
	}
	for _, r := range s {
		if r < '0' || r > '9' {
			return false
		}
	}
	return true
}

func or(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

// clip keeps what a host printed short in a lease's record.
func clip(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}
