package lambda

import (
	"cmp"
	"context"
	"fmt"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/crabbox/crabbox-runner/internal/gpus"
	"github.com/crabbox/crabbox-runner/provisioner"
)

// Offers turns the class into Lambda offers: every instance type that fits
// (see Fits) times every region that has capacity for it now and has the
// class's image for the type's architecture (GET /images, see pickImage),
// priced from price_cents_per_hour, cheapest first. An offer whose launch recently failed
// for lack of capacity is left out for Options.CapacityCooldown, because
// instance-types keeps listing capacity it does not have and launch calls
// are the scarcest thing Lambda gives (one per 12 s).
func (p *Provider) Offers(ctx context.Context, class provisioner.Class) ([]provisioner.Offer, error) {
	want, err := ParseImage(class.LambdaImage)
	if err != nil {
		return nil, fmt.Errorf("lambda: class %s: lambda_image %w", class.Name, err)
	}
	types, err := p.instanceTypes(ctx)
	if err != nil {
		return nil, err
	}
	images, err := p.images(ctx)
	if err != nil {
		return nil, err
	}
	now := time.Now()
	var out []provisioner.Offer
	for _, it := range types {
		t := it.InstanceType
		if !Fits(t, class) {
			continue
		}
		price := float64(t.PriceCentsPerHour) / 100
		if class.MaxPricePerHour > 0 && price > class.MaxPricePerHour {
			continue
		}
		gpu, mem := gpuName(t), gpuMemoryGB(t)
		arch := typeArchitecture(t)
		for _, r := range it.RegionsWithCapacity {
			if !regionMatches(r.Name, class.Region) {
				continue
			}
			id := offerID(t.Name, r.Name)
			if p.coolingDown(id, now) {
				continue
			}
			// A region without the class's image for the type's
			// architecture would answer the launch 404, and each try costs
			// one of Lambda's launch slots.
			img, ok := pickImage(images, r.Name, arch, want)
			if !ok {
				p.log.Debug("lambda: offer left out: no image of the class in the region for the architecture",
					"offer_id", id, "architecture", arch, "lambda_image", class.LambdaImage)
				continue
			}
			out = append(out, provisioner.Offer{
				Provider:     Name,
				ID:           id,
				GPU:          gpu,
				GPUCount:     t.Specs.GPUs,
				GPUMemoryGB:  mem,
				PricePerHour: price,
				Region:       r.Name,
				Reliability:  1,
				// Lambda names no physical machine: an Instance has an id
				// and a hostname, "which resolves to the instance's IP"
				// (lambda-openapi.json, components.schemas.Instance), and
				// nothing of the host under it. The type in the region is
				// the pool a bad host came from, tried last for a while
				// after one failed (Capabilities.MachinePools).
				MachineID: id,
				Image:     img.label(want.ID != ""),
			})
		}
	}
	slices.SortFunc(out, func(a, b provisioner.Offer) int {
		return cmp.Or(cmp.Compare(a.PricePerHour, b.PricePerHour), cmp.Compare(a.ID, b.ID))
	})
	return out, nil
}

// instanceTypes returns GET /instance-types, from a cache younger than
// Options.OffersCacheTTL: a burst of leases asks for offers at once, and
// each call costs a second of the shared rate limit.
func (p *Provider) instanceTypes(ctx context.Context) (map[string]InstanceTypeAvailability, error) {
	p.mu.Lock()
	if p.typesCache != nil && time.Since(p.typesAt) < p.opts.OffersCacheTTL {
		types := p.typesCache
		p.mu.Unlock()
		return types, nil
	}
	p.mu.Unlock()
	types, err := p.client.InstanceTypes(ctx)
	if err != nil {
		return nil, err
	}
	p.mu.Lock()
	p.typesCache, p.typesAt = types, time.Now()
	p.mu.Unlock()
	return types, nil
}

func (p *Provider) coolingDown(offerID string, now time.Time) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	until, ok := p.cooling[offerID]
	if ok && now.After(until) {
		delete(p.cooling, offerID)
		return false
	}
	return ok
}

