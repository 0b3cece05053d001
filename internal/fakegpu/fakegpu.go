// Package fakegpu writes the fake nvidia-smi that the fake providers
// (providers/local, vasttest, lambdatest) put on their hosts' PATH: one
// generator, from a GPU state, of a shell script that answers the queries
// bootstrap/host.sh makes (and the ones test jobs make) in the real tool's
// formats, including the ways real hosts fail.
//
// Sources of each answer's format:
//   - --query-gpu=…,--format=csv,noheader[,nounits]: one row per GPU, the
//     fields in the order asked, joined by ", "; memory.total is "81920 MiB"
//     or, with nounits, "81920" (the nvidia-smi rows "NVIDIA A40 … 46068MiB"
//     of thamada/nvidia-smi nvsim/A40x10_smi.py; the csv spelling is the one
//     this repository's fakes printed before and its tests read).
//   - pci.bus_id "00000000:4F:00.0" (the Bus-Id column of the same table).
//   - An unknown field: `Field "cuda_version" is not a valid field to
//     query.`, nothing else, a non-zero status (seen on real hosts, quoted in
//     several public repositories; the status is not quoted, 2 is nvidia-smi's
//     "A supplied argument or flag is invalid"). Drivers before row remapping
//     answer remapped_rows.* this way.
//   - The plain output's header "| NVIDIA-SMI 550.127.05   Driver Version:
//     550.127.05   CUDA Version: 12.4 |" (thamada/nvidia-smi, as above) and
//     `nvidia-smi -q`'s "CUDA Version   : 12.7" (Jesse3692/MultiLanguageLearning
//     cuda-c/docs/nvidia-smi.md).
//   - A GPU that fell off the bus: "Unable to determine the device handle for
//     GPU0000:0B:00.0: Unknown Error" in place of its row
//     (NVIDIA/open-gpu-kernel-modules issue 387, a 4-GPU host whose GPU 1
//     dropped), and status 15, "The GPU has fallen off the bus or has
//     otherwise become inaccessible" (nvidia-smi(1) RETURN VALUE, quoted in
//     NVIDIA's GPU Operator troubleshooting page).
//   - No driver: "NVIDIA-SMI has failed because it couldn't communicate with
//     the NVIDIA driver. Make sure that the latest NVIDIA driver is installed
//     and running." and status 9, "NVIDIA driver is not loaded" (same page).
//   - ECC and memory health: ecc.errors.uncorrected.volatile.total is a
//     count, "[N/A]" on GPUs without ECC (GeForce); retired_pages.pending
//     "Yes"/"No" (nvidia-smi -q "Pending Page Blacklist : No");
//     remapped_rows.pending and .failure as counts 0/1 (public health
//     checks sum them or compare with "Yes" or "1": the client reads both).
package fakegpu

import (
	"cmp"
	"fmt"
	"strings"
)

// State is what the fake host's GPUs are and what is wrong with them.
type State struct {
	Count  int    // GPUs present (default 1)
	Name   string // nvidia-smi's name, e.g. "NVIDIA A100-SXM4-80GB" (default that)
	MemMiB int    // memory.total per GPU (default 81920)
	Driver string // driver version (default "550.54.15")
	CUDA   string // the CUDA version the driver supports (default "12.4")

	// NoDriver: nvidia-smi fails as with a missing driver (BrokenGPU).
	NoDriver bool
	// LostGPU is 1 + the index of a GPU that fell off the bus (0: none).
	LostGPU int
	// UncorrectedECC is GPU 0's count of uncorrected volatile ECC errors.
	UncorrectedECC int
	// RetiredPending, RemapPending, RemapFailure are GPU 0's.
	RetiredPending, RemapPending, RemapFailure bool
	// NoECC answers "[N/A]" for ECC counters (a GPU without ECC).
	NoECC bool
	// OldDriver does not know remapped_rows.* (drivers before Ampere's).
	OldDriver bool
	// Extra is printed before every answer (a host operator can make
	// nvidia-smi print anything).
	Extra string
}

// Defaults of a State.
const (
	DefaultName   = "NVIDIA A100-SXM4-80GB"
	DefaultMemMiB = 81920
	DefaultDriver = "550.54.15"
	DefaultCUDA   = "12.4"
)

func (s State) withDefaults() State {
	if s.Count == 0 {
		s.Count = 1
	}
	s.Name = strings.NewReplacer("'", "", "\n", " ", ",", " ").Replace(cmp.Or(s.Name, DefaultName))
	s.MemMiB = cmp.Or(s.MemMiB, DefaultMemMiB)
	s.Driver = cmp.Or(s.Driver, DefaultDriver)
	s.CUDA = cmp.Or(s.CUDA, DefaultCUDA)
	return s
}

