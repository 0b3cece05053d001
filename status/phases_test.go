package status

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/crabbox/crabbox-runner/provisioner"
)

var t0 = time.Date(2026, 11, 23, 10, 0, 0, 0, time.UTC)

func sec(n int) time.Time { return t0.Add(time.Duration(n) * time.Second) }

func ev(at int, to provisioner.State) provisioner.Event {
	return provisioner.Event{LeaseID: "l", At: sec(at), To: to}
}

// describe is a lifeline as "phase from-to [open] [done]" lines, in
// seconds after t0.
func describe(life lifeline) string {
	var b strings.Builder
	for _, s := range life.Segments {
		fmt.Fprintf(&b, "%s %d-%d", phaseInfo[s.Phase].Key, int(s.From.Sub(t0).Seconds()), int(s.To.Sub(t0).Seconds()))
		if s.Open {
			b.WriteString(" open")
		}
		if s.Done {
			b.WriteString(" done")
		}
		b.WriteString("\n")
	}
	return b.String()
}

func TestPhases(t *testing.T) {
	P := provisioner.StatePending
	now := sec(5000)
	cases := []struct {
		name   string
		lease  provisioner.Lease
		events []provisioner.Event
		want   string
		open   bool
		failed bool
	}{{
		name:  "every phase",
		lease: provisioner.Lease{State: provisioner.StateReleased, QueuedAt: sec(0), CreatedAt: sec(1), ReleasedAt: sec(900)},
		events: []provisioner.Event{ev(1, P), ev(10, provisioner.StateProvisioning), ev(40, provisioner.StateBooting),
			ev(180, provisioner.StateBootstrapping), ev(240, provisioner.StateIdle), ev(270, provisioner.StateBusy),
			ev(870, provisioner.StateReleasing), ev(900, provisioner.StateReleased)},
		want: "queued 0-10 done\ncreate 10-40 done\nboot 40-180 done\nbootstrap 180-240 done\nidle 240-270 done\njob 270-870 done\nrelease 870-900 done\n",
	}, {
		name:  "failed while booting: boot ends at the failure, then the release",
		lease: provisioner.Lease{State: provisioner.StateReleased, QueuedAt: sec(0), CreatedAt: sec(0), ReleasedAt: sec(400)},
		events: []provisioner.Event{ev(0, P), ev(5, provisioner.StateProvisioning), ev(20, provisioner.StateBooting),
			ev(320, provisioner.StateFailed), ev(330, provisioner.StateReleasing), ev(400, provisioner.StateReleased)},
		want:   "queued 0-5 done\ncreate 5-20 done\nboot 20-320\nrelease 320-400 done\n",
		failed: true,
	}, {
		name:  "failed, not yet released: runs to now",
		lease: provisioner.Lease{State: provisioner.StateFailed, QueuedAt: sec(0), CreatedAt: sec(0)},
		events: []provisioner.Event{ev(0, P), ev(5, provisioner.StateProvisioning), ev(20, provisioner.StateBooting),
			ev(320, provisioner.StateFailed)},
		want: "queued 0-5 done\ncreate 5-20 done\nboot 20-320\nrelease 320-5000 open\n",
		open: true, failed: true,
	}, {
		name:  "still busy, straight from bootstrapping: idle took no time, the job runs to now",
		lease: provisioner.Lease{State: provisioner.StateBusy, QueuedAt: sec(0), CreatedAt: sec(0)},
		events: []provisioner.Event{ev(0, P), ev(2, provisioner.StateProvisioning), ev(4, provisioner.StateBooting),
			ev(100, provisioner.StateBootstrapping), ev(160, provisioner.StateBusy)},
		want: "queued 0-2 done\ncreate 2-4 done\nboot 4-100 done\nbootstrap 100-160 done\nidle 160-160 done\njob 160-5000 open\n",
		open: true,
	}, {
		name:   "pending, made for no job: queued from when it was made",
		lease:  provisioner.Lease{State: provisioner.StatePending, CreatedAt: sec(4990)},
		events: []provisioner.Event{ev(4990, P)},
		want:   "queued 4990-5000 open\n",
		open:   true,
	}, {
		name:  "idle runner released unused: the idle phase was cut short",
		lease: provisioner.Lease{State: provisioner.StateReleased, QueuedAt: sec(0), CreatedAt: sec(0), ReleasedAt: sec(500)},
		events: []provisioner.Event{ev(0, P), ev(1, provisioner.StateProvisioning), ev(2, provisioner.StateBooting),
			ev(60, provisioner.StateBootstrapping), ev(90, provisioner.StateIdle), ev(480, provisioner.StateReleasing),
			ev(500, provisioner.StateReleased)},
		want: "queued 0-1 done\ncreate 1-2 done\nboot 2-60 done\nbootstrap 60-90 done\nidle 90-480\nrelease 480-500 done\n",
	}, {
		name: "clock skew: a replica's clock behind, events out of order, queued after the lease: nothing negative",
		lease: provisioner.Lease{State: provisioner.StateReleased, QueuedAt: sec(50), CreatedAt: sec(0),
			ReleasedAt: sec(100)},
		events: []provisioner.Event{ev(0, P), ev(30, provisioner.StateProvisioning), ev(60, provisioner.StateBootstrapping),
			ev(45, provisioner.StateBooting), ev(70, provisioner.StateIdle), ev(65, provisioner.StateBusy),
			ev(90, provisioner.StateReleasing), ev(80, provisioner.StateReleased)},
		want: "queued 50-50 done\ncreate 50-50 done\nboot 50-60 done\nbootstrap 60-70 done\nidle 70-70 done\njob 70-90 done\nrelease 90-90 done\n",
	}, {
		name:   "released with no release recorded and no time: ends as last seen, never before it began",
		lease:  provisioner.Lease{State: provisioner.StateReleased, QueuedAt: sec(10), CreatedAt: sec(10), UpdatedAt: sec(5)},
		events: nil,
		want:   "queued 10-10\n",
	}}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			life := phases(&tc.lease, tc.events, now)
			if got := describe(life); got != tc.want {
				t.Errorf("phases:\n%s\nwant\n%s", got, tc.want)
			}
			if life.Open != tc.open || life.Failed != tc.failed {
				t.Errorf("open %v failed %v, want %v %v", life.Open, life.Failed, tc.open, tc.failed)
			}
			for _, s := range life.Segments {
				if s.Duration() < 0 {
					t.Errorf("%s is %s long", phaseInfo[s.Phase].Key, s.Duration())
				}
			}
			if life.End.Before(life.Start) {
				t.Errorf("ends %s before it starts %s", life.End, life.Start)
			}
			// Drawn: widths add up to the row, none negative.
			var sum float64
			for _, w := range segmentWidths(life.Segments, tlWidth) {
				if w < 0 {
					t.Errorf("width %v", w)
				}
				sum += w
			}
			if life.End.After(life.Start) && (sum < tlWidth-0.01 || sum > tlWidth+0.01) {
				t.Errorf("widths add up to %v, not %d", sum, tlWidth)
			}
		})
	}
}

