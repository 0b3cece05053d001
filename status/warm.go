package status

import (
	_ "embed"
	"slices"
	"strings"
	"time"

	"github.com/crabbox/crabbox-runner/provisioner"
)

// Warm hosts (issue 18): per class with min_idle, how many warm hosts it
// keeps, how many are ready (runner online, idle) and starting, since when
// the oldest ready one waits, and what they cost an hour now. Its template
// is warm.html; page.html only says where it goes.

//go:embed warm.html
var warmHTML string

// warmRow is one class with min_idle.
type warmRow struct {
	Class    string
	Target   int
	Ready    int
	Starting int
	// IdleSince is when the longest-waiting ready one came online (zero:
	// none ready); the class's idle_timeout counts from it.
	IdleSince time.Time
	PerHour   float64
}

// warmHosts fills the view's section from the leases read for the page:
// warm leases not taken by a job (nor asked to be released).
func (h *Handler) warmHosts(v *view, leases []*provisioner.Lease) {
	if len(h.cfg.MinIdle) == 0 {
		return
	}
	rows := map[string]*warmRow{}
	for class, n := range h.cfg.MinIdle {
		if n > 0 {
			rows[class] = &warmRow{Class: class, Target: n}
		}
	}
	for _, l := range leases {
		r := rows[l.Class]
		if r == nil || !l.Warm || l.ReleaseReason != "" {
			continue
		}
		switch {
		case l.State.Starting():
			r.Starting++
		case l.State == provisioner.StateIdle:
			r.Ready++
			if r.IdleSince.IsZero() || l.IdleSince.Before(r.IdleSince) {
				r.IdleSince = l.IdleSince
			}
		default:
			continue
		}
		if billedNow(l) {
			r.PerHour += l.PricePerHour
		}
	}
	for _, r := range rows {
		v.Warm = append(v.Warm, *r)
	}
	slices.SortFunc(v.Warm, func(a, b warmRow) int { return strings.Compare(a.Class, b.Class) })
	v.WarmShown = len(v.Warm) > 0
}
