package vasttest

import (
	"strconv"
	"testing"
	"time"
)

// TestRecordsBootAfter: an instance drawn a boot time stays short of
// running until it has passed, and its record says when it was created,
// reachable and destroyed, with its prices; one that never boots has no
// reachable time and costs storage only.
func TestRecordsBootAfter(t *testing.T) {
	s := newServer(t, Options{Behavior: func(seq int, _ Offer, _ string) Behavior {
		if seq == 2 {
			return Behavior{NeverBoot: true}
		}
		return Behavior{BootAfter: 400 * time.Millisecond}
	}})
	create := func(offer string) int64 {
		status, body := do(t, s, "PUT", "/api/v0/asks/"+offer+"/", `{"client_id": "me", "image": "nvidia/cuda:12.4.1-devel-ubuntu22.04", "disk": 40, "label": "crabbox:t:l:`+offer+`"}`, true)
		if status != 200 {
			t.Fatalf("create: %d %s", status, body)
		}
		var id int64
		for _, in := range s.Instances() {
			id = in.ID
		}
		return id
	}
	booted, never := create("5000201"), create("5000301")
	deadline := time.Now().Add(20 * time.Second)
	for in, _ := s.Instance(booted); in.Status != "running"; in, _ = s.Instance(booted) {
		if time.Now().After(deadline) {
			t.Fatalf("not running: %+v", in)
		}
		time.Sleep(5 * time.Millisecond)
	}
	for _, id := range []int64{booted, never} {
		if status, body := do(t, s, "DELETE", "/api/v0/instances/"+strconv.FormatInt(id, 10)+"/", "", true); status != 200 {
			t.Fatalf("destroy: %d %s", status, body)
		}
	}
	recs := s.Records()
	if len(recs) != 2 {
		t.Fatalf("records: %+v", recs)
	}
	b, n := recs[0], recs[1]
	if b.ID != booted || b.Reachable.Sub(b.Created) < 400*time.Millisecond || b.Destroyed.Before(b.Reachable) || b.Label != "crabbox:t:l:5000201" {
		t.Errorf("booted record: %+v", b)
	}
	if b.GPUPerHour <= 0 || b.StoragePerHour <= 0 || b.DphTotal != round6(b.GPUPerHour+b.StoragePerHour) {
		t.Errorf("booted record's prices: %+v", b)
	}
	if n.ID != never || !n.Reachable.IsZero() || n.Destroyed.IsZero() {
		t.Errorf("never-booted record: %+v", n)
	}
	// An hour of storage and none of compute: storage only.
	if got := n.Cost(time.Hour, 0); got != n.StoragePerHour {
		t.Errorf("never-booted hour costs %v, want %v", got, n.StoragePerHour)
	}
}