// A phase too short to see still gets a sliver, and the row its width.
func TestSegmentWidthsKeepShortPhasesVisible(t *testing.T) {
	segs := []segment{{From: sec(0), To: sec(1)}, {From: sec(1), To: sec(1)}, {From: sec(1), To: sec(3601)}}
	w := segmentWidths(segs, 640)
	if w[0] != tlMinSeg || w[1] != 0 || w[2] != 640-tlMinSeg {
		t.Fatalf("widths %v", w)
	}
}

func TestPercentile(t *testing.T) {
	var d []time.Duration
	for i := 1; i <= 20; i++ {
		d = append(d, time.Duration(i)*time.Second)
	}
	if p50, p95 := percentile(d, 50), percentile(d, 95); p50 != 10*time.Second || p95 != 19*time.Second {
		t.Fatalf("p50 %s p95 %s", p50, p95)
	}
	if p := percentile(d[:1], 95); p != time.Second {
		t.Fatalf("one sample: %s", p)
	}
}

// A hedge's row sits right below its original's, whatever their order.
func TestPairHedges(t *testing.T) {
	rows := []timelineRow{{ID: "h1", HedgeOf: "a"}, {ID: "b"}, {ID: "a"}, {ID: "h2", HedgeOf: "gone"}}
	var got []string
	for _, r := range pairHedges(rows) {
		got = append(got, r.ID)
	}
	if strings.Join(got, " ") != "b a h1 h2" {
		t.Fatalf("rows %v, want b a h1 h2", got)
	}
}
