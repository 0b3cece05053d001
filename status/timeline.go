package status

import (
	"cmp"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/crabbox/crabbox-runner/provisioner"
)

// The "Where the time goes" section: each recent lease's phases drawn as
// one row of an inline SVG, and per class the p50 and p95 of each phase
// as SVG bars with the figures written. Everything is computed here and
// drawn by timeline.html; the SVG carries no script, no style attribute
// (the page's CSP allows only style.css) and no external reference.

const (
	// maxTimelineRows is how many leases the timeline draws: the most
	// recently made of the page's leases.
	maxTimelineRows = 30
	// maxStatsLeases bounds the leases of one class the bars are
	// computed over: the most recently made.
	maxStatsLeases = 500

	// The drawing's geometry, in CSS pixels.
	tlWidth     = 640 // a timeline row's bar
	tlHeight    = 22
	tlMinSeg    = 2  // a segment that took any time is at least this wide
	tlLetterMin = 12 // wide enough for the phase's letter
	barLabelW   = 150
	barWidth    = 360
	barRowH     = 22
	barFigW     = 260
)

// hedgeOf names the lease a lease hedges while the two race ("" for an
// ordinary lease, and for a hedge once it won: it is then the lease).
func hedgeOf(l *provisioner.Lease) string { return l.HedgeOf }

// timelineRow is one lease's row in the timeline.
type timelineRow struct {
	ID, Class, State string
	// HedgeOf: this lease hedges that one; its row is drawn right below it.
	HedgeOf      string
	Start        time.Time
	Total        time.Duration
	Open, Failed bool
	Segments     []svgSegment
	// Summary is the row's phases in words (the SVG's accessible name).
	Summary string
}

// svgSegment is one drawn phase.
type svgSegment struct {
	Key    string // phase key: the CSS class ph-<key>
	Name   string
	X, W   string // x and width, in px
	Title  string // hover text: the phase, its span and its duration
	Letter string // drawn when the segment is wide enough
	TX     string // the letter's x
	Open   bool
	Hatch  bool // a hatched phase, told from its neighbours without colour
}

// classBars is one class's p50/p95 per phase.
type classBars struct {
	Class  string
	Leases int // leases of the class the figures are over
	Height int
	Rows   []barRow
}

type barRow struct {
	Key, Name, Span string
	N               int
	P50, P95        time.Duration
	Y, TextY        int
	W50, W95        string
	Figures         string
	Hatch           bool
	// Clipped: longer than the class's scale; drawn to the edge.
	Clipped bool
}

// phaseLegend is the legend's entries.
type phaseLegend struct {
	Key, Name, Letter, Span string
	Hatch                   bool
}

// hatched phases carry stripes over their colour, so that neighbours
// differ in texture too.
func hatched(p phase) bool { return p == phaseCreate || p == phaseBootstrap || p == phaseRelease }

func legend() []phaseLegend {
	out := make([]phaseLegend, numPhases)
	for p := range numPhases {
		i := phaseInfo[p]
		out[p] = phaseLegend{Key: i.Key, Name: i.Name, Letter: i.Letter, Span: i.Span, Hatch: hatched(p)}
	}
	return out
}

// timedLease is a lease of the page with its phases.
type timedLease struct {
	l    *provisioner.Lease
	life lifeline
}

// timeline fills the view's timeline and bars from the page's leases.
func (v *view) timeline(leases []timedLease) {
	v.Legend = legend()
	v.TimelineW, v.TimelineH = tlWidth, tlHeight
	v.BarsX, v.BarsFigX, v.BarsW = barLabelW, barLabelW+barWidth+18, barLabelW+barWidth+18+barFigW
	v.BarsCutX = barLabelW + barWidth + 2
	v.StatsCap = maxStatsLeases
	slices.SortStableFunc(leases, func(a, b timedLease) int {
		return cmp.Or(b.l.CreatedAt.Compare(a.l.CreatedAt), cmp.Compare(a.l.ID, b.l.ID))
	})
	for _, t := range leases[:min(len(leases), maxTimelineRows)] {
		v.Timeline = append(v.Timeline, drawRow(t))
	}
	v.Timeline = pairHedges(v.Timeline)
	v.TimelineMore = len(leases) - len(v.Timeline)

	byClass := map[string][]timedLease{}
	for _, t := range leases {
		if len(byClass[t.l.Class]) < maxStatsLeases {
			byClass[t.l.Class] = append(byClass[t.l.Class], t)
		}
	}
	for class, ts := range byClass {
		v.Bars = append(v.Bars, classStats(class, ts))
	}
	slices.SortFunc(v.Bars, func(a, b classBars) int { return cmp.Compare(a.Class, b.Class) })
}

// pairHedges moves each hedge's row right below the row of the lease it
// hedges, when both are drawn, so a pair reads as one.
func pairHedges(rows []timelineRow) []timelineRow {
	var out []timelineRow
	placed := map[string]bool{}
	drawn := map[string]bool{}
	for _, r := range rows {
		drawn[r.ID] = true
	}
	for _, r := range rows {
		if placed[r.ID] || (r.HedgeOf != "" && drawn[r.HedgeOf]) {
			continue // placed, or to be placed under its original
		}
		out = append(out, r)
		placed[r.ID] = true
		for _, h := range rows {
			if h.HedgeOf == r.ID && !placed[h.ID] {
				out = append(out, h)
				placed[h.ID] = true
			}
		}
	}
	return out
}

