package lambdatest

import (
	"math"
	"time"
)

// Record is what one instance cost and when, for the time-to-runner
// benchmark: launched, reachable (active with its sshd up), terminated
// (the terminate asked for), and its type's price.
type Record struct {
	ID, Name, Type string
	PriceCents     int // price_cents_per_hour of its type
	Launched       time.Time
	Reachable      time.Time // zero if it never became active
	Terminated     time.Time // zero while it lives
}

// Cost is what Lambda bills for an instance that existed this long in
// real terms: "billed in one-minute increments from launch until
// terminate, whether or not the instance is used" (reference
// lambda-cloud-api.md §9, from Lambda's docs billing.md), so every started
// minute counts.
func (r Record) Cost(existed time.Duration) float64 {
	return float64(r.PriceCents) / 100 * math.Ceil(existed.Minutes()) / 60
}

// Records returns every launched instance's record, in launch order.
func (s *Server) Records() []Record {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []Record
	for _, id := range s.order {
		in := s.instances[id]
		out = append(out, Record{
			ID: id, Name: in.api.Name, Type: in.typ.Name, PriceCents: in.typ.PriceCents,
			Launched: in.launchedAt, Reachable: in.reachableAt, Terminated: in.terminateAt,
		})
	}
	return out
}
