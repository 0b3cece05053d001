package main

import (
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/crabbox/crabbox-runner/internal/fakegpu"
	"github.com/crabbox/crabbox-runner/providers/lambda/lambdatest"
	"github.com/crabbox/crabbox-runner/providers/vast/vasttest"
	"github.com/crabbox/crabbox-runner/provisioner"
)

// gateMarket: offers of 2× A100 SXM4 80GB that all say CUDA 12.8, the
// cheapest first. Machine 971 has two asks: its host is the one the test
// breaks, and its second ask (cheaper than every other machine) is where a
// lease would go if the bad machine were not avoided.
var gateMarket = []vasttest.Offer{
	gateOffer(9700001, 971, 0.90), gateOffer(9700003, 971, 1.00),
	gateOffer(9700002, 972, 1.10), gateOffer(9700004, 973, 1.20),
}

func gateOffer(id, machine int64, dph float64) vasttest.Offer {
	return vasttest.Offer{ID: id, MachineID: machine, GPUName: "A100 SXM4", NumGPUs: 2, GPURAM: 81920, DphBase: dph, StorageCost: 0.2,
		Reliability: 0.995, Geolocation: "Oregon, US", DirectPortCount: 64, DiskSpace: 1000, CUDAMaxGood: 12.8, DriverVersion: "570.124.06"}
}

// gateClass asks for what the market sells, with the gate's minimum CUDA.
const gateClass = `classes:
  - name: a100
    labels: [self-hosted, linux, x64, crabbox, a100]
    gpu: {name: A100, count: 2, min_memory_gb: 80}
    providers: [vast]
    max_price_per_hour: 2.50
    min_cuda: "12.4"
    disk_gb: 40
    boot_timeout: 60s
    idle_timeout: 5m
    max_lifetime: 30m
`

// startServeGate is startServeVast with gateMarket and gateClass; a
// destroyed host's machine comes back to the market at once, so only our
// bad-machine mark keeps it out.
func startServeGate(t *testing.T, behave func(seq int, o vasttest.Offer, label string) vasttest.Behavior) *vastE2E {
	t.Helper()
	return startServeVastOpts(t, vastE2EOptions{behave: behave, allowPrivate: true, relistAfter: 50 * time.Millisecond,
		market: gateMarket, classes: gateClass})
}

// gateCases: each way a host fails the gate, as the fakes show it, and
// the rule that names it.
var gateCases = []struct {
	fault fakegpu.Fault
	rule  string
}{
	{fakegpu.FewerGPUs, provisioner.GateGPUCount},
	{fakegpu.OtherModel, provisioner.GateGPUModel},
	{fakegpu.LessMemory, provisioner.GateGPUMemory},
	{fakegpu.OldDriver, provisioner.GateCUDA}, // 470 supports CUDA 11.4; the class wants 12.4
	{fakegpu.ECCErrors, provisioner.GateECC},
	{fakegpu.RetiredPages, provisioner.GateRetiredPages},
	{fakegpu.RowRemap, provisioner.GateRowRemap},
	{fakegpu.LostGPU, provisioner.GateGPULost},
	{fakegpu.NoDriver, provisioner.GateNoGPU},
}