func drawRow(t timedLease) timelineRow {
	life := t.life
	r := timelineRow{ID: t.l.ID, Class: t.l.Class, State: string(t.l.State), HedgeOf: hedgeOf(t.l), Start: life.Start,
		Total: life.End.Sub(life.Start), Open: life.Open, Failed: life.Failed}
	var words []string
	for _, s := range life.Segments {
		d := s.Duration()
		w := span(d)
		if s.Open {
			w += " so far"
		}
		words = append(words, phaseInfo[s.Phase].Name+" "+w)
	}
	r.Summary = strings.Join(words, ", ")
	widths := segmentWidths(life.Segments, tlWidth)
	x := 0.0
	for i, s := range life.Segments {
		w := widths[i]
		if w <= 0 {
			continue
		}
		info := phaseInfo[s.Phase]
		title := fmt.Sprintf("%s: %s (%s)", info.Name, span(s.Duration()), info.Span)
		if s.Open {
			title = fmt.Sprintf("%s: %s so far (%s; under way)", info.Name, span(s.Duration()), info.Span)
		}
		seg := svgSegment{Key: info.Key, Name: info.Name, X: px(x), W: px(w), Title: title, Open: s.Open, Hatch: hatched(s.Phase)}
		if w >= tlLetterMin {
			seg.Letter, seg.TX = info.Letter, px(x+w/2)
		}
		r.Segments = append(r.Segments, seg)
		x += w
	}
	return r
}

// segmentWidths shares width among the segments in proportion to their
// durations, giving any segment that took time at least tlMinSeg pixels
// and one that took none no width.
func segmentWidths(segs []segment, width float64) []float64 {
	out := make([]float64, len(segs))
	var total time.Duration
	for _, s := range segs {
		total += max(s.Duration(), 0)
	}
	if total <= 0 {
		return out
	}
	small, rest := 0, time.Duration(0)
	for _, s := range segs {
		d := max(s.Duration(), 0)
		if d > 0 && float64(d)/float64(total)*width < tlMinSeg {
			small++
		} else {
			rest += d
		}
	}
	room := max(width-float64(small*tlMinSeg), 0)
	for i, s := range segs {
		d := max(s.Duration(), 0)
		switch {
		case d <= 0:
		case float64(d)/float64(total)*width < tlMinSeg:
			out[i] = tlMinSeg
		default:
			out[i] = float64(d) / float64(rest) * room
		}
	}
	return out
}

// classStats is the p50 and p95 of each phase over a class's leases that
// went through it, plus queued → runner online, drawn on one linear scale
// per class: the longest p95 but the job's, since a job's minutes or hours
// would leave the phases up to runner online (what the page is for) a few
// pixels wide. A longer job bar is cut at the edge and marked so.
func classStats(class string, ts []timedLease) classBars {
	var samples [numPhases + 1][]time.Duration
	for _, t := range ts {
		for _, s := range t.life.Segments {
			if s.Done {
				samples[s.Phase] = append(samples[s.Phase], s.Duration())
			}
		}
		if !t.life.Online.IsZero() {
			samples[numPhases] = append(samples[numPhases], t.life.Online.Sub(t.life.Start))
		}
	}
	cb := classBars{Class: class, Leases: len(ts)}
	var longest time.Duration
	for i := range samples {
		if len(samples[i]) == 0 {
			continue
		}
		slices.Sort(samples[i])
		r := barRow{N: len(samples[i]), P50: percentile(samples[i], 50), P95: percentile(samples[i], 95)}
		if i < int(numPhases) {
			info := phaseInfo[i]
			r.Key, r.Name, r.Span, r.Hatch = info.Key, info.Name, info.Span, hatched(phase(i))
		} else {
			r.Key, r.Name, r.Span = "online", "to runner online", "job delivered → runner online"
		}
		if i != int(phaseJob) {
			longest = max(longest, r.P95)
		}
		cb.Rows = append(cb.Rows, r)
	}
	if longest <= 0 {
		for _, r := range cb.Rows {
			longest = max(longest, r.P95) // only jobs: their own scale
		}
	}
	for i := range cb.Rows {
		r := &cb.Rows[i]
		r.Y = i*barRowH + 3
		r.TextY = i*barRowH + 15
		r.Clipped = r.P95 > longest
		r.W95, r.W50 = px(barPx(r.P95, longest)), px(barPx(r.P50, longest))
		r.Figures = fmt.Sprintf("p50 %s · p95 %s · n=%d", span(r.P50), span(r.P95), r.N)
	}
	cb.Height = len(cb.Rows) * barRowH
	return cb
}

func barPx(d, longest time.Duration) float64 {
	if d <= 0 || longest <= 0 {
		return 0
	}
	return min(max(float64(d)/float64(longest)*barWidth, tlMinSeg), barWidth)
}

// percentile is the nearest-rank percentile of sorted durations.
func percentile(sorted []time.Duration, p int) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	rank := (p*len(sorted) + 99) / 100 // ceil(p/100 × n)
	return sorted[max(rank, 1)-1]
}

// px formats a pixel position with at most one decimal.
func px(v float64) string {
	s := fmt.Sprintf("%.1f", v)
	return strings.TrimSuffix(s, ".0")
}

// span formats a phase's duration: as age does, with tenths of a second
// under ten seconds and milliseconds under one, since a create call or a
// release on a fast provider takes less than a second.
func span(d time.Duration) string {
	switch {
	case d <= 0:
		return "0s"
	case d < time.Second:
		return fmt.Sprintf("%dms", d.Milliseconds())
	case d < 10*time.Second:
		return fmt.Sprintf("%.1fs", d.Seconds())
	}
	return age(d)
}
