package vast_test

import (
	"context"
	"encoding/json"
	"errors"
	"math"
	"strconv"
	"strings"
	"testing"

	"github.com/crabbox/crabbox-runner/providers/vast/vasttest"
	"github.com/crabbox/crabbox-runner/provisioner"
)

func bidClass(bid float64) provisioner.Class {
	c := a100
	c.InterruptibleBid = bid
	return c
}

// An interruptible class searches the bid market besides the on-demand
// one (type "bid", vast-cli vastai/api/offers.py) and lists each machine
// twice, the bid (bid × min_bid + storage) cheaper and first; a class
// without interruptible never sends a bid search.
func TestInterruptibleOffers(t *testing.T) {
	fake := newFake(t, vasttest.Options{})
	p := newProvider(t, fake)
	ctx := context.Background()

	plain, err := p.Offers(ctx, a100)
	if err != nil || len(plain) == 0 {
		t.Fatalf("on-demand offers: %v %v", plain, err)
	}
	for _, r := range fake.RequestsFor(vasttest.OpSearch) {
		if strings.Contains(string(r.Body), `"bid"`) {
			t.Fatalf("a class without interruptible sent a bid search: %s", r.Body)
		}
	}
	onDemand := map[string]float64{}
	for _, o := range plain {
		if o.Interruptible {
			t.Fatalf("on-demand class got a bid offer: %+v", o)
		}
		onDemand[o.ID] = o.PricePerHour
	}

	offers, err := p.Offers(ctx, bidClass(1.2))
	if err != nil {
		t.Fatal(err)
	}
	var types []string
	for _, r := range fake.RequestsFor(vasttest.OpSearch)[1:] {
		var body map[string]any
		if err := json.Unmarshal(r.Body, &body); err != nil {
			t.Fatal(err)
		}
		types = append(types, body["type"].(string))
	}
	if strings.Join(types, ",") != "on-demand,bid" {
		t.Fatalf("search types %v, want on-demand then bid", types)
	}
	if !offers[0].Interruptible {
		t.Fatalf("cheapest offer is not the bid: %+v", offers[0])
	}
	bids := 0
	for i, o := range offers {
		if i > 0 && o.PricePerHour < offers[i-1].PricePerHour {
			t.Fatalf("not cheapest first: %+v", offers)
		}
		if !o.Interruptible {
			continue
		}
		bids++
		id, _ := strconv.ParseInt(o.ID, 10, 64)
		var market vasttest.Offer
		for _, m := range vasttest.DefaultOffers {
			if m.ID == id {
				market = m
			}
		}
		wantBid := math.Ceil(market.MinBidPrice()*1.2*1e4-1e-6) / 1e4
		storage := market.StorageCost * 40 / 720
		if math.Abs(o.BidPerHour-wantBid) > 1e-9 || math.Abs(o.PricePerHour-(wantBid+storage)) > 1e-6 {
			t.Errorf("offer %s: bid %v price %v, want bid %v price %v", o.ID, o.BidPerHour, o.PricePerHour, wantBid, wantBid+storage)
		}
		if od, ok := onDemand[o.ID]; !ok || o.PricePerHour >= od {
			t.Errorf("offer %s: bid price %v, on-demand %v (listed %v)", o.ID, o.PricePerHour, od, ok)
		}
	}
	if bids != len(plain) || len(offers) != 2*len(plain) {
		t.Fatalf("%d offers, %d bids; want each of the %d machines twice", len(offers), bids, len(plain))
	}

	// A bid over the class's cap does not fit: on-demand only.
	c := bidClass(10)
	c.MaxPricePerHour = 1.0
	offers, err = p.Offers(ctx, c)
	if err != nil {
		t.Fatal(err)
	}
	for _, o := range offers {
		if o.Interruptible && o.PricePerHour > 1.0 {
			t.Fatalf("bid over the cap: %+v", o)
		}
	}
}

// Two GPUs: the bid read per GPU (bid × 2) must fit the cap too, and
// without a cap there is no bid (bids.go: per machine or per GPU).
func TestInterruptibleMultiGPUBidIsSafe(t *testing.T) {
	fake := newFake(t, vasttest.Options{})
	p := newProvider(t, fake)
	c := bidClass(1.2)
	c.GPU.Count = 2
	c.MaxPricePerHour = 0
	offers, err := p.Offers(context.Background(), c)
	if err != nil || len(offers) == 0 {
		t.Fatalf("%v %v", offers, err)
	}
	for _, o := range offers {
		if o.Interruptible {
			t.Fatalf("a multi-GPU class without a cap bid: %+v", o)
		}
	}
	c.MaxPricePerHour = 4
	offers, _ = p.Offers(context.Background(), c)
	found := false
	for _, o := range offers {
		if o.Interruptible {
			found = true
			if o.BidPerHour*2 > 4 {
				t.Fatalf("bid × GPUs over the cap: %+v", o)
			}
		}
	}
	if !found {
		t.Fatal("no bid on the two-GPU offer within the cap")
	}
}