// TestServeGPUGate: for each gate failure, a job whose first host (the
// cheaper Vast offer) fails the gate. That host is destroyed, GitHub never
// saw a runner registered for its lease, the job runs on the next offer,
// `leases` and the status page show the failed rule, the metric counts it,
// and the next job's lease does not go back to the bad machine although it
// is on the market again and cheaper.
func TestServeGPUGate(t *testing.T) {
	for _, tc := range gateCases {
		t.Run(string(tc.fault), func(t *testing.T) {
			e := startServeGate(t, func(seq int, o vasttest.Offer, _ string) vasttest.Behavior {
				if o.MachineID == 971 {
					return vasttest.Behavior{GPUFault: tc.fault}
				}
				return vasttest.Behavior{}
			})
			started := time.Now()
			id := e.queue("train")
			job := e.waitJob(id)
			took := time.Since(started)
			if job.Conclusion != "success" {
				t.Fatalf("job: %q\n%s", job.Conclusion, tail(e.logs.String(), 40))
			}
			ls := e.leases()
			if len(ls) != 2 {
				t.Fatalf("%d leases, want the failed one and the good one", len(ls))
			}
			bad, good := ls[0], ls[1]
			if bad.MachineID != "971" || !strings.HasPrefix(bad.GPUCheck, tc.rule+": found ") ||
				!strings.Contains(bad.Error, "GPU check failed: "+tc.rule) || bad.RunnerID != 0 {
				t.Fatalf("failed lease: machine %s gpu_check %q error %q runner %d", bad.MachineID, bad.GPUCheck, bad.Error, bad.RunnerID)
			}
			if good.MachineID != "972" || !strings.HasPrefix(good.GPUCheck, "passed: 2× NVIDIA A100 SXM4 (81920 MiB), driver 570.124.06, CUDA 12.8") ||
				good.BoundJobID != id || good.GPUCount != 2 || good.GPUMemoryGB != 80 {
				t.Fatalf("good lease: %+v", good)
			}
			if reg := e.gh.Registered(); slices.Contains(reg, bad.RunnerName) || !slices.Contains(reg, good.RunnerName) {
				t.Fatalf("registered runners %v: the failed lease's %s must not be, the good one's %s must", reg, bad.RunnerName, good.RunnerName)
			}
			insts := e.vast.Instances()
			if len(insts) != 2 || insts[0].OfferID != 9700001 || !insts[0].Destroyed || insts[1].OfferID != 9700002 {
				t.Fatalf("want the bad host (9700001) destroyed and the next lease on 9700002, not the bad machine's other ask: %+v", insts)
			}

			// The status page and the metric.
			if _, page := e.getStatus(""); !strings.Contains(page, "GPU gate "+tc.rule+": found") {
				t.Errorf("the status page does not show the rule %s", tc.rule)
			}
			metrics := e.get("/metrics")
			for _, want := range []string{
				fmt.Sprintf(`crabbox_gpu_gate_total{provider="vast",result=%q} 1`, tc.rule),
				`crabbox_gpu_gate_total{provider="vast",result="passed"} 1`,
			} {
				if !strings.Contains(metrics, want) {
					t.Errorf("/metrics lacks %s\n%s", want, grepLines(metrics, "crabbox_gpu_gate_total"))
				}
			}
			if !strings.Contains(e.logs.String(), `"msg":"GPU gate failed","component":"provisioner"`) {
				t.Errorf("the logs do not say the gate failed")
			}

			// The next job: the bad machine's ask is still the cheapest
			// offer not taken, but the lease goes to another machine.
			e.waitFor("the first job's host destroyed", 60*time.Second, func() bool { return len(e.vast.Live()) == 0 })
			started2 := time.Now()
			id2 := e.queue("train-again")
			if j := e.waitJob(id2); j.Conclusion != "success" {
				t.Fatalf("second job: %q", j.Conclusion)
			}
			took2 := time.Since(started2)
			ls = e.leases()
			if len(ls) != 3 || ls[2].MachineID != "973" {
				t.Fatalf("the second job's lease went to machine %s (want 973): %d leases", ls[len(ls)-1].MachineID, len(ls))
			}

			// `leases` names the rule in its GPU column.
			e.stop()
			code, out, errs := runCLI(t, e.env, "leases", "--all")
			if code != 0 {
				t.Fatalf("leases: %d %s", code, errs)
			}
			if !strings.Contains(out, " "+tc.rule+" ") || !strings.Contains(out, " passed ") {
				t.Errorf("leases does not show the rule %s:\n%s", tc.rule, out)
			}
			t.Logf("queued → completed with one failed gate (%s): %s, the next job without one: %s; the failed lease lived %s (created → released); gpu-check phases %s",
				tc.rule, took.Round(10*time.Millisecond), took2.Round(10*time.Millisecond), bad.ReleasedAt.Sub(bad.CreatedAt).Round(10*time.Millisecond),
				phaseTimes(e.logs.String(), "gpu-check"))
		})
	}
}

// TestServeGPUGateLambda: on Lambda, which does not say its driver, the
// first host shows an old driver (CUDA 11.4): the gate fails it before any
// runner is registered, it is terminated, and the job runs on the next.
func TestServeGPUGateLambda(t *testing.T) {
	fake := lambdatest.New(t, lambdatest.Options{APIKey: testLambdaKey, BootDelay: 200 * time.Millisecond,
		Behavior: func(seq int, _ lambdatest.LaunchRequest) lambdatest.Behavior {
			if seq == 1 {
				return lambdatest.Behavior{GPUFault: fakegpu.OldDriver}
			}
			return lambdatest.Behavior{}
		}})
	e := startServeLambda(t, fake, `    min_cuda: "12.4"`)
	id := e.queue("train")
	job := e.waitJob(id)
	if job.Conclusion != "success" {
		t.Fatalf("job: %q\n%s", job.Conclusion, tail(e.logs.String(), 40))
	}
	e.waitFor("every instance terminated", 60*time.Second, func() bool { return len(fake.Live()) == 0 })
	ls := e.leases()
	if len(ls) != 2 || !strings.HasPrefix(ls[0].GPUCheck, provisioner.GateCUDA+": found CUDA 11.4 (driver 470.103.01)") ||
		!strings.HasPrefix(ls[1].GPUCheck, "passed: ") || ls[1].BoundJobID != id {
		t.Fatalf("leases: %+v", ls)
	}
	if reg := e.gh.Registered(); slices.Contains(reg, ls[0].RunnerName) {
		t.Fatalf("a runner was registered for the host that failed the gate: %v", reg)
	}
	if m := e.get("/metrics"); !strings.Contains(m, `crabbox_gpu_gate_total{provider="lambda",result="cuda"} 1`) {
		t.Errorf("/metrics: %s", grepLines(m, "crabbox_gpu_gate_total"))
	}
	t.Logf("the failed lease lived %s (created → released); gpu-check phases %s",
		ls[0].ReleasedAt.Sub(ls[0].CreatedAt).Round(10*time.Millisecond), phaseTimes(e.logs.String(), "gpu-check"))
}

// phaseTimes lists the durations the bootstrap logged for a phase.
func phaseTimes(logs, phase string) []time.Duration {
	var out []time.Duration
	for _, line := range strings.Split(logs, "\n") {
		if !strings.Contains(line, `"msg":"bootstrap: phase done"`) || !strings.Contains(line, `"phase":"`+phase+`"`) {
			continue
		}
		var rec struct {
			Duration time.Duration `json:"duration"`
		}
		if json.Unmarshal([]byte(line), &rec) == nil {
			out = append(out, rec.Duration.Round(time.Millisecond))
		}
	}
	return out
}
