package vasttest

import (
	"math"
	"time"
)

// Record is what one instance cost and when, for the time-to-runner
// benchmark: when it was created, became reachable and was destroyed, and
// its prices.
type Record struct {
	ID, OfferID int64
	Label       string
	// GPUPerHour is the compute price ($/h: dph_base, or the bid),
	// StoragePerHour the disk's (storage_cost × disk / 720 h); DphTotal
	// is their sum, as the instance shows it.
	GPUPerHour, StoragePerHour, DphTotal float64
	Created                              time.Time
	// Reachable is when the instance turned "running" with SSH details;
	// zero if it never did.
	Reachable time.Time
	// Destroyed is when its destroy was asked for; zero while it lives.
	Destroyed time.Time
}

// Cost is what Vast bills for the instance, given how long each part
// lasted in real terms (the benchmark scales the fake's boot back up):
// compute per second while running (reference vast-api.md §10: "GPU compute
// billed per second while in a billable state (running)"; "Not charged for
// 'Loading'"), storage per second from creation to destroy ("Storage billed
// continuously while the instance exists … until destroyed"; vast-cli's
// SKILL.md: "storage charges start at creation"). Where the sources differ
// on when storage starts, the fake takes creation: the dearer reading.
func (r Record) Cost(existed, running time.Duration) float64 {
	return perSecond(r.GPUPerHour, running) + perSecond(r.StoragePerHour, existed)
}

func perSecond(perHour float64, d time.Duration) float64 {
	return perHour * math.Ceil(d.Seconds()) / 3600
}

// Records returns every instance's record, in creation order.
func (s *Server) Records() []Record {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []Record
	for _, in := range s.sorted() {
		v := in.view()
		total, _ := v["dph_total"].(float64)
		gpu, _ := v["dph_base"].(float64)
		out = append(out, Record{
			ID: in.id, OfferID: in.offer.ID, Label: in.label,
			GPUPerHour: gpu, StoragePerHour: round6(total - gpu), DphTotal: total,
			Created: in.created, Reachable: in.reachableAt, Destroyed: in.destroyedAt,
		})
	}
	return out
}