// The create of a bid sends price (vast-openapi.yaml createInstance: "Bid
// price per machine"); the instance is interruptible, and once outbid it
// reads InstanceOutbid with its host's processes gone.
func TestInterruptibleCreateAndOutbid(t *testing.T) {
	fake := newFake(t, vasttest.Options{})
	p := newProvider(t, fake)
	key := newLeaseKey(t)
	c := bidClass(1.2)
	inst := create(t, p, c, marker("acme-gpu", "l1"), key)
	reqs := fake.RequestsFor(vasttest.OpCreate)
	var body map[string]any
	if err := json.Unmarshal(reqs[len(reqs)-1].Body, &body); err != nil {
		t.Fatal(err)
	}
	price, ok := body["price"].(float64)
	if !ok || price <= 0 {
		t.Fatalf("create body without a bid: %s", reqs[len(reqs)-1].Body)
	}
	running := waitStatus(t, p, inst.ID, provisioner.InstanceRunning)
	if out, err := sshRun(t, running.SSH, key, "echo up"); err != nil || !strings.HasSuffix(strings.TrimSpace(out), "up") {
		t.Fatalf("ssh: %q %v", out, err)
	}
	id, _ := strconv.ParseInt(inst.ID, 10, 64)
	if !fake.Outbid(id) {
		t.Fatal("Outbid refused a running bid instance")
	}
	got := waitStatus(t, p, inst.ID, provisioner.InstanceOutbid)
	if !strings.Contains(got.StatusMessage, "outbid") || got.SSH.Host != "" {
		t.Fatalf("outbid instance: %+v", got)
	}
	if _, err := sshRun(t, running.SSH, key, "true"); err == nil {
		t.Fatal("the outbid host still answers SSH")
	}
	// An on-demand instance cannot be outbid.
	inst2 := create(t, p, a100, marker("acme-gpu", "l2"), newLeaseKey(t))
	waitStatus(t, p, inst2.ID, provisioner.InstanceRunning)
	id2, _ := strconv.ParseInt(inst2.ID, 10, 64)
	if fake.Outbid(id2) {
		t.Fatal("Outbid stopped an on-demand instance")
	}
}

// A bid under the offer's current min_bid is refused (400 invalid_price):
// no host, and not "offer taken", so the same machine may still be rented
// on demand.
func TestInterruptibleBidUnderMinimumRefused(t *testing.T) {
	fake := newFake(t, vasttest.Options{})
	p := newProvider(t, fake)
	ctx := context.Background()
	c := bidClass(1.2)
	offers, err := p.Offers(ctx, c)
	if err != nil || !offers[0].Interruptible {
		t.Fatalf("%v %v", offers, err)
	}
	id, _ := strconv.ParseInt(offers[0].ID, 10, 64)
	fake.SetMinBid(id, offers[0].BidPerHour*2)
	_, err = p.Create(ctx, provisioner.CreateRequest{Offer: offers[0], Class: c, Marker: marker("acme-gpu", "l1"),
		SSHPublicKey: newLeaseKey(t).authorized})
	if err == nil || errors.Is(err, provisioner.ErrOfferUnavailable) || !strings.Contains(err.Error(), "minimum bid") {
		t.Fatalf("Create under min_bid: %v", err)
	}
	if len(fake.Live()) != 0 {
		t.Fatalf("a refused bid left an instance: %+v", fake.Live())
	}
	for _, o := range offers[1:] {
		if o.ID == offers[0].ID && !o.Interruptible {
			inst, err := p.Create(ctx, provisioner.CreateRequest{Offer: o, Class: c, Marker: marker("acme-gpu", "l1"),
				SSHPublicKey: newLeaseKey(t).authorized})
			if err != nil {
				t.Fatalf("on-demand create of the same machine: %v", err)
			}
			t.Cleanup(func() { _ = p.Destroy(ctx, inst) })
			return
		}
	}
	t.Fatal("the machine has no on-demand offer to fall back to")
}
