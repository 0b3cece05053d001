package bootstrap

import (
	"strconv"
	"strings"
	"unicode"

	"github.com/crabbox/crabbox-runner/provisioner"
)

// ParseGPUReport reads the tagged lines of host.sh's gpu-check phase. The
// host's operator controls what nvidia-smi prints, so every value is
// bounded and stripped of control characters, and nothing in it is taken
// for more than data.
//
// What nvidia-smi prints for a GPU that does not answer, from real hosts:
//   - a line instead of the GPU's row, "Unable to determine the device
//     handle for GPU0000:0B:00.0: Unknown Error" (NVIDIA/open-gpu-kernel-modules
//     issue 387; NVIDIA/nvidia-docker issue 1553 writes "GPU 0000:09:00.0"),
//     or "... : GPU is lost" (NVML's NVML_ERROR_GPU_IS_LOST);
//   - a row whose values are "[GPU requires reset]" or "[Unknown Error]";
//   - and an exit status that is not 0.
//
// "[N/A]" and "[Not Supported]" (or "N/A") are no failure: the GPU does
// not keep that counter (no ECC, a generation before row remapping).
func ParseGPUReport(out string) *provisioner.GPUReport {
	r := &provisioner.GPUReport{}
	byIndex := map[int]*provisioner.GPUFound{}
	health := map[int]*provisioner.GPUHealth{}
	answered := map[int]bool{}
	exits := map[string]int{}
	var said []string
	lines := strings.Split(out, "\n")
	if len(lines) > 512 {
		lines = lines[:512]
	}
	for _, line := range lines {
		line = clean(strings.TrimSpace(line))
		tag, rest, _ := strings.Cut(line, " ")
		switch tag {
		case "gpu":
			f := csvFields(rest)
			if len(f) < 5 {
				said = append(said, rest)
				continue
			}
			idx, err := strconv.Atoi(f[0])
			if err != nil || idx < 0 || idx > 1024 {
				continue
			}
			g := &provisioner.GPUFound{Index: idx, Name: clip(f[1], 96), Driver: clip(f[3], 32), BusID: clip(f[4], 32),
				Health: provisioner.NoHealth, Answered: true}
			mem, err := strconv.ParseFloat(strings.TrimSuffix(strings.TrimSpace(f[2]), " MiB"), 64)
			if err == nil && mem >= 0 && mem < 1<<40 {
				g.MemMiB = int(mem)
			}
			for _, v := range f[1:5] {
				if unanswered(v) {
					g.Answered = false
				}
			}
			if err != nil && !unanswered(f[2]) {
				g.Answered = false
			}
			if _, dup := byIndex[idx]; !dup {
				r.GPUs = append(r.GPUs, *g)
				byIndex[idx] = &r.GPUs[len(r.GPUs)-1]
			}
		case "health":
			f := csvFields(rest)
			if len(f) < 5 {
				continue
			}
			idx, err := strconv.Atoi(f[0])
			if err != nil {
				continue
			}
			h := healthOf(health, idx)
			h.UncorrectedECC, h.RetiredPending, h.RemapPending, h.RemapFailure =
				count(f[1]), int(count(f[2])), int(count(f[3])), int(count(f[4]))
			for _, v := range f[1:5] {
				if unanswered(v) {
					answered[idx] = false
				}
			}
		case "field":
			name, row, _ := strings.Cut(rest, " ")
			f := csvFields(row)
			if len(f) < 2 {
				continue
			}
			idx, err := strconv.Atoi(f[0])
			if err != nil {
				continue
			}
			h := healthOf(health, idx)
			switch name {
			case "ecc.errors.uncorrected.volatile.total":
				h.UncorrectedECC = count(f[1])
			case "retired_pages.pending":
				h.RetiredPending = int(count(f[1]))
			case "remapped_rows.pending":
				h.RemapPending = int(count(f[1]))
			case "remapped_rows.failure":
				h.RemapFailure = int(count(f[1]))
			}
			if unanswered(f[1]) {
				answered[idx] = false
			}
		case "cuda":
			if v := strings.TrimSpace(rest); provisioner.ValidVersion(v) {
				r.CUDA = v
			}
		case "say":
			said = append(said, clip(rest, 200))
		case "exit":
			q, status, _ := strings.Cut(rest, " ")
			if n, err := strconv.Atoi(strings.TrimSpace(status)); err == nil {
				exits[q] = n
			}
		}
	}
	for i := range r.GPUs {
		g := &r.GPUs[i]
		if h, ok := health[g.Index]; ok {
			g.Health = *h
		}
		if ok, seen := answered[g.Index]; seen && !ok {
			g.Answered = false
		}
		if r.Driver == "" && provisioner.ValidVersion(g.Driver) {
			r.Driver = g.Driver
		}
	}
	// nvidia-smi's own words about GPUs that did not answer. A query that
	// failed only on a field this driver does not know is no lost GPU.
	for _, s := range said {
		if lostLine(s) {
			r.Lost = append(r.Lost, s)
		}
	}
	if st := exits["gpu"]; st != 0 || len(r.GPUs) == 0 {
		switch {
		case len(r.GPUs) == 0 && len(r.Lost) == 0:
			r.NoGPU = clip(strings.Join(said, " "), 300)
			if r.NoGPU == "" && st != 0 {
				r.NoGPU = "nvidia-smi exited with status " + strconv.Itoa(st)
			}
		case len(r.Lost) == 0:
			r.Lost = append(r.Lost, "nvidia-smi exited with status "+strconv.Itoa(st))
		}
	}
	seen := map[string]bool{}
	for _, s := range said {
		if !seen[s] && len(r.Said) < 20 {
			seen[s] = true
			r.Said = append(r.Said, s)
		}
	}
	if st, ok := exits["health"]; ok && st != 0 && len(r.Lost) == 0 {
		for _, s := range said {
			if !strings.Contains(s, "is not a valid field") {
				r.Lost = append(r.Lost, s)
			}
		}
	}
	return r
}

