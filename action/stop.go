package action

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/crabbox/crabbox-runner/github"
	"github.com/crabbox/crabbox-runner/provisioner"
)

// stop removes the lease's runner if it is still registered and destroys
// every instance carrying the lease's marker. It knows only the lease id
// (given, or read from the label), so it works whatever start got to, and
// a second stop finds nothing and says so.
func (r *runner) stop(ctx context.Context) error {
	in := r.in
	n := Names{LeaseID: in.LeaseID, Label: in.Label, RunnerName: runnerName(in.Deployment, in.LeaseID)}
	r.setOutputs("lease-id", n.LeaseID, "runner-name", n.RunnerName)
	if n.Label != "" {
		r.setOutputs("label", n.Label)
	}
	gh, err := r.github()
	if err != nil {
		return err
	}
	providers, _, err := r.providers()
	if err != nil {
		return err
	}
	p, err := r.provisioner(gh, nil, providers)
	if err != nil {
		return err
	}
	scope := r.scope()

	// Cancelling the workflow must not cut the cleanup short.
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Minute)
	defer cancel()

	found, inst, err := p.FindLease(ctx, n.LeaseID)
	hostGone := errors.Is(err, provisioner.ErrNotFound)
	if err != nil && !hostGone {
		return fmt.Errorf("looking for lease %s: %w", n.LeaseID, err)
	}
	runner, err := gh.RunnerByName(ctx, scope, n.RunnerName)
	runnerGone := errors.Is(err, provisioner.ErrNotFound)
	if err != nil && !runnerGone {
		return fmt.Errorf("looking for runner %s: %w", n.RunnerName, err)
	}
	if hostGone && runnerGone {
		r.ga.Noticef("Lease %s is already released: no instance carries it and runner %s is not registered. Nothing to do.", n.LeaseID, n.RunnerName)
		r.summary(fmt.Sprintf("### GPU runner stopped\n\nLease `%s` was already released: nothing to do.\n", n.LeaseID))
		return nil
	}

	r.ga.Group("Releasing lease " + n.LeaseID)
	if !runnerGone {
		r.ga.Infof("removing runner %s (%s, busy: %t)", runner.Name, runner.Status, runner.Busy)
	}
	if !hostGone {
		r.ga.Infof("destroying %s instance %s (%s)", found.Provider, inst.ID, found.GPU)
	}
	lease := &provisioner.Lease{ID: n.LeaseID, Scope: scope, RunnerName: n.RunnerName}
	if found != nil {
		lease.Provider, lease.InstanceID = found.Provider, found.InstanceID
	}
	relErr := p.ReleaseNow(ctx, lease)
	stopped := r.now()
	r.ga.EndGroup()

	// Check what is left rather than reading the joined error: only a host
	// still running costs money.
	if _, inst2, err := p.FindLease(ctx, n.LeaseID); !errors.Is(err, provisioner.ErrNotFound) {
		if err == nil {
			err = fmt.Errorf("instance %s is still there", inst2.ID)
		}
		return fmt.Errorf("lease %s: the host was not destroyed: %w", n.LeaseID, errors.Join(relErr, err))
	}
	if relErr != nil {
		if !errors.Is(relErr, github.ErrRunnerBusy) {
			return fmt.Errorf("lease %s: the host is destroyed but the runner was not removed: %w", n.LeaseID, relErr)
		}
		// Its host is gone, so the runner goes offline; GitHub removes a
		// JIT runner once its job ends, and gc removes offline runners.
		r.ga.Warningf("runner %s is still running a job, so GitHub kept it; its host is destroyed, so it goes offline and is removed by GitHub or gc", n.RunnerName)
	}

	if hostGone {
		what := "removed"
		if relErr != nil {
			what = "left to GitHub and gc (busy)"
		}
		r.ga.Noticef("Runner %s %s; its host was already gone.", n.RunnerName, what)
		r.summary(fmt.Sprintf("### GPU runner stopped\n\nRunner `%s` %s; its host was already gone, so no cost is known here.\n", n.RunnerName, what))
		return nil
	}
	ran := stopped.Sub(inst.CreatedAt)
	if inst.CreatedAt.IsZero() || ran < 0 {
		ran = 0
	}
	cost := found.PricePerHour * ran.Hours()
	r.setOutputs("provider", found.Provider, "price-per-hour", price(found.PricePerHour), "gpu", found.GPU,
		"instance-id", inst.ID, "run-time", fmt.Sprint(int64(ran.Seconds())), "cost", fmt.Sprintf("%.2f", cost))
	r.ga.Noticef("Lease %s released: %s %s ran %s at %s/h, about %s.",
		n.LeaseID, found.Provider, found.GPU, ran.Round(time.Second), money(found.PricePerHour), money(cost))
	r.summary(fmt.Sprintf("### GPU runner stopped\n\n"+
		"| provider | GPU | price per hour | run time | cost |\n"+
		"|---|---|---|---|---|\n"+
		"| %s | %s | %s | %s | %s |\n\n"+
		"Run time is from the instance's creation to its destruction; the provider's bill is authoritative.\n",
		mdCell(found.Provider), mdCell(found.GPU), money(found.PricePerHour), ran.Round(time.Second), money(cost)))
	return nil
}