// BusID is the fake PCI bus id of GPU i.
func BusID(i int) string { return fmt.Sprintf("00000000:%02X:00.0", 0x4F+i) }

// NameFor is how nvidia-smi names a GPU a provider sells as name: with the
// vendor word ("NVIDIA A100 SXM4" for Vast's "A100 SXM4").
func NameFor(name string) string {
	name = strings.TrimSpace(name)
	if name == "" || strings.HasPrefix(strings.ToUpper(name), "NVIDIA ") || strings.HasPrefix(strings.ToUpper(name), "TESLA ") {
		return name
	}
	return "NVIDIA " + name
}

// Script is the fake nvidia-smi, a POSIX shell script.
func Script(st State) string {
	s := st.withDefaults()
	var b strings.Builder
	b.WriteString("#!/bin/sh\n# Fake nvidia-smi (internal/fakegpu): see that package for the sources of each answer.\n")
	if s.Extra != "" {
		b.WriteString("cat <<'CRABBOX_GPU_OUTPUT_EOF'\n" + strings.TrimRight(s.Extra, "\n") + "\nCRABBOX_GPU_OUTPUT_EOF\n")
	}
	if s.Count < 0 {
		// A host whose only GPU is gone: "No devices were found", the
		// words public notes quote from GPU-less shells and Slurm jobs
		// without a GPU; the status is nvidia-smi(1)'s 6, "A query to find
		// an object was unsuccessful" (not quoted with the message: any
		// non-zero status is read the same).
		b.WriteString("echo 'No devices were found'\nexit 6\n")
		return b.String()
	}
	if s.NoDriver {
		b.WriteString(`echo "NVIDIA-SMI has failed because it couldn't communicate with the NVIDIA driver. Make sure that the latest NVIDIA driver is installed and running."` + "\nexit 9\n")
		return b.String()
	}
	lostLine := ""
	if s.LostGPU > 0 {
		lostLine = fmt.Sprintf("Unable to determine the device handle for GPU%s: Unknown Error", strings.TrimPrefix(BusID(s.LostGPU-1), "0000"))
	}
	ecc, retired, remapP, remapF := fmt.Sprint(s.UncorrectedECC), yesNo(s.RetiredPending), b01(s.RemapPending), b01(s.RemapFailure)
	if s.NoECC {
		ecc = "[N/A]"
	}
	fmt.Fprintf(&b, `query="" format="" mode=table
for a in "$@"; do
	case "$a" in
	--query-gpu=*) query="${a#--query-gpu=}"; mode=query ;;
	--format=*) format="${a#--format=}" ;;
	-q | --query) mode=q ;;
	-L | --list-gpus) mode=list ;;
	esac
done
count=%d name='%s' mem=%d driver='%s' cuda='%s' lost=%d old=%t
`, s.Count, s.Name, s.MemMiB, s.Driver, s.CUDA, s.LostGPU, s.OldDriver)
	fmt.Fprintf(&b, `lostline='%s'
ecc0='%s' retired0='%s' remapp0='%s' remapf0='%s'
`, lostLine, ecc, retired, remapP, remapF)
	b.WriteString(`busid() { printf '00000000:%02X:00.0' $((79 + $1)); }
status=0
case "$mode" in
query)
	units=" MiB"
	case "$format" in *nounits*) units="" ;; esac
	old_ifs=$IFS
	IFS=,
	for f in $query; do
		case "$f" in
		index | name | gpu_name | memory.total | driver_version | pci.bus_id | gpu_bus_id | uuid | \
			ecc.errors.uncorrected.volatile.total | retired_pages.pending) ;;
		remapped_rows.pending | remapped_rows.failure)
			if [ "$old" = true ]; then
				echo "Field \"$f\" is not a valid field to query."
				exit 2
			fi
			;;
		*)
			echo "Field \"$f\" is not a valid field to query."
			exit 2
			;;
		esac
	done
	IFS=$old_ifs
	i=0
	while [ "$i" -lt "$count" ]; do
		if [ "$lost" -eq $((i + 1)) ]; then
			echo "$lostline"
			status=15
			i=$((i + 1))
			continue
		fi
		row="" sep=""
		IFS=,
		for f in $query; do
			case "$f" in
			index) v=$i ;;
			name | gpu_name) v=$name ;;
			memory.total) v="$mem$units" ;;
			driver_version) v=$driver ;;
			pci.bus_id | gpu_bus_id) v=$(busid "$i") ;;
			uuid) v=$(printf 'GPU-%08d-0000-0000-0000-000000000000' "$i") ;;
			ecc.errors.uncorrected.volatile.total) v=0; [ "$i" -eq 0 ] && v=$ecc0 ;;
			retired_pages.pending) v=No; [ "$i" -eq 0 ] && v=$retired0 ;;
			remapped_rows.pending) v=0; [ "$i" -eq 0 ] && v=$remapp0 ;;
			remapped_rows.failure) v=0; [ "$i" -eq 0 ] && v=$remapf0 ;;
			esac
			row="$row$sep$v"
			sep=", "
		done
		IFS=$old_ifs
		echo "$row"
		i=$((i + 1))
	done
	;;
q)
	if [ "$lost" -gt 0 ]; then
		echo "$lostline"
		exit 15
	fi
	echo
	echo "==============NVSMI LOG=============="
	echo
	printf '%-42s: %s\n' "Driver Version" "$driver" "CUDA Version" "$cuda"
	echo
	printf '%-42s: %s\n' "Attached GPUs" "$count"
	;;
list)
	i=0
	while [ "$i" -lt "$count" ]; do
		if [ "$lost" -eq $((i + 1)) ]; then
			echo "$lostline"
			status=15
		else
			printf 'GPU %d: %s (UUID: GPU-%08d-0000-0000-0000-000000000000)\n' "$i" "$name" "$i"
		fi
		i=$((i + 1))
	done
	;;
*)
	if [ "$lost" -gt 0 ]; then
		echo "$lostline"
		exit 15
	fi
	echo "+-----------------------------------------------------------------------------------------+"
	printf '| NVIDIA-SMI %-22s Driver Version: %-14s CUDA Version: %-9s|\n' "$driver" "$driver" "$cuda"
	echo "|-----------------------------------------+------------------------+----------------------+"
	i=0
	while [ "$i" -lt "$count" ]; do
		printf '| %3d  %-34s |   %s Off | %20s |\n' "$i" "$name" "$(busid "$i")" 0
		printf '|                                         | %8s / %8sMiB |                      |\n' 1MiB "$mem"
		i=$((i + 1))
	done
	echo "+-----------------------------------------+------------------------+----------------------+"
	;;
esac
exit $status
`)
	return b.String()
}

