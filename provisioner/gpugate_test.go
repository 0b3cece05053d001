package provisioner_test

import (
	"context"
	"slices"
	"strings"
	"testing"

	"github.com/crabbox/crabbox-runner/provisioner"
)

func a100s(n int, name string, mib int) *provisioner.GPUReport {
	r := &provisioner.GPUReport{Driver: "550.54.15", CUDA: "12.4"}
	for i := range n {
		r.GPUs = append(r.GPUs, provisioner.GPUFound{Index: i, Name: name, MemMiB: mib, Driver: "550.54.15",
			Health: provisioner.GPUHealth{}, Answered: true})
	}
	return r
}

// TestJudgeGPU: each rule on its own, in the order they are checked.
func TestJudgeGPU(t *testing.T) {
	want := provisioner.GateWant{Count: 2, OfferGPU: "A100 SXM4", ClassGPU: "A100", MinMemoryGB: 80, MinCUDA: "12.4", MinDriver: "550.54"}
	good := func() *provisioner.GPUReport { return a100s(2, "NVIDIA A100-SXM4-80GB", 81920) }
	for _, tt := range []struct {
		name string
		mod  func(r *provisioner.GPUReport) *provisioner.GPUReport
		w    func(w provisioner.GateWant) provisioner.GateWant
		rule string
	}{
		{"passes", nil, nil, ""},
		{"nil report", func(*provisioner.GPUReport) *provisioner.GPUReport { return nil }, nil, provisioner.GateNoGPU},
		{"driver missing", func(*provisioner.GPUReport) *provisioner.GPUReport {
			return &provisioner.GPUReport{NoGPU: "NVIDIA-SMI has failed"}
		}, nil, provisioner.GateNoGPU},
		{"a GPU lost", func(r *provisioner.GPUReport) *provisioner.GPUReport {
			r.Lost = []string{"Unable to determine the device handle for GPU0000:0B:00.0: Unknown Error"}
			return r
		}, nil, provisioner.GateGPULost},
		{"a GPU not answering a value", func(r *provisioner.GPUReport) *provisioner.GPUReport { r.GPUs[1].Answered = false; return r }, nil, provisioner.GateGPULost},
		{"one more than sold", func(r *provisioner.GPUReport) *provisioner.GPUReport { return a100s(3, r.GPUs[0].Name, 81920) }, nil, provisioner.GateGPUCount},
		{"one fewer", func(r *provisioner.GPUReport) *provisioner.GPUReport { r.GPUs = r.GPUs[:1]; return r }, nil, provisioner.GateGPUCount},
		{"PCIe for SXM4", func(r *provisioner.GPUReport) *provisioner.GPUReport {
			r.GPUs[1].Name = "NVIDIA A100 80GB PCIe"
			return r
		}, nil, provisioner.GateGPUModel},
		{"another family", func(r *provisioner.GPUReport) *provisioner.GPUReport {
			return a100s(2, "NVIDIA GeForce RTX 3090", 24576)
		}, nil, provisioner.GateGPUModel},
		{"unknown names by words", func(r *provisioner.GPUReport) *provisioner.GPUReport { return a100s(2, "NVIDIA Z9000 Ultra", 81920) },
			func(w provisioner.GateWant) provisioner.GateWant {
				w.OfferGPU, w.ClassGPU = "Z9000 Ultra (80 GB)", "Z9000"
				return w
			}, ""},
		{"unknown names, another word", func(r *provisioner.GPUReport) *provisioner.GPUReport { return a100s(2, "NVIDIA Z9000", 81920) },
			func(w provisioner.GateWant) provisioner.GateWant {
				w.OfferGPU, w.ClassGPU = "Z9000 Ultra", ""
				return w
			}, provisioner.GateGPUModel},
		{"40GB for 80GB", func(r *provisioner.GPUReport) *provisioner.GPUReport { return a100s(2, "NVIDIA A100-SXM4-40GB", 40960) }, nil, provisioner.GateGPUMemory},
		{"ECC-reduced reading is the nominal size", func(r *provisioner.GPUReport) *provisioner.GPUReport { return a100s(2, "NVIDIA L40S", 46068) },
			func(w provisioner.GateWant) provisioner.GateWant {
				w.OfferGPU, w.ClassGPU, w.MinMemoryGB = "L40S", "L40S", 48
				return w
			}, ""},
		{"old driver", func(r *provisioner.GPUReport) *provisioner.GPUReport { r.Driver = "535.104.05"; return r }, nil, provisioner.GateDriver},
		{"driver not reported", func(r *provisioner.GPUReport) *provisioner.GPUReport { r.Driver = ""; return r }, nil, provisioner.GateDriver},
		{"driver newer by a part", func(r *provisioner.GPUReport) *provisioner.GPUReport { r.Driver = "550.100"; return r }, nil, ""},
		{"old CUDA", func(r *provisioner.GPUReport) *provisioner.GPUReport { r.CUDA = "12.2"; return r }, nil, provisioner.GateCUDA},
		{"CUDA 12.10 is above 12.4", func(r *provisioner.GPUReport) *provisioner.GPUReport { r.CUDA = "12.10"; return r }, nil, ""},
		{"no minimums, no versions", func(r *provisioner.GPUReport) *provisioner.GPUReport { r.Driver, r.CUDA = "", ""; return r },
			func(w provisioner.GateWant) provisioner.GateWant { w.MinCUDA, w.MinDriver = "", ""; return w }, ""},
		{"ECC", func(r *provisioner.GPUReport) *provisioner.GPUReport { r.GPUs[1].Health.UncorrectedECC = 1; return r }, nil, provisioner.GateECC},
		{"ECC not reported", func(r *provisioner.GPUReport) *provisioner.GPUReport {
			r.GPUs[1].Health = provisioner.NoHealth
			return r
		}, nil, ""},
		{"retired pages", func(r *provisioner.GPUReport) *provisioner.GPUReport { r.GPUs[0].Health.RetiredPending = 1; return r }, nil, provisioner.GateRetiredPages},
		{"row remap pending", func(r *provisioner.GPUReport) *provisioner.GPUReport { r.GPUs[0].Health.RemapPending = 1; return r }, nil, provisioner.GateRowRemap},
		{"row remap failure", func(r *provisioner.GPUReport) *provisioner.GPUReport { r.GPUs[0].Health.RemapFailure = 1; return r }, nil, provisioner.GateRowRemap},
	} {
		t.Run(tt.name, func(t *testing.T) {
			r, w := good(), want
			if tt.mod != nil {
				r = tt.mod(r)
			}
			if tt.w != nil {
				w = tt.w(w)
			}
			g := provisioner.JudgeGPU(r, w)
			if g.Passed != (tt.rule == "") || g.Rule != tt.rule {
				t.Fatalf("verdict %q, want rule %q", g, tt.rule)
			}
			if g.Rule != "" && !slices.Contains(provisioner.GateRules, g.Rule) {
				t.Fatalf("rule %q is not listed in GateRules", g.Rule)
			}
		})
	}
	if s := provisioner.JudgeGPU(good(), want).String(); s != "passed: 2× NVIDIA A100-SXM4-80GB (81920 MiB), driver 550.54.15, CUDA 12.4" {
		t.Errorf("passed verdict reads %q", s)
	}
}

