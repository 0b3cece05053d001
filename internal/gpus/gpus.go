// Package gpus is what crabbox-runner knows about GPU models, shared by the
// providers without either importing the other: which real names (Vast's
// gpu_name values, Lambda's gpu_description) are the same model, which
// models a class's GPU name means, and a model's nominal memory.
//
// The rule, documented for users in docs/providers/gpus.md:
//
//   - A class GPU name is read as a family ("A100": every A100 variant) or
//     a model ("A100 SXM4", "RTX A6000" ≡ "A6000" ≡ "rtx_a6000"), spelled
//     any way people spell it: case, spaces, '-', '_', a glued suffix
//     ("RTX 4500Ada" ≡ "RTX 4500 Ada") and the vendor words NVIDIA,
//     GeForce and Tesla do not count. A bare number is an RTX ("4090").
//   - A provider's GPU fits the class when the name is a model of the
//     family or that model. Different cards never match: "A10" is not
//     "A10g" nor "A100"; "RTX 4090" is not "RTX 4090D"; "A100" is not
//     "A100X" (each its own entry in Vast's list).
//   - Names this catalog does not know fall back to words: every word of
//     the class name is a word of the offer's name (Match reports known
//     false, and the provider applies its own word rule).
//   - Memory is compared in nominal GB, the size the card is sold as. A
//     provider's reading in MiB (Vast's gpu_ram, as nvidia-smi reports it,
//     below nominal when ECC is on: 46068 MiB for a 48 GB L40S or A40) is
//     turned into the nominal size by NominalGB.
package gpus

import (
	"math"
	"slices"
	"strings"
	"sync"
)

// Model is one GPU model.
type Model struct {
	// Name is how this catalog writes the model, e.g. "A100 SXM4".
	Name string
	// Family groups the variants of one GPU ("A100" for A100 PCIE, A100
	// SXM4); a model alone in its family has Family == Name.
	Family string
	// GB are the nominal memory sizes the model is sold with, per GPU.
	GB []float64
	// Names are the other spellings providers use for the same model.
	Names []string
}

// key reduces a name to the letters and digits that identify a GPU:
// upper case; NVIDIA, GEFORCE and TESLA dropped; memory ("80GB", "80 GB")
// dropped; separators gone. "NVIDIA A100-SXM4-80GB" and "a100_sxm4" both
// become "A100SXM4".
func key(name string) string {
	toks := strings.FieldsFunc(strings.ToUpper(name), func(r rune) bool {
		return !(r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '.')
	})
	var b strings.Builder
	for i, t := range toks {
		switch {
		case t == "NVIDIA" || t == "GEFORCE" || t == "TESLA":
			continue
		case strings.HasSuffix(t, "GB") && isNumber(strings.TrimSuffix(t, "GB")):
			continue
		case isNumber(t) && i+1 < len(toks) && toks[i+1] == "GB":
			continue
		case t == "GB" && i > 0 && isNumber(toks[i-1]):
			continue
		}
		b.WriteString(strings.ReplaceAll(t, ".", ""))
	}
	return b.String()
}

func isNumber(s string) bool {
	if s == "" {
		return false
	}
	for _, r := range s {
		if (r < '0' || r > '9') && r != '.' {
			return false
		}
	}
	return true
}

type index struct {
	byName   map[string]*Model   // key of a model's name or spelling → model
	byFamily map[string][]*Model // key of a family → its models
}

var idx = sync.OnceValue(func() index {
	ix := index{byName: map[string]*Model{}, byFamily: map[string][]*Model{}}
	for i := range catalog {
		m := &catalog[i]
		if m.Family == "" {
			m.Family = m.Name
		}
		for _, n := range append([]string{m.Name}, m.Names...) {
			if k := key(n); k != "" {
				if prev, dup := ix.byName[k]; dup && prev != m {
					panic("gpus: " + n + " names both " + prev.Name + " and " + m.Name)
				}
				ix.byName[k] = m
			}
		}
		fk := key(m.Family)
		ix.byFamily[fk] = append(ix.byFamily[fk], m)
	}
	return ix
})

// Of returns the model a provider's GPU name is, nil when the catalog does
// not know the name.
func Of(name string) *Model {
	k := key(name)
	if k == "" {
		return nil
	}
	return idx().byName[k]
}

// Lookup returns the models a class's GPU name means: a family's models, or
// the one model it names; none when the name is not known. A bare number
// ("4090", "6000 Ada") is read as an RTX.
func Lookup(name string) []*Model {
	k := key(name)
	if k == "" {
		return nil
	}
	ix := idx()
	for _, k := range []string{k, "RTX" + k} {
		if fam, ok := ix.byFamily[k]; ok {
			return fam
		}
		if m, ok := ix.byName[k]; ok {
			return []*Model{m}
		}
		if k[0] < '0' || k[0] > '9' {
			break
		}
	}
	return nil
}

// Match reports whether a provider's GPU (have) fits a class's GPU name
// (want). known is false when either name is not in the catalog; the
// caller then decides by its own word rule. An empty want fits any GPU.
func Match(want, have string) (ok, known bool) {
	if key(want) == "" {
		return true, true
	}
	ms, m := Lookup(want), Of(have)
	if len(ms) == 0 || m == nil {
		return false, false
	}
	return slices.Contains(ms, m), true
}

// Tolerances of NominalGB, as fractions of a nominal size: a reading down
// to 92% of it counts (ECC takes 1/16 of GDDR memory: 46068 MiB of a 48 GiB
// L40S is 93.7%; HBM parts read 99.6-100%), and up to 2% above it.
const (
	belowNominal = 0.92
	aboveNominal = 1.02
)

// standardGB are memory sizes GPUs are sold with, for models the catalog
// does not know.
var standardGB = []float64{1, 2, 3, 4, 5, 6, 8, 10, 11, 12, 16, 20, 24, 32, 40, 48, 64, 72, 80, 94, 96, 128, 141, 144, 180, 192, 256, 288}

// NominalGB turns a memory reading in MiB (as nvidia-smi and Vast's gpu_ram
// give it) into the nominal GB the card is sold with: the model's size
// nearest the reading when it is within the tolerances; for a model not
// in the catalog, the smallest standard size the reading is within the
// tolerances of; else the reading in GiB, rounded. 46068 MiB of an L40S is
// 48; 81559 MiB of an H100 is 80; 24564 MiB of an RTX 4090 is 24.
func NominalGB(name string, mib float64) float64 {
	if mib <= 0 {
		return 0
	}
	gib := mib / 1024
	within := func(n float64) bool { return gib >= n*belowNominal && gib <= n*aboveNominal }
	if m := Of(name); m != nil && len(m.GB) > 0 {
		best := m.GB[0]
		for _, n := range m.GB[1:] {
			if math.Abs(n-gib) < math.Abs(best-gib) {
				best = n
			}
		}
		if within(best) {
			return best
		}
	}
	best := 0.0
	for _, n := range standardGB {
		if within(n) && (best == 0 || math.Abs(n-gib) < math.Abs(best-gib)) {
			best = n
		}
	}
	if best > 0 {
		return best
	}
	return math.Round(gib)
}

// MinMiB is a loose lower bound in MiB for a server-side filter on
// readings like Vast's gpu_ram, so that no card of at least gb nominal GB is
// filtered out: the exact check is NominalGB on our side.
func MinMiB(gb float64) float64 {
	if gb <= 0 {
		return 0
	}
	return math.Floor(gb * 1024 * belowNominal)
}
