package githubtest

import (
	"fmt"
	"strings"
	"time"
)

// EventKind names what happened.
type EventKind string

// The timeline of a fake GitHub.
const (
	EventRunnerRegistered EventKind = "runner registered"
	EventRunnerOnline     EventKind = "runner online"
	EventRunnerOffline    EventKind = "runner offline"
	EventRunnerRemoved    EventKind = "runner removed"
	EventJobQueued        EventKind = "job queued"
	EventJobAssigned      EventKind = "job assigned"
	EventJobCompleted     EventKind = "job completed"
	EventWebhookDelivered EventKind = "webhook delivered"
)

// Event is one entry of the timeline, for people watching a demo or
// reading a failed test's log.
type Event struct {
	At         time.Time
	Kind       EventKind
	RunnerID   int64
	RunnerName string
	JobID      int64
	Scope      string // "org:acme" or "repo:acme/app"
	// Detail: labels, the conclusion, why a runner was removed, or the
	// webhook's event.action.
	Detail string
	// StatusCode is the webhook receiver's answer; 0 if none came, and
	// then Error says why.
	StatusCode int
	Error      string
}

func (e Event) String() string {
	runner := fmt.Sprintf("runner %d %s", e.RunnerID, e.RunnerName)
	var b strings.Builder
	switch e.Kind {
	case EventRunnerRegistered:
		fmt.Fprintf(&b, "%s registered in %s", runner, e.Scope)
	case EventRunnerOnline:
		fmt.Fprintf(&b, "%s online", runner)
	case EventRunnerOffline:
		fmt.Fprintf(&b, "%s offline", runner)
	case EventRunnerRemoved:
		fmt.Fprintf(&b, "%s removed", runner)
	case EventJobQueued:
		fmt.Fprintf(&b, "job %d queued in %s", e.JobID, strings.TrimPrefix(e.Scope, "repo:"))
	case EventJobAssigned:
		fmt.Fprintf(&b, "job %d assigned to %s", e.JobID, runner)
	case EventJobCompleted:
		fmt.Fprintf(&b, "job %d completed", e.JobID)
	case EventWebhookDelivered:
		b.WriteString("webhook " + e.Detail)
		if e.JobID != 0 {
			fmt.Fprintf(&b, " for job %d", e.JobID)
		}
		if e.Error != "" {
			b.WriteString(" failed: " + e.Error)
		} else {
			fmt.Fprintf(&b, " -> %d", e.StatusCode)
		}
		return b.String()
	default:
		b.WriteString(string(e.Kind))
	}
	if e.Detail != "" {
		b.WriteString(": " + e.Detail)
	}
	return b.String()
}

// emitLocked records an event; it reaches Logf and OnEvent in order, from
// the event goroutine, so callbacks never run under the server's lock.
func (s *Server) emitLocked(e Event) {
	e.At = time.Now()
	s.events.push(e)
}

func (s *Server) publish(e Event) {
	if s.opts.Logf != nil {
		s.opts.Logf("fake github: %s", e)
	}
	if s.opts.OnEvent != nil {
		s.opts.OnEvent(e)
	}
}