// TestGateFailsBeforeRegistration: a host that fails the gate is
// destroyed with no runner ever registered for its lease, the verdict is
// on the lease, the machine is avoided, and the job's next lease passes.
func TestGateFailsBeforeRegistration(t *testing.T) {
	h := newHarness(t, func(c *provisioner.Config) { c.Classes[0].CheckGPU = true })
	h.boot.gpu = func(n int) *provisioner.GPUReport {
		if n == 1 {
			return a100s(2, "NVIDIA A100-SXM4-80GB", 81920) // the offer says 1
		}
		return a100s(1, "NVIDIA A100-SXM4-80GB", 81920)
	}
	h.event("queued", 1, "g1")
	h.waitFor("online after a failed gate", func() bool { return len(h.leases(provisioner.StateIdle)) == 1 })
	failed := h.leases(provisioner.StateReleased, provisioner.StateReleasing)
	if len(failed) != 1 {
		t.Fatalf("failed leases: %s", h.describe())
	}
	f := failed[0]
	if !strings.HasPrefix(f.GPUCheck, "gpu_count: found 2× NVIDIA A100-SXM4-80GB") || !strings.Contains(f.Error, "GPU check failed: gpu_count") {
		t.Fatalf("failed lease: gpu_check %q, error %q", f.GPUCheck, f.Error)
	}
	if f.RunnerID != 0 {
		t.Fatalf("the failed lease has runner %d", f.RunnerID)
	}
	events, err := h.store.LeaseEvents(context.Background(), f.ID)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.ContainsFunc(events, func(e provisioner.Event) bool {
		return e.To == provisioner.StateFailed && strings.HasPrefix(e.Reason, "GPU check failed: gpu_count: found 2×")
	}) {
		t.Fatalf("no failed event names the rule: %+v", events)
	}
	h.gh.mu.Lock()
	jits := slices.Clone(h.gh.jits)
	h.gh.mu.Unlock()
	if slices.Contains(jits, f.RunnerName) {
		t.Fatalf("a runner was registered for the host that failed the gate: %v", jits)
	}
	ok := h.leases(provisioner.StateIdle)[0]
	if ok.MachineID != "m-dear" || !strings.HasPrefix(ok.GPUCheck, "passed: 1× NVIDIA A100-SXM4-80GB") || ok.GPUCount != 1 || ok.GPUMemoryGB != 80 {
		t.Fatalf("good lease: machine %s gpu_check %q count %d memory %g", ok.MachineID, ok.GPUCheck, ok.GPUCount, ok.GPUMemoryGB)
	}
	if !slices.Contains(jits, ok.RunnerName) {
		t.Fatalf("the good host's runner was not registered: %v", jits)
	}
}
