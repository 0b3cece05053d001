package status

import (
	"context"
	"time"

	"github.com/crabbox/crabbox-runner/provisioner"
)

// Jobs not served: refused by a class's policy, turned away by the runner
// group, or given up on after runners GitHub never gave them (issue 13).
// The page lists the queued ones marked since midnight, and what hosts
// whose runner never got its job cost today.

// maxNotServedRows bounds the section.
const maxNotServedRows = 50

// UnservableReader is the part of provisioner.Store the section reads; a
// Reader without it shows no section.
type UnservableReader interface {
	UnservableJobs(ctx context.Context, f provisioner.UnservableFilter) ([]*provisioner.Job, error)
}

type notServedRow struct {
	At     time.Time
	Job    jobCell
	Class  string
	Kind   string
	Reason string
	Until  time.Time // a back-off's end
}

// notServed fills the view's section: the jobs marked since midnight,
// newest first.
func (h *Handler) notServed(ctx context.Context, v *view) error {
	r, ok := h.cfg.Store.(UnservableReader)
	if !ok {
		return nil
	}
	v.NotServedShown = true
	jobs, err := r.UnservableJobs(ctx, provisioner.UnservableFilter{Since: v.Midnight, Limit: maxNotServedRows + 1})
	if err != nil {
		return err
	}
	if len(jobs) > maxNotServedRows {
		v.NotServedMore, jobs = true, jobs[:maxNotServedRows]
	}
	for _, j := range jobs {
		u := j.Unservable
		v.NotServed = append(v.NotServed, notServedRow{At: u.At, Class: j.Class, Kind: string(u.Kind),
			Reason: cut(u.Reason, maxErrorLen), Until: u.Until,
			Job: jobCell{ID: j.ID, Name: j.Name, Repo: j.Repo, Workflow: j.WorkflowName, URL: h.jobURL(j)}})
	}
	return nil
}
