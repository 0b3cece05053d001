package vast

import (
	"cmp"
	"context"
	"fmt"
	"math"
	"slices"
	"strings"

	"github.com/crabbox/crabbox-runner/internal/gpus"
	"github.com/crabbox/crabbox-runner/provisioner"
)

// Class defaults for what a class leaves unset.
const (
	// DefaultImage has CUDA and a shell; Vast injects its SSH server into
	// any image when the runtype asks for SSH.
	DefaultImage = "nvidia/cuda:12.4.1-devel-ubuntu22.04"
	// DefaultDiskGB holds a CUDA devel image (~8 GB), the runner and a
	// job's checkout with room to spare.
	DefaultDiskGB = 40
	// DefaultOfferLimit is how many offers one search asks for.
	DefaultOfferLimit = 64
	// fallbackOfferLimit is the wider search for a GPU name that is not in
	// KnownGPUNames and so cannot be filtered on the server.
	fallbackOfferLimit = 512
	// hoursPerMonth converts storage_cost ($/GB/month) to $/GB/hour, as
	// Vast's price breakdown and gpuhunt do (30 days).
	hoursPerMonth = 30 * 24
)

func diskGB(c provisioner.Class) float64 {
	if c.DiskGB > 0 {
		return float64(c.DiskGB)
	}
	return DefaultDiskGB
}

func image(c provisioner.Class) string {
	return cmp.Or(strings.TrimSpace(c.Image), DefaultImage)
}

// searchQuery turns a class into one offer search. gpuNames is the exact
// gpu_name list to filter on (none: no name filter on the server).
func (p *Provider) searchQuery(c provisioner.Class, gpuNames []string, limit int) SearchQuery {
	f := Filters{}
	// The CLI's default filters: offers one can rent now, on Vast itself.
	f.Set("rentable", OpEq, true)
	f.Set("rented", OpEq, false)
	f.Set("external", OpEq, false)
	if c.VerifiedOnly {
		f.Set("verified", OpEq, true)
	}
	if c.DatacenterOnly {
		// vast-openapi.yaml, search offers: "datacenter: Show only
		// datacenter offers" (Vast's secure cloud, vetted providers).
		f.Set("datacenter", OpEq, true)
	}
	switch len(gpuNames) {
	case 0:
	case 1:
		f.Set("gpu_name", OpEq, gpuNames[0])
	default:
		f.Set("gpu_name", OpIn, gpuNames)
	}
	f.Set("num_gpus", OpEq, max(c.GPU.Count, 1))
	if c.GPU.MinMemoryGB > 0 {
		// gpu_ram is nvidia-smi's MiB, below the nominal size (46068 for
		// a 48 GB L40S): the bound is loose enough for every card of the
		// nominal size, and fits checks nominal GB exactly.
		f.Set("gpu_ram", OpGte, gpus.MinMiB(c.GPU.MinMemoryGB))
	}
	if c.MaxPricePerHour > 0 {
		f.Set("dph_total", OpLte, c.MaxPricePerHour)
	}
	if c.MinReliability > 0 {
		f.Set("reliability", OpGte, c.MinReliability)
	}
	if c.DirectSSH {
		f.Set("direct_port_count", OpGte, 1)
	}
	if codes := countryCodes(c.Region); len(codes) == 1 {
		f.Set("geolocation", OpEq, codes[0])
	} else if len(codes) > 1 {
		f.Set("geolocation", OpIn, codes)
	}
	if v := classCUDA(c); v > 0 {
		f.Set("cuda_max_good", OpGte, v)
	}
	return SearchQuery{
		Filters:          f,
		Order:            [][2]string{{"dph_total", "asc"}},
		Type:             "on-demand",
		Limit:            limit,
		AllocatedStorage: diskGB(c),
	}
}

// countryCodes reads a region as Vast's geolocation filter wants it: one or
// more two-letter country codes ("US", "us,ca"). Anything else ("Texas")
// is matched on the offers' free-text location instead.
func countryCodes(region string) []string {
	var out []string
	for _, part := range strings.FieldsFunc(region, func(r rune) bool { return r == ',' || r == ' ' }) {
		if len(part) != 2 || !isLetters(part) {
			return nil
		}
		out = append(out, strings.ToUpper(part))
	}
	return out
}

func isLetters(s string) bool {
	for _, r := range s {
		if (r < 'a' || r > 'z') && (r < 'A' || r > 'Z') {
			return false
		}
	}
	return true
}

// regionMatches checks an offer's location ("Texas, US") against the class
// region: a country code matches the last part, other text anywhere.
func regionMatches(region, geo string) bool {
	if region == "" {
		return true
	}
	if codes := countryCodes(region); len(codes) > 0 {
		cc := geo
		if i := strings.LastIndex(geo, ","); i >= 0 {
			cc = geo[i+1:]
		}
		return slices.Contains(codes, strings.ToUpper(strings.TrimSpace(cc)))
	}
	return strings.Contains(strings.ToLower(geo), strings.ToLower(strings.TrimSpace(region)))
}

// price is what an offer costs per hour for the class: dph_total, which Vast
// computes with the search's allocated_storage. Should the server have
// priced another disk size (it defaults to 8 GB when it ignores the field),
// compute plus storage for the class's disk is used when higher, so a
// price is never under-counted.
func price(o Offer, disk float64) float64 {
	total := o.DphTotal
	if o.DphBase > 0 && o.StorageCost > 0 {
		total = max(total, o.DphBase+o.StorageCost*disk/hoursPerMonth)
	}
	if total <= 0 {
		total = o.DphBase
	}
	return math.Round(total*1e6) / 1e6
}

