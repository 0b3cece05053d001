package action

import (
	"context"
	"errors"
	"fmt"
	"strings"
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

	// A start cut short in a hedged race may have left two hosts: every
	// one is destroyed and paid for.
	insts, err := p.LeaseInstances(ctx, n.LeaseID)
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
	for _, inst := range insts {
		r.ga.Infof("destroying %s instance %s (%s)", inst.Provider, inst.ID, inst.GPU)
	}
	lease := &provisioner.Lease{ID: n.LeaseID, Scope: scope, RunnerName: n.RunnerName}
	if len(insts) == 1 {
		lease.Provider, lease.InstanceID = insts[0].Provider, insts[0].ID
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
	// The outputs name the host that lived longest (the one that served,
	// when start won its race); the cost is every host's.
	life := func(inst *provisioner.Instance) time.Duration {
		if inst.CreatedAt.IsZero() {
			return 0
		}
		return max(stopped.Sub(inst.CreatedAt), 0)
	}
	main, cost := insts[0], 0.0
	for _, inst := range insts {
		if life(inst) > life(main) {
			main = inst
		}
		cost += inst.PricePerHour * life(inst).Hours()
	}
	ran := life(main)
	others := ""
	if len(insts) > 1 {
		others = fmt.Sprintf(" (with %d other host(s) a cut-short start left, all destroyed)", len(insts)-1)
	}
	r.setOutputs("provider", main.Provider, "price-per-hour", price(main.PricePerHour), "gpu", main.GPU,
		"instance-id", main.ID, "run-time", fmt.Sprint(int64(ran.Seconds())), "cost", fmt.Sprintf("%.2f", cost))
	r.ga.Noticef("Lease %s released: %s %s ran %s at %s/h, about %s%s.",
		n.LeaseID, main.Provider, main.GPU, ran.Round(time.Second), money(main.PricePerHour), money(cost), others)
	var rows strings.Builder
	for _, inst := range insts {
		fmt.Fprintf(&rows, "| %s | %s | %s | %s | %s |\n", mdCell(inst.Provider), mdCell(inst.GPU), money(inst.PricePerHour),
			life(inst).Round(time.Second), money(inst.PricePerHour*life(inst).Hours()))
	}
	r.summary(fmt.Sprintf("### GPU runner stopped\n\n"+
		"| provider | GPU | price per hour | run time | cost |\n"+
		"|---|---|---|---|---|\n"+
		"%s\n"+
		"Run time is from the instance's creation to its destruction; the provider's bill is authoritative.\n",
		rows.String()))
	return nil
}
