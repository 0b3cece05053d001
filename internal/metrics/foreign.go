package metrics

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/crabbox/crabbox-runner/provisioner"
)

// foreignEvents counts workflow_job events that named one of our runners
// but came from another installation, org or repository, or about another
// job, and so were ignored for the lease (issue 15).
type foreignEvents struct {
	ignored *prometheus.CounterVec
}

var _ provisioner.ForeignEventObserver = (*Metrics)(nil)

func newForeignEvents(reg prometheus.Registerer) *foreignEvents {
	f := &foreignEvents{ignored: prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "crabbox_foreign_events_total",
		Help: "workflow_job events naming a runner of ours that did not match its lease (installation, org, repository or job) and were ignored for it.",
	}, []string{"action", "field"})}
	reg.MustRegister(f.ignored)
	return f
}

// ForeignEvent implements provisioner.ForeignEventObserver. The labels
// are bounded: the action is checked against GitHub's workflow_job
// actions, the field is one of four words chosen by the provisioner.
func (m *Metrics) ForeignEvent(action, field string) {
	switch action {
	case "queued", "waiting", "in_progress", "completed":
	default:
		action = "other"
	}
	m.foreign.ignored.WithLabelValues(action, field).Inc()
}
