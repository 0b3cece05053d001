package status

import (
	"time"

	"github.com/crabbox/crabbox-runner/provisioner"
)

// A lease's life as the timeline draws it: seven phases, each begun by a
// move recorded in the lease's history (provisioner.Event), so that the
// page needs nothing the store does not already keep.

// phase is one part of a lease's life.
type phase int

const (
	phaseQueued    phase = iota // job delivered (QueuedAt; else the lease made) → provisioning: offers chosen, create call about to go
	phaseCreate                 // → provisioning → booting: the create call answered, the host exists
	phaseBoot                   // → booting → bootstrapping: SSH reachable
	phaseBootstrap              // → bootstrapping → idle (or busy): the runner online
	phaseIdle                   // → idle → busy: GitHub gave the runner its job
	phaseJob                    // → busy → releasing: the job completed (or the host was lost)
	phaseRelease                // → failed or releasing → released: the host destroyed
	numPhases
)

// phaseInfo names each phase: its CSS class suffix, the letter drawn on a
// segment wide enough, its name, and what starts and ends it.
var phaseInfo = [numPhases]struct{ Key, Letter, Name, Span string }{
	{"queued", "Q", "queued", "job delivered → create call"},
	{"create", "C", "create", "create call → host created"},
	{"boot", "B", "boot", "host created → SSH reachable"},
	{"bootstrap", "S", "SSH/bootstrap", "SSH reachable → runner online"},
	{"idle", "I", "runner idle", "runner online → job assigned"},
	{"job", "J", "job", "job assigned → job done"},
	{"release", "R", "release", "release asked → host destroyed"},
}

// segment is one phase of one lease.
type segment struct {
	Phase    phase
	From, To time.Time
	// Open: the phase is under way; it is drawn up to now.
	Open bool
	// Done: the phase ended the way a good start goes on (the next phase
	// began, and not because the lease failed or was released early);
	// only those count in the per-class figures.
	Done bool
}

func (s segment) Duration() time.Duration { return s.To.Sub(s.From) }

// lifeline is a lease's phases, in order.
type lifeline struct {
	Start, End time.Time
	Segments   []segment
	// Open: the lease is not released; End is now.
	Open bool
	// Failed: the lease went through the failed state.
	Failed bool
	// Online is when its runner came online (idle, or busy straight
	// from bootstrapping); zero if it never did.
	Online time.Time
}

// phaseOf is the phase a move to a state begins.
func phaseOf(s provisioner.State) (phase, bool) {
	switch s {
	case provisioner.StateProvisioning:
		return phaseCreate, true
	case provisioner.StateBooting:
		return phaseBoot, true
	case provisioner.StateBootstrapping:
		return phaseBootstrap, true
	case provisioner.StateIdle:
		return phaseIdle, true
	case provisioner.StateBusy:
		return phaseJob, true
	case provisioner.StateFailed, provisioner.StateReleasing:
		return phaseRelease, true
	}
	return 0, false
}

// phases works out a lease's phases from its history. Each phase starts
// at the first move into its state; a phase the lease skipped is absent
// and the one before it runs on to the next that happened (a lease that
// failed while booting: boot, then release). A lease not released runs
// up to now. Times are made non-decreasing in phase order, so clock skew
// between replicas, or events recorded out of order, never make a
// negative span: a phase that seems to begin before the one before it
// is drawn with no width.
func phases(l *provisioner.Lease, events []provisioner.Event, now time.Time) lifeline {
	var start [numPhases]time.Time
	var has [numPhases]bool
	var out lifeline
	start[phaseQueued], has[phaseQueued] = l.QueuedAt, true
	if l.QueuedAt.IsZero() {
		start[phaseQueued] = l.CreatedAt // made for no job: from when it was made
	}
	var end time.Time
	for _, e := range events {
		if e.To == provisioner.StateFailed {
			out.Failed = true
		}
		if e.To == provisioner.StateReleased {
			if end.IsZero() {
				end = e.At
			}
			continue
		}
		p, ok := phaseOf(e.To)
		if ok && !has[p] {
			start[p], has[p] = e.At, true
		}
	}
	if end.IsZero() && l.State == provisioner.StateReleased {
		end = l.ReleasedAt
	}
	if end.IsZero() {
		if l.State == provisioner.StateReleased {
			end = l.UpdatedAt // released, with no time recorded: as last seen
		} else {
			end, out.Open = now, true
		}
	}
	if l.State == provisioner.StateFailed {
		out.Failed = true
	}
	// Straight from bootstrapping to busy: the runner took its job the
	// moment it came online, so its idle phase took no time.
	if has[phaseBootstrap] && has[phaseJob] && !has[phaseIdle] {
		start[phaseIdle], has[phaseIdle] = start[phaseJob], true
	}

	prev := start[phaseQueued]
	for p := range numPhases {
		if !has[p] {
			continue
		}
		if start[p].Before(prev) {
			start[p] = prev
		}
		prev = start[p]
	}
	if end.Before(prev) {
		end = prev
	}
	out.Start, out.End = start[phaseQueued], end
	if has[phaseIdle] {
		out.Online = start[phaseIdle]
	}

	for p := range numPhases {
		if !has[p] {
			continue
		}
		seg := segment{Phase: p, From: start[p], To: end}
		next := numPhases
		for q := p + 1; q < numPhases; q++ {
			if has[q] {
				next, seg.To = q, start[q]
				break
			}
		}
		switch {
		case next == numPhases:
			seg.Open = out.Open
			seg.Done = p == phaseRelease && !out.Open
		case next == phaseRelease:
			// Only a job ends in the release; anything before it was
			// cut short. A job ended by a failure did not complete.
			seg.Done = p == phaseJob && !out.Failed
		default:
			seg.Done = true
		}
		out.Segments = append(out.Segments, seg)
	}
	return out
}
