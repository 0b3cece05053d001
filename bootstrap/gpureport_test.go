package bootstrap_test

import (
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/crabbox/crabbox-runner/bootstrap"
	"github.com/crabbox/crabbox-runner/internal/fakegpu"
	"github.com/crabbox/crabbox-runner/provisioner"
)

// a100x4 is what a 4× A100 80GB offer holds a host to.
var a100x4 = provisioner.GateWant{Count: 4, OfferGPU: "A100 SXM4", ClassGPU: "A100", MinMemoryGB: 80, MinCUDA: "12.2", MinDriver: "535"}

// TestGPUReportRealOutputs: reports as host.sh prints them around outputs
// real hosts gave (the sources are in internal/fakegpu and gpureport.go),
// read and judged.
func TestGPUReportRealOutputs(t *testing.T) {
	rows := func(n int, name string, mib int) string {
		var b strings.Builder
		for i := range n {
			b.WriteString("gpu " + itoa(i) + ", " + name + ", " + itoa(mib) + ", 550.127.05, " + fakegpu.BusID(i) + "\n")
		}
		return b.String()
	}
	health := func(n int, row0 string) string {
		var b strings.Builder
		for i := range n {
			r := "0, No, 0, 0"
			if i == 0 && row0 != "" {
				r = row0
			}
			b.WriteString("health " + itoa(i) + ", " + r + "\n")
		}
		return b.String() + "exit health 0\n"
	}
	good := rows(4, "NVIDIA A100-SXM4-80GB", 81920) + "exit gpu 0\n"
	for _, tt := range []struct {
		name, out, rule string
		want            provisioner.GateWant
	}{
		{"4 good A100s", good + health(4, "") + "cuda 12.4\n", "", a100x4},
		{"H100 SXM's real name", rows(8, "NVIDIA H100 80GB HBM3", 81559) + "exit gpu 0\n" + health(8, "") + "cuda 12.4\n", "",
			provisioner.GateWant{Count: 8, OfferGPU: "H100 SXM", ClassGPU: "H100", MinMemoryGB: 80}},
		{"A40's ECC-reduced memory", rows(1, "NVIDIA A40", 46068) + "exit gpu 0\n" + health(1, "") + "cuda 12.4\n", "",
			provisioner.GateWant{Count: 1, OfferGPU: "A40", MinMemoryGB: 48}},
		{"GeForce without ECC", rows(1, "NVIDIA GeForce RTX 4090", 24564) + "exit gpu 0\n" + health(1, "[N/A], [N/A], [N/A], [N/A]") + "cuda 12.8\n", "",
			provisioner.GateWant{Count: 1, OfferGPU: "RTX 4090", ClassGPU: "4090", MinMemoryGB: 24}},
		{"no CUDA line passes without min_cuda", good + health(4, ""), "", provisioner.GateWant{Count: 4, OfferGPU: "A100 SXM4"}},
		{"3 of 4", rows(3, "NVIDIA A100-SXM4-80GB", 81920) + "exit gpu 0\n" + health(3, "") + "cuda 12.4\n", provisioner.GateGPUCount, a100x4},
		{"another model", rows(4, "NVIDIA A100 80GB PCIe", 81920) + "exit gpu 0\n" + health(4, "") + "cuda 12.4\n", provisioner.GateGPUModel, a100x4},
		{"40GB card for 80GB", rows(4, "NVIDIA A100-SXM4-40GB", 40960) + "exit gpu 0\n" + health(4, "") + "cuda 12.4\n", provisioner.GateGPUMemory, a100x4},
		{"old driver", strings.ReplaceAll(good, "550.127.05", "470.103.01") + health(4, "") + "cuda 11.4\n", provisioner.GateDriver, a100x4},
		{"old CUDA", good + health(4, "") + "cuda 12.0\n", provisioner.GateCUDA, a100x4},
		{"CUDA unknown with min_cuda", good + health(4, ""), provisioner.GateCUDA, a100x4},
		{"ECC errors", good + health(4, "3, No, 0, 0") + "cuda 12.4\n", provisioner.GateECC, a100x4},
		{"retired pages pending", good + health(4, "0, Yes, 0, 0") + "cuda 12.4\n", provisioner.GateRetiredPages, a100x4},
		{"row remap failed (Yes)", good + health(4, "0, No, 0, Yes") + "cuda 12.4\n", provisioner.GateRowRemap, a100x4},
		{"row remap pending", good + health(4, "0, No, 1, 0") + "cuda 12.4\n", provisioner.GateRowRemap, a100x4},
		{"GPU off the bus", "gpu 0, NVIDIA A100-SXM4-80GB, 81920, 550.127.05, 00000000:4F:00.0\n" +
			"say Unable to determine the device handle for GPU0000:0B:00.0: Unknown Error\n" +
			rows(4, "NVIDIA A100-SXM4-80GB", 81920)[len("gpu 0, NVIDIA A100-SXM4-80GB, 81920, 550.127.05, 00000000:4F:00.0\n"):] + "exit gpu 15\n",
			provisioner.GateGPULost, a100x4},
		{"GPU requires reset", good + "health 0, [GPU requires reset], [GPU requires reset], [GPU requires reset], [GPU requires reset]\n" +
			health(4, "")[len("health 0, 0, No, 0, 0\n"):] + "cuda 12.4\n", provisioner.GateGPULost, a100x4},
		{"GPU is lost in the health query", good + "say Unable to determine the device handle for GPU0000:0B:00.0: GPU is lost\nexit health 15\n",
			provisioner.GateGPULost, a100x4},
		{"nvidia-smi exits non-zero quietly", good[:len(good)-len("exit gpu 0\n")] + "exit gpu 255\n", provisioner.GateGPULost, a100x4},
		{"no driver", "say NVIDIA-SMI has failed because it couldn't communicate with the NVIDIA driver. Make sure that the latest NVIDIA driver is installed and running.\nexit gpu 9\n",
			provisioner.GateNoGPU, a100x4},
		{"no devices", "say No devices were found\nexit gpu 6\n", provisioner.GateNoGPU, a100x4},
		{"empty", "", provisioner.GateNoGPU, a100x4},
	} {
		t.Run(tt.name, func(t *testing.T) {
			r := bootstrap.ParseGPUReport("crabbox-gpu-report 1\n" + tt.out)
			g := provisioner.JudgeGPU(r, tt.want)
			if g.Passed != (tt.rule == "") || g.Rule != tt.rule {
				t.Fatalf("verdict %q, want rule %q; report %+v", g.String(), tt.rule, r)
			}
			if !g.Passed && (g.Found == "" || g.Wanted == "") {
				t.Fatalf("a failure says what it found and wanted: %+v", g)
			}
		})
	}
}