// fits re-checks an offer on our side: the server's filters are trusted
// for narrowing, not for correctness.
func fits(o Offer, c provisioner.Class, pricePerHour float64) (bool, string) {
	switch {
	case o.ID <= 0:
		return false, "no id"
	case !gpuMatches(c.GPU.Name, o.GPUName):
		return false, "GPU " + o.GPUName
	case o.NumGPUs != max(c.GPU.Count, 1):
		return false, fmt.Sprintf("%d GPUs", o.NumGPUs)
	case c.GPU.MinMemoryGB > 0 && gpuMemoryGB(o) < c.GPU.MinMemoryGB:
		return false, fmt.Sprintf("%.0f MiB per GPU (%g GB)", o.GPURAM, gpuMemoryGB(o))
	case c.MaxPricePerHour > 0 && pricePerHour > c.MaxPricePerHour:
		return false, fmt.Sprintf("$%.4f/h", pricePerHour)
	case c.MinReliability > 0 && o.Reliability >= 0 && o.Reliability < c.MinReliability:
		return false, fmt.Sprintf("reliability %.3f", o.Reliability)
	case c.VerifiedOnly && !o.Verified:
		return false, "not verified"
	case c.DatacenterOnly && o.NotDatacenter:
		return false, "not a datacenter offer"
	case !o.Rentable || o.Rented:
		return false, "not rentable"
	case c.DirectSSH && o.DirectPortCount < 1:
		return false, "no direct ports"
	case !regionMatches(c.Region, o.Geolocation):
		return false, "location " + o.Geolocation
	case o.DiskSpace > 0 && o.DiskSpace < diskGB(c):
		return false, fmt.Sprintf("%.0f GB disk", o.DiskSpace)
	case o.CUDAMaxGood > 0 && o.CUDAMaxGood+1e-9 < classCUDA(c):
		return false, fmt.Sprintf("CUDA %g", o.CUDAMaxGood)
	case c.MinDriver != "" && o.DriverVersion != "" && provisioner.CompareVersions(o.DriverVersion, c.MinDriver) < 0:
		return false, "driver " + o.DriverVersion
	}
	return true, ""
}

// Offers searches Vast for the class and returns the fitting offers,
// cheapest first, priced with the class's disk.
//
// A class GPU name that matches names in KnownGPUNames becomes a gpu_name
// filter (eq or in) of every real variant it matches (internal/gpus). An unknown name is first tried as written (eq, spaces for
// underscores); when that finds nothing, one wider search without a name
// filter is matched on our side, so a GPU newer than the list is still
// found.
func (p *Provider) Offers(ctx context.Context, c provisioner.Class) ([]provisioner.Offer, error) {
	// No GPU name: any GPU will do, and no name filter is sent.
	names := vastGPUNames(c.GPU.Name)
	known := len(names) > 0 || restName(c.GPU.Name) == ""
	if !known {
		names = []string{restName(c.GPU.Name)}
	}
	raw, err := p.searches.search(ctx, p.client, p.searchQuery(c, names, p.offerLimit))
	if err != nil {
		return nil, err
	}
	out := p.normalise(raw, c)
	if len(out) == 0 && !known {
		p.log.Debug("vast: GPU name not known; searching without a name filter", "gpu", c.GPU.Name)
		if raw, err = p.searches.search(ctx, p.client, p.searchQuery(c, nil, fallbackOfferLimit)); err != nil {
			return nil, err
		}
		out = p.normalise(raw, c)
	}
	// Interruptible offers compete on price with the on-demand ones: the
	// same machine may be in both lists, bid first when cheaper, so a
	// refused bid falls back to renting it on demand.
	if len(out) > 0 || known {
		bids, err := p.bidOffers(ctx, c, names)
		if err != nil {
			if len(out) == 0 {
				return nil, err
			}
			p.log.Warn("vast: bid search failed; on-demand offers only", "error", err)
		}
		out = append(out, bids...)
		sortOffers(out)
	}
	return out, nil
}

// sortOffers puts the cheapest first; ties go to the shorter, then lower
// id, and on-demand before a bid of the same price.
func sortOffers(out []provisioner.Offer) {
	slices.SortStableFunc(out, func(a, b provisioner.Offer) int {
		return cmp.Or(cmp.Compare(a.PricePerHour, b.PricePerHour), cmp.Compare(len(a.ID), len(b.ID)), cmp.Compare(a.ID, b.ID),
			boolCmp(a.Interruptible, b.Interruptible))
	})
}

func boolCmp(a, b bool) int {
	switch {
	case a == b:
		return 0
	case !a:
		return -1
	}
	return 1
}

func (p *Provider) normalise(raw []Offer, c provisioner.Class) []provisioner.Offer {
	disk := diskGB(c)
	out := make([]provisioner.Offer, 0, len(raw))
	seen := map[int64]bool{}
	for _, o := range raw {
		pr := price(o, disk)
		if ok, why := fits(o, c, pr); !ok || seen[o.ID] {
			if !ok {
				p.log.Debug("vast: offer does not fit", "offer_id", o.ID, "why", why)
			}
			continue
		}
		seen[o.ID] = true
		out = append(out, p.offer(o, c, pr))
	}
	sortOffers(out)
	return out
}
