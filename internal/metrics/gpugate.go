package metrics

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/crabbox/crabbox-runner/provisioner"
)

// gpuGate counts the GPU gate's verdicts (issue 17): passed, or the rule
// a host failed.
type gpuGate struct {
	verdicts *prometheus.CounterVec
}

var _ provisioner.GPUGateObserver = (*Metrics)(nil)

func newGPUGate(reg prometheus.Registerer) *gpuGate {
	g := &gpuGate{verdicts: prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "crabbox_gpu_gate_total",
		Help: "GPU gate verdicts on rented hosts, by provider and result: passed, or the failed rule (no_gpu, gpu_lost, gpu_count, gpu_model, gpu_memory, driver, cuda, ecc, retired_pages, row_remap).",
	}, []string{"provider", "result"})}
	reg.MustRegister(g.verdicts)
	return g
}

// GPUGate implements provisioner.GPUGateObserver.
func (m *Metrics) GPUGate(provider, rule string) {
	m.gate.verdicts.WithLabelValues(provider, rule).Inc()
}
