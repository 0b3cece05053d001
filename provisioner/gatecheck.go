package provisioner

import (
	"context"
	"log/slog"
)

// GPUGateObserver is told of every GPU gate verdict (the metrics package
// implements it): rule is "passed" or the failed rule's slug.
type GPUGateObserver interface {
	GPUGate(provider, rule string)
}

// gateWant is what a lease's host must show: the offer's GPUs, at least
// the class's memory and versions.
func gateWant(l *Lease, class *Class) GateWant {
	return GateWant{
		Count:       l.GPUCount,
		OfferGPU:    l.GPU,
		ClassGPU:    class.GPU.Name,
		MinMemoryGB: max(class.GPU.MinMemoryGB, l.GPUMemoryGB),
		MinCUDA:     class.MinCUDA,
		MinDriver:   class.MinDriver,
	}
}

// judgeHost is the GPU gate of one bootstrap: nil when the class does not
// check GPUs or the host passed, a *GateError when it failed. The verdict
// is logged and counted either way; the caller records it on the lease.
func (p *Provisioner) judgeHost(log *slog.Logger, l *Lease, class *Class, res *BootstrapResult) (GateResult, error) {
	if !class.CheckGPU {
		return GateResult{}, nil
	}
	g := JudgeGPU(res.GPU, gateWant(l, class))
	rule := "passed"
	if g.Passed {
		log.Info("GPU gate passed", "found", g.Found, "instance_id", l.InstanceID, "machine_id", l.MachineID)
	} else {
		rule = g.Rule
		log.Warn("GPU gate failed", "rule", g.Rule, "found", g.Found, "wanted", g.Wanted,
			"instance_id", l.InstanceID, "machine_id", l.MachineID)
	}
	if o, ok := p.cfg.Observer.(GPUGateObserver); ok {
		o.GPUGate(l.Provider, rule)
	}
	if !g.Passed {
		return g, &GateError{Result: g}
	}
	return g, nil
}

// failGate records a failed gate on the lease, avoids its machine and
// fails the lease: its host is destroyed, and no runner was registered.
func (p *Provisioner) failGate(ctx context.Context, l *Lease, g GateResult) error {
	if _, err := p.updateLease(ctx, l.ID, func(l *Lease) { l.GPUCheck = g.String() }); err != nil {
		return err
	}
	p.markBadMachine(l, "GPU gate: "+g.Rule)
	return p.failLease(ctx, l, (&GateError{Result: g}).Error())
}
