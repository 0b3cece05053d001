package provisioner

import (
	"context"
	"fmt"
	"strings"
)

// A runner name is public (it is in every job log) and a signed delivery
// proves only that GitHub sent it, not that it concerns us: an App can be
// installed by any org, and that org's deliveries are signed with our
// secret too. So an in_progress or completed that names one of our runners
// acts on its lease only when the delivery comes from where the lease was
// made for; anything else is ignored for that lease and logged.

// ForeignEventObserver is told of every event that named a runner of ours
// but was ignored for its lease (the metrics package implements it): a
// steady count means another installation, org or repository is sending
// deliveries that name our runners.
type ForeignEventObserver interface {
	// ForeignEvent: action is the event's, field the first thing that
	// disagreed: installation, org, repository or job.
	ForeignEvent(action, field string)
}

// leaseMismatch says what in ev, about job jobID, disagrees with lease l
// (installation, org, repository or job) and why, or "" when it can
// concern the lease:
//   - the installation: when the lease was made through an App
//     installation, the event must come from the same one;
//   - the scope: an org lease's runner only takes jobs of that org's
//     repositories, a repository lease's only that repository's;
//   - the job: a just-in-time runner runs one job, so a lease already
//     bound to a job concerns no other.
//
// Logins are compared without case: GitHub treats them so, and a scope
// written in the config may not spell them as the API does.
func leaseMismatch(l *Lease, ev JobEvent, jobID int64) (field, why string) {
	if l.Scope.InstallationID != 0 && ev.InstallationID != l.Scope.InstallationID {
		return "installation", fmt.Sprintf("installation %d, not the lease's %d", ev.InstallationID, l.Scope.InstallationID)
	}
	owner, _, _ := strings.Cut(ev.Repo, "/")
	if l.Scope.Org != "" {
		// The repository's owner is the org for an org-owned repository;
		// an event made up from a repository scope may not name the org.
		if !strings.EqualFold(owner, l.Scope.Org) || (ev.Org != "" && !strings.EqualFold(ev.Org, l.Scope.Org)) {
			return "org", fmt.Sprintf("repository %q (org %q), not of the lease's org %q", ev.Repo, ev.Org, l.Scope.Org)
		}
	}
	if l.Scope.Repo != "" && !strings.EqualFold(ev.Repo, l.Scope.Repo) {
		return "repository", fmt.Sprintf("repository %q, not the lease's %q", ev.Repo, l.Scope.Repo)
	}
	if l.BoundJobID != 0 && jobID != l.BoundJobID {
		return "job", fmt.Sprintf("job %d, while the lease's runner took job %d", jobID, l.BoundJobID)
	}
	return "", ""
}

// leaseForEvent finds the lease of the runner an event names, when the
// event may act on it. A lease the event disagrees with is not returned:
// the caller goes on as if the runner were not ours (foreign is true, and
// the mismatch is logged here, once per delivery: the caller runs in a
// transaction that is not retried for this).
func (p *Provisioner) leaseForEvent(ctx context.Context, tx Tx, ev JobEvent, runnerName string, jobID int64) (l *Lease, foreign bool, err error) {
	l, err = tx.LeaseByRunnerName(ctx, runnerName)
	if err != nil {
		return nil, false, err
	}
	if field, why := leaseMismatch(l, ev, jobID); why != "" {
		// No payload text beyond ids and names: nothing secret is in them.
		p.log.Warn("workflow job event names a runner of ours but does not match its lease: ignored for the lease",
			"delivery_id", ev.DeliveryID, "action", ev.Action, "job_id", jobID, "repo", ev.Repo, "org", ev.Org,
			"installation_id", ev.InstallationID, "lease_id", l.ID, "runner_name", runnerName, "reason", why)
		if o, ok := p.cfg.Observer.(ForeignEventObserver); ok {
			o.ForeignEvent(ev.Action, field)
		}
		return nil, true, nil
	}
	return l, false, nil
}
