package provisioner

import "time"

// Billed returns the span in which a lease's host was billed: from the
// answer to its create call (the lease's move to booting) to its release,
// or to now while it still runs. ok is false for a lease that never had a
// host. A host adopted after a crash bills from its adoption, the first
// time this process knew of it; the create call before it is not recorded.
func Billed(l *Lease, events []Event, now time.Time) (from, to time.Time, ok bool) {
	if l.InstanceID == "" {
		return time.Time{}, time.Time{}, false
	}
	for _, e := range events {
		if e.To == StateBooting {
			from = e.At
			break
		}
	}
	if from.IsZero() {
		from = l.CreatedAt
	}
	to = now
	if l.State == StateReleased && !l.ReleasedAt.IsZero() {
		to = l.ReleasedAt
	}
	if to.Before(from) {
		to = from
	}
	return from, to, true
}

// CostBetween is what a lease's host cost within [start, end): its price per
// hour times the part of its billed span inside the window. A zero start or
// end leaves that side open.
func CostBetween(l *Lease, events []Event, now, start, end time.Time) float64 {
	from, to, ok := Billed(l, events, now)
	if !ok || l.PricePerHour <= 0 {
		return 0
	}
	if !start.IsZero() && from.Before(start) {
		from = start
	}
	if !end.IsZero() && to.After(end) {
		to = end
	}
	if !to.After(from) {
		return 0
	}
	return l.PricePerHour * to.Sub(from).Hours()
}

// Cost is what a lease's host has cost so far.
func Cost(l *Lease, events []Event, now time.Time) float64 {
	return CostBetween(l, events, now, time.Time{}, time.Time{})
}
