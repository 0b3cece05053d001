package lambdatest

import (
	"math"
	"net/http"
	"testing"
	"time"
)

// TestRecords: an instance's record says when it was launched, became
// reachable after its own boot delay, and was terminated; Lambda bills
// every started minute.
func TestRecords(t *testing.T) {
	s := New(t, Options{Behavior: func(int, LaunchRequest) Behavior { return Behavior{BootDelay: 300 * time.Millisecond} }})
	c := client{t, s, s.APIKey()}
	c.addKey("k")
	status, _, id := c.launch("gpu_1x_a100_sxm4", "us-east-1", "k", "")
	if status != 200 {
		t.Fatalf("launch: %d", status)
	}
	deadline := time.Now().Add(20 * time.Second)
	for !s.Running(id) {
		if time.Now().After(deadline) {
			t.Fatalf("instance %s not running: %s", id, s.Status(id))
		}
		time.Sleep(5 * time.Millisecond)
	}
	if status, env := c.do(http.MethodPost, "/api/v1/instance-operations/terminate", `{"instance_ids":["`+id+`"]}`); status != 200 {
		t.Fatalf("terminate: %d %s", status, env["error"])
	}
	recs := s.Records()
	if len(recs) != 1 {
		t.Fatalf("records: %+v", recs)
	}
	r := recs[0]
	if r.ID != id || r.Type != "gpu_1x_a100_sxm4" || r.PriceCents != 129 ||
		r.Reachable.Sub(r.Launched) < 300*time.Millisecond || r.Terminated.Before(r.Reachable) {
		t.Errorf("record: %+v", r)
	}
	if got, want := r.Cost(61*time.Second), 1.29*2/60; math.Abs(got-want) > 1e-12 {
		t.Errorf("61 s cost %v, want two minutes: %v", got, want)
	}
}
