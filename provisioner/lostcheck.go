package provisioner

import (
	"context"
	"errors"
	"time"
)

// A job lost with its host can reach us as a plain failed job: GitHub fails
// it once the runner stops renewing (about ten minutes, github/githubtest
// rerun.go), and the host watch (hostwatch.go) may not have seen the loss
// by then — a pass was late, or the provider still calls a dead host
// running. So before the host of a lease whose job failed is destroyed, in
// a class that re-runs lost jobs, it is looked at once more: lost by the
// provider's word, or not answering SSH while the provider calls it
// running. One provider request (and, for a running host, one SSH
// connection) per failed job of such classes; nothing for the others.

// lossProbeTimeout bounds the SSH look at a host the provider calls
// running: a live host answers in a second or two.
const lossProbeTimeout = 20 * time.Second

// confirmLoss runs in the release of a lease whose job completed, before
// its host is destroyed. When the host turns out lost it records why on the
// lease and plans the job's re-run, as the host watch would have.
func (p *Provisioner) confirmLoss(ctx context.Context, l *Lease) {
	class := p.classes[l.Class]
	if class == nil || !class.RerunLostJobs || l.LostReason != "" || l.ReleaseReason != "job completed" ||
		l.BoundJobID == 0 || l.InstanceID == "" {
		return
	}
	job, err := p.cfg.Store.LatestJob(ctx, l.BoundJobID)
	if err != nil || job.Status != JobCompleted || job.Conclusion != "failure" || !job.RerunAt.IsZero() {
		return
	}
	reason, bad, detail := p.lookForLoss(ctx, l)
	if reason == "" {
		return
	}
	log := p.log.With("lease_id", l.ID, "class", l.Class, "job_id", job.ID, "instance_id", l.InstanceID)
	if bad {
		p.markBadMachine(l, "host lost mid-lease: "+reason)
	}
	planned := false
	err = p.cfg.Store.InTx(ctx, func(tx Tx) error {
		cur, err := tx.Lease(ctx, l.ID)
		if err != nil || cur.LostReason != "" {
			return err
		}
		if cur, err = tx.UpdateLease(ctx, l.ID, func(l *Lease) {
			l.LostReason = reason
			l.Error = "host lost (" + reason + "): " + detail
		}); err != nil {
			return err
		}
		j, err := tx.Job(ctx, job.ID, job.RunAttempt)
		if err != nil {
			return err
		}
		planned, err = p.planRerun(ctx, tx, j, cur, class)
		return err
	})
	if err != nil {
		// The release goes on: a host left running is billed, a job not
		// re-run is only failed.
		log.Warn("recording a lost host found at release", "reason", reason, "error", err)
		return
	}
	log.Warn("failed job's host found lost at release", "reason", reason, "detail", detail, "rerun_planned", planned)
	p.noteHostLost(ctx, l, reason)
}

// lookForLoss asks the provider about the lease's host, then, when it calls
// it running, SSH. Only a word the provider cannot give about a host it
// merely let us destroy counts: a stopped, terminated or vanished instance
// may be our own destroy of an earlier try of this release.
func (p *Provisioner) lookForLoss(ctx context.Context, l *Lease) (reason string, bad bool, detail string) {
	prov, ok := p.cfg.Providers[l.Provider]
	if !ok {
		return "", false, ""
	}
	inst, err := prov.Get(ctx, l.InstanceID)
	if err != nil {
		return "", false, ""
	}
	switch inst.Status {
	case InstanceOutbid, InstancePreempted, InstanceFailed, InstanceUnreachable:
		reason, bad = lostReason(inst.Status)
		return reason, bad, inst.StatusMessage
	case InstanceRunning:
	default:
		return "", false, ""
	}
	creds, err := p.credentials(l.ID, false)
	if err != nil || l.SSH.Host == "" {
		return "", false, ""
	}
	ep, err := p.dialEndpoint(ctx, l.Provider, l.SSH)
	if err != nil {
		return "", false, ""
	}
	pctx, cancel := context.WithTimeout(ctx, lossProbeTimeout)
	defer cancel()
	_, err = p.cfg.Bootstrapper.Probe(pctx, ProbeRequest{Endpoint: ep, Credentials: creds, KnownHostKey: l.HostKey})
	if err == nil || errors.Is(err, ErrHostKeyMismatch) || ctx.Err() != nil {
		return "", false, ""
	}
	return LostUnreachable, true, "the provider calls it running but it no longer answers SSH: " + err.Error()
}
