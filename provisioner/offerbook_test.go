package provisioner

import (
	"testing"
	"time"
)

func TestOfferBook(t *testing.T) {
	var b offerBook
	now := time.Unix(1_000_000, 0)
	ask := Offer{Provider: "vast", ID: "7", Exclusive: true}
	other := Offer{Provider: "lambda", ID: "7", Exclusive: true} // same id, other provider
	if r := b.claim(ask, "l1", now); r != claimed {
		t.Fatalf("first claim: %v", r)
	}
	if r := b.claim(ask, "l1", now); r != claimed {
		t.Errorf("the holder claiming again: %v; want claimed", r)
	}
	if r := b.claim(ask, "l2", now); r != claimBusy {
		t.Errorf("a second lease: %v; want busy", r)
	}
	if r := b.claim(other, "l2", now); r != claimed {
		t.Errorf("the same id on another provider: %v; want claimed", r)
	}
	// A failure that is not the offer's hands it on.
	b.end(ask, "l1", false, now, offerTakenFor)
	if r := b.claim(ask, "l2", now); r != claimed {
		t.Errorf("after a plain failure: %v; want claimed", r)
	}
	// Refused or rented: taken for every lease, the claimer too, until it expires.
	b.end(ask, "l2", true, now, offerTakenFor)
	for _, l := range []string{"l1", "l2", "l3"} {
		if r := b.claim(ask, l, now.Add(offerTakenFor-time.Second)); r != claimIsTaken {
			t.Errorf("%s claiming a taken offer: %v; want taken", l, r)
		}
	}
	if r := b.claim(ask, "l3", now.Add(offerTakenFor+time.Second)); r != claimed {
		t.Errorf("after the taken mark expired: %v; want claimed", r)
	}
	// Ending someone else's claim does not free it.
	b.end(ask, "l9", false, now, offerTakenFor)
	if r := b.claim(ask, "l4", now.Add(offerTakenFor+time.Second)); r != claimBusy {
		t.Errorf("l3's claim after a stranger's end: %v; want busy", r)
	}
}

func TestOfferBookSettled(t *testing.T) {
	var b offerBook
	if b.attemptsSettled("l1", 1) {
		t.Error("nothing recorded: settled")
	}
	b.settle("l1", 1, false)
	if !b.attemptsSettled("l1", 1) || b.attemptsSettled("l1", 2) {
		t.Error("one refused attempt: want settled at 1 only")
	}
	b.settle("l1", 2, true)
	b.settle("l1", 3, false)
	if b.attemptsSettled("l1", 3) {
		t.Error("an uncertain attempt once: never settled again")
	}
	b.settle("l2", 1, false)
	b.forget("l2")
	if b.attemptsSettled("l2", 1) {
		t.Error("forgotten: settled")
	}
}