// TestGPUCheckThroughHostScript runs host.sh gpu-check against the shared
// fake nvidia-smi in each failure the fakes can show, reads the report
// and judges it: the host script, the fake's formats and the reader agree.
func TestGPUCheckThroughHostScript(t *testing.T) {
	if _, err := exec.LookPath("bash"); err != nil {
		t.Skip("no bash")
	}
	want := provisioner.GateWant{Count: 2, OfferGPU: "A100 SXM4", ClassGPU: "A100", MinMemoryGB: 80, MinCUDA: "12.4", MinDriver: "550.54"}
	for _, tt := range []struct {
		name  string
		state fakegpu.State
		rule  string
	}{
		{"good", fakegpu.State{Count: 2}, ""},
		{"good on an old driver without row remapping", fakegpu.State{Count: 2, OldDriver: true, NoECC: true}, ""},
		{"fewer GPUs", fakegpu.State{Count: 1}, provisioner.GateGPUCount},
		{"another model", fakegpu.State{Count: 2, Name: "NVIDIA GeForce RTX 4090", MemMiB: 24564}, provisioner.GateGPUModel},
		{"less memory", fakegpu.State{Count: 2, Name: "NVIDIA A100-SXM4-40GB", MemMiB: 40960}, provisioner.GateGPUMemory},
		{"old driver", fakegpu.State{Count: 2, Driver: "535.104.05", CUDA: "12.2"}, provisioner.GateDriver},
		{"old CUDA", fakegpu.State{Count: 2, Driver: "550.54.15", CUDA: "12.3"}, provisioner.GateCUDA},
		{"ECC errors", fakegpu.State{Count: 2, UncorrectedECC: 2}, provisioner.GateECC},
		{"retired pages", fakegpu.State{Count: 2, RetiredPending: true}, provisioner.GateRetiredPages},
		{"row remap failure", fakegpu.State{Count: 2, RemapFailure: true}, provisioner.GateRowRemap},
		{"lost GPU", fakegpu.State{Count: 2, LostGPU: 2}, provisioner.GateGPULost},
		{"driver missing", fakegpu.State{Count: 2, NoDriver: true}, provisioner.GateNoGPU},
	} {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			if err := os.WriteFile(filepath.Join(dir, "nvidia-smi"), []byte(fakegpu.Script(tt.state)), 0o755); err != nil {
				t.Fatal(err)
			}
			cmd := exec.Command("bash", "host.sh", "gpu-check")
			cmd.Env = append(os.Environ(), "PATH="+dir+":"+os.Getenv("PATH"), "CRABBOX_HOST_ROOT="+dir)
			out, err := cmd.Output()
			if err != nil {
				t.Fatalf("gpu-check: %v\n%s", err, out)
			}
			g := provisioner.JudgeGPU(bootstrap.ParseGPUReport(string(out)), want)
			if g.Passed != (tt.rule == "") || g.Rule != tt.rule {
				t.Fatalf("verdict %q, want rule %q\n%s", g.String(), tt.rule, out)
			}
		})
	}
}

// FuzzParseGPUReport: whatever a host prints, the reader neither panics
// nor keeps unbounded or control characters.
func FuzzParseGPUReport(f *testing.F) {
	f.Add("gpu 0, NVIDIA A100-SXM4-80GB, 81920, 550.54.15, 00000000:4F:00.0\nexit gpu 0\nhealth 0, 0, No, 0, 0\ncuda 12.4\n")
	f.Add("say Unable to determine the device handle for GPU0000:0B:00.0: Unknown Error\nexit gpu 15\n")
	f.Add("field remapped_rows.failure 0, [N/A]\nhealth x\ngpu -1,,,,\n")
	f.Fuzz(func(t *testing.T, out string) {
		r := bootstrap.ParseGPUReport(out)
		g := provisioner.JudgeGPU(r, a100x4)
		for _, s := range []string{g.Found, g.Wanted, r.Summary()} {
			if strings.ContainsAny(s, "\n\r\x00\x1b") || len(s) > 4096 {
				t.Fatalf("unsafe or unbounded: %q", s)
			}
		}
	})
}

func itoa(i int) string { return strconv.Itoa(i) }