func yesNo(b bool) string {
	if b {
		return "Yes"
	}
	return "No"
}

func b01(b bool) string {
	if b {
		return "1"
	}
	return "0"
}

// Fault is one way a rented host's GPUs are not what was sold, for the
// fakes' Behavior.
type Fault string

// The faults the fakes can show.
const (
	FewerGPUs    Fault = "fewer_gpus"    // one GPU missing (none left of one: "No devices were found")
	OtherModel   Fault = "other_model"   // an RTX 3090 where the offer said otherwise
	LessMemory   Fault = "less_memory"   // half the memory per GPU
	OldDriver    Fault = "old_driver"    // driver 470.103.01, CUDA 11.4 (a pair a real host showed, nvidia-smi -q)
	ECCErrors    Fault = "ecc_errors"    // uncorrected volatile ECC errors on GPU 0
	RetiredPages Fault = "retired_pages" // retired pages pending on GPU 0
	RowRemap     Fault = "row_remap"     // a row-remap failure on GPU 0
	LostGPU      Fault = "lost_gpu"      // the last GPU fell off the bus
	NoDriver     Fault = "no_driver"     // nvidia-smi cannot reach the driver
)

// With returns the state with the fault.
func (s State) With(f Fault) State {
	s = s.withDefaults()
	switch f {
	case FewerGPUs:
		s.Count--
		if s.Count == 0 {
			s.Count = -1 // none: withDefaults reads 0 as 1
		}
	case OtherModel:
		s.Name, s.MemMiB = "NVIDIA GeForce RTX 3090", 24576
	case LessMemory:
		s.MemMiB /= 2
	case OldDriver:
		s.Driver, s.CUDA = "470.103.01", "11.4"
	case ECCErrors:
		s.UncorrectedECC = 4
	case RetiredPages:
		s.RetiredPending = true
	case RowRemap:
		s.RemapFailure = true
	case LostGPU:
		s.LostGPU = s.Count
	case NoDriver:
		s.NoDriver = true
	}
	return s
}
