package action

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/crabbox/crabbox-runner/provisioner"
)

// gc is `crabbox-runner gc` for a scheduled workflow, from the markers
// alone (there is no store in Action mode): it destroys the deployment's
// instances whose expiry passed, and removes runners of the deployment in
// the scope that are offline with no instance left. Unexpired instances
// are never touched, so a gc during someone's start or GPU job is safe.
func (r *runner) gc(ctx context.Context) error {
	if r.env.PrintGC == nil {
		return errors.New("action: PrintGC is required for mode gc")
	}
	gh, err := r.github()
	if err != nil {
		return err
	}
	providers, names, err := r.providers()
	if err != nil {
		return err
	}
	p, err := r.provisioner(gh, nil, providers)
	if err != nil {
		return err
	}
	scope := r.scope()
	dry := ""
	if r.in.DryRun {
		dry = " (dry run)"
	}
	r.ga.Infof("gc of deployment %s on %s, runners in %s%s", r.in.Deployment, strings.Join(names, ", "), scope, dry)
	plan, err := p.PlanGC(ctx, provisioner.GCOptions{Scopes: []provisioner.Scope{scope}})
	if err != nil {
		return err
	}
	apply := !r.in.DryRun
	failed := 0
	if apply && len(plan.Actions) > 0 {
		// Cancelling the workflow must not leave a pass half done.
		actx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Minute)
		failed = p.ApplyGC(actx, plan)
		cancel()
	}
	if err := r.env.PrintGC(r.secrets.Writer(r.env.Stdout), plan, apply); err != nil {
		return err
	}
	for _, w := range plan.Warnings {
		r.ga.Warningf("gc: %s", w)
	}
	r.setOutputs("gc-actions", fmt.Sprint(len(plan.Actions)))
	r.summary(gcSummary(plan, apply))
	if failed > 0 {
		return fmt.Errorf("gc: %d of %d actions failed (see the table above)", failed, len(plan.Actions))
	}
	return nil
}

func gcSummary(plan *provisioner.GCPlan, applied bool) string {
	var b strings.Builder
	mode := "dry run: nothing was changed"
	if applied {
		mode = "applied"
	}
	fmt.Fprintf(&b, "### crabbox gc\n\nDeployment `%s`: %d instances and %d runners of ours seen; %d actions, %s.\n",
		plan.Deployment, plan.Instances, plan.Runners, len(plan.Actions), mode)
	if len(plan.Actions) == 0 {
		return b.String()
	}
	b.WriteString("\n| action | target | lease | reason | result |\n|---|---|---|---|---|\n")
	for _, a := range plan.Actions {
		target := a.Provider + " " + a.InstanceID
		if a.Kind == provisioner.GCRemoveRunner {
			target = a.Scope + " " + a.RunnerName
		}
		result := "planned"
		switch {
		case a.Error != "":
			result = "failed: " + a.Error
		case a.Done:
			result = "done"
		}
		fmt.Fprintf(&b, "| %s | %s | %s | %s | %s |\n", mdCell(a.Kind), mdCell(target), mdCell(a.LeaseID), mdCell(a.Reason), mdCell(result))
	}
	return b.String()
}