func (p *Provider) coolDown(offerID string) {
	if p.opts.CapacityCooldown <= 0 {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.cooling[offerID] = time.Now().Add(p.opts.CapacityCooldown)
}

// offerID names an offer "<instance type>@<region>", e.g.
// gpu_1x_a100_sxm4@us-east-1.
func offerID(typeName, region string) string { return typeName + "@" + region }

func parseOfferID(id string) (typeName, region string, err error) {
	typeName, region, ok := strings.Cut(id, "@")
	if !ok || typeName == "" || region == "" || strings.Contains(region, "@") {
		return "", "", fmt.Errorf("lambda: offer id %q is not <instance type>@<region>", id)
	}
	return typeName, region, nil
}

// Fits reports whether an instance type fits the class. The rule:
//
//   - GPU name: by model, with the catalog both providers share
//     (internal/gpus, docs/providers/gpus.md): the type's GPU is gpuName of
//     its gpu_description ("A6000 (48 GB)" is "A6000", the RTX A6000), and
//     a class name means a family ("A100": the PCIe and SXM4 types, 40 and
//     80 GB; "H100": PCIe and SXM5) or one model ("RTX A6000" ≡ "A6000";
//     "H100 SXM" fits "H100 (80 GB SXM5)"). "A10" is not "A100". A name
//     the catalog does not know falls back to words: every word of the
//     class's name (split on spaces, '-' and '_', case ignored) is a word
//     of the type's gpu_description or name; a word matches the same word,
//     or, when it is letters only, the same letters followed by digits.
//   - GPU count: exactly the class's count (specs.gpus), so a one-GPU class
//     never rents an eight-GPU machine at eight times the price. A count of
//     zero accepts any.
//   - Memory per GPU: the nominal "NN GB" of gpu_description (what Vast's
//     readings are turned into too, so a class compares like with like on
//     both) is at least the class's min_memory_gb; a type whose memory
//     cannot be read fits only classes that ask for none.
//   - Disk: specs.storage_gib is at least the class's disk_gb (Lambda's disk
//     is fixed per type and included in the price).
//   - Types without GPUs never fit.
func Fits(t InstanceType, class provisioner.Class) bool {
	g := class.GPU
	switch {
	case t.Specs.GPUs <= 0:
		return false
	case g.Count > 0 && t.Specs.GPUs != g.Count:
		return false
	case g.MinMemoryGB > 0 && gpuMemoryGB(t) < g.MinMemoryGB:
		return false
	case class.DiskGB > 0 && t.Specs.StorageGiB > 0 && t.Specs.StorageGiB < class.DiskGB:
		return false
	}
	if ok, known := gpus.Match(g.Name, gpuName(t)); known {
		return ok
	}
	return nameMatches(g.Name, t)
}

func nameMatches(want string, t InstanceType) bool {
	have := words(t.GPUDescription + " " + t.Name)
	for _, w := range words(want) {
		if !slices.ContainsFunc(have, func(h string) bool { return wordMatches(w, h) }) {
			return false
		}
	}
	return true
}

func wordMatches(want, have string) bool {
	if want == have {
		return true
	}
	rest, ok := strings.CutPrefix(have, want)
	if !ok || rest == "" || strings.ContainsFunc(want, isDigit) {
		return false
	}
	return !strings.ContainsFunc(rest, func(r rune) bool { return !isDigit(r) })
}

func isDigit(r rune) bool { return r >= '0' && r <= '9' }

func words(s string) []string {
	return strings.FieldsFunc(strings.ToLower(s), func(r rune) bool {
		return !(r >= 'a' && r <= 'z' || isDigit(r))
	})
}

var memoryRE = regexp.MustCompile(`(?i)(\d+(?:\.\d+)?)\s*GB`)

// gpuMemoryGB reads the per-GPU memory, nominal GB, from "A100 (80 GB
// SXM4)", falling back to the description "8x A100 (80 GB SXM4)", then to
// the catalog's size for the model when it is sold in one size only. Zero
// when unknown.
func gpuMemoryGB(t InstanceType) float64 {
	for _, s := range []string{t.GPUDescription, t.Description} {
		if m := memoryRE.FindStringSubmatch(s); m != nil {
			if v, err := strconv.ParseFloat(m[1], 64); err == nil {
				return v
			}
		}
	}
	if m := gpus.Of(gpuName(t)); m != nil && len(m.GB) == 1 {
		return m.GB[0]
	}
	return 0
}

// gpuName makes an offer's GPU name from gpu_description without the
// memory: "A100 (40 GB SXM4)" becomes "A100 SXM4", "A6000 (48 GB)" becomes
// "A6000" (Lambda's own words, which internal/gpus knows as the RTX A6000).
func gpuName(t InstanceType) string {
	d := strings.TrimSpace(t.GPUDescription)
	if d == "" {
		return t.Name
	}
	base, inner, ok := strings.Cut(d, "(")
	if !ok {
		return d
	}
	inner = strings.TrimSuffix(strings.TrimSpace(inner), ")")
	inner = strings.TrimSpace(memoryRE.ReplaceAllString(inner, ""))
	return strings.TrimSpace(strings.TrimSpace(base) + " " + inner)
}

// regionMatches applies a class's region filter: the region's name, or a
// prefix of it ending at a '-' boundary ("us" and "us-east" both match
// "us-east-1"). An empty filter matches every region.
func regionMatches(region, filter string) bool {
	filter = strings.ToLower(strings.TrimSpace(filter))
	region = strings.ToLower(region)
	if filter == "" || region == filter {
		return true
	}
	return strings.HasPrefix(region, strings.TrimSuffix(filter, "-")+"-")
}
