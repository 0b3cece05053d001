package vast

import (
	"context"
	"math"
	"strconv"

	"github.com/crabbox/crabbox-runner/provisioner"
)

// Interruptible (bid) hosts, for classes that opt in
// (provisioner.Class.InterruptibleBid). "Interruptible instances use a
// bidding system: clients set a bid price for each instance; the host then
// decides which instances run when" and "If another user places a higher
// bid or creates an on demand rental for the same resources then your
// instance will be stopped" (vast-ai/docs instances/rental-types.mdx).
//
// The search is the class's on-demand search with type "bid" (vast-cli
// vastai/api/offers.py maps "interruptible" to "bid"); each offer's
// min_bid is "current minimum bid price in $/hr for interruptible"
// (vast-cli vast.py). The create sends price, "Bid price per machine (in
// $/hour)" (vast-openapi.yaml createInstance; vast-cli's --bid_price help
// says "per machine bid price" too), and without it the host would be an
// on-demand one at dph_total (vast-cli vastai/SKILL.md).
//
// Per machine or per GPU: the spec and the create help say per machine,
// vast-cli's "change bid" prints "per gpu" and the hosts' own
// price_min_bid is per GPU. The client sends the per-machine bid and, on
// a multi-GPU offer, bids only when the bid read per GPU (bid × GPUs) is
// still within the class's max_price_per_hour, so neither reading can cost
// more than the class allows; a multi-GPU class without a price cap gets
// no bids.

// bidStep rounds a bid up to a hundredth of a cent, so that rounding never
// takes it under min_bid.
const bidStep = 1e-4

// bidFor is what the class bids on an offer, per machine-hour; 0 when it
// does not bid on it.
func bidFor(o Offer, c provisioner.Class) float64 {
	if c.InterruptibleBid <= 0 || o.MinBid <= 0 {
		return 0
	}
	bid := math.Ceil(o.MinBid*c.InterruptibleBid/bidStep-1e-6) * bidStep
	bid = math.Round(bid*1e6) / 1e6
	if n := max(o.NumGPUs, 1); n > 1 && (c.MaxPricePerHour <= 0 || bid*float64(n) > c.MaxPricePerHour) {
		return 0
	}
	return bid
}

// bidPrice is an interruptible host's price per hour for the class: the
// bid plus the storage, which is billed whether the host runs or is
// stopped (storage_cost is $/GB/month; without it, what dph_total adds to
// dph_base).
func bidPrice(o Offer, bid, disk float64) float64 {
	storage := o.StorageCost * disk / hoursPerMonth
	if o.StorageCost <= 0 {
		storage = max(o.DphTotal-o.DphBase, 0)
	}
	return math.Round((bid+storage)*1e6) / 1e6
}

// bidOffers searches the bid market for the class and returns the offers
// it would bid on, priced at the bid; none unless the class opts in.
func (p *Provider) bidOffers(ctx context.Context, c provisioner.Class, names []string) ([]provisioner.Offer, error) {
	if c.InterruptibleBid <= 0 {
		return nil, nil
	}
	q := p.searchQuery(c, names, p.offerLimit)
	q.Type = "bid"
	raw, err := p.searches.search(ctx, p.client, q)
	if err != nil {
		return nil, err
	}
	disk := diskGB(c)
	var out []provisioner.Offer
	seen := map[int64]bool{}
	for _, o := range raw {
		bid := bidFor(o, c)
		if bid <= 0 || seen[o.ID] {
			continue
		}
		pr := bidPrice(o, bid, disk)
		if ok, why := fits(o, c, pr); !ok {
			p.log.Debug("vast: bid offer does not fit", "offer_id", o.ID, "why", why)
			continue
		}
		seen[o.ID] = true
		of := p.offer(o, c, pr)
		of.Interruptible, of.BidPerHour = true, bid
		out = append(out, of)
	}
	return out, nil
}

// offer is the provisioner's view of a fitting offer at the given price.
func (p *Provider) offer(o Offer, c provisioner.Class, pr float64) provisioner.Offer {
	rel := o.Reliability
	if rel < 0 {
		rel = 1 // unreported, as provisioner.Offer documents
	}
	of := provisioner.Offer{
		Provider:     Name,
		ID:           strconv.FormatInt(o.ID, 10),
		GPU:          o.GPUName,
		GPUCount:     o.NumGPUs,
		GPUMemoryGB:  gpuMemoryGB(o),
		PricePerHour: pr,
		Region:       o.Geolocation,
		Reliability:  rel,
		// A Vast offer is one machine's ask: one create takes it, as a
		// bid or on demand.
		Exclusive: true,
		Image:     image(c),
	}
	if o.MachineID > 0 {
		of.MachineID = strconv.FormatInt(o.MachineID, 10)
	}
	return of
}