// lostLine: a line nvidia-smi prints for a GPU it cannot reach.
func lostLine(s string) bool {
	l := strings.ToLower(s)
	for _, m := range []string{"unable to determine the device handle", "gpu is lost", "unknown error", "requires reset"} {
		if strings.Contains(l, m) {
			return true
		}
	}
	return false
}

// unanswered: a value that is an error in brackets, not a reading.
func unanswered(v string) bool {
	v = strings.ToLower(strings.TrimSpace(v))
	return strings.Contains(v, "unknown error") || strings.Contains(v, "requires reset") ||
		strings.Contains(v, "gpu is lost") || strings.Contains(v, "[error")
}

// count reads a counter: a number, Yes/No (retired_pages.pending), or -1
// when the GPU does not report it ("[N/A]", "[Not Supported]", "N/A").
func count(v string) int64 {
	v = strings.TrimSpace(v)
	switch strings.ToLower(v) {
	case "yes":
		return 1
	case "no":
		return 0
	}
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil || n < 0 {
		return -1
	}
	return n
}

func healthOf(m map[int]*provisioner.GPUHealth, idx int) *provisioner.GPUHealth {
	h, ok := m[idx]
	if !ok {
		h = &provisioner.GPUHealth{}
		*h = provisioner.NoHealth
		m[idx] = h
	}
	return h
}

// csvFields splits one row of nvidia-smi's csv: ", " between values, and
// no value of the queried fields holds a comma.
func csvFields(row string) []string {
	f := strings.Split(row, ",")
	for i := range f {
		f[i] = strings.TrimSpace(f[i])
	}
	return f
}

func clean(s string) string {
	return strings.Map(func(r rune) rune {
		if unicode.IsControl(r) || r == unicode.ReplacementChar {
			return -1
		}
		return r
	}, s)
}

func clip(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return strings.ToValidUTF8(s[:n], "") + "…"
}
