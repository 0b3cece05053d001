package bootstrap

import (
	_ "embed"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/crabbox/crabbox-runner/provisioner"
)

// prefetchScript downloads, verifies and unpacks the runner tarball, and
// deals with the runner's dependencies, while the host boots: the slow
// part of the install phase, off the path between "SSH reachable" and
// "runner online". host.sh install takes its result (same cache, same
// lock, same marker).
//
//go:embed prefetch.sh
var prefetchScript string

// MaxOnStart is the longest onstart Vast takes. vast-api.md §9: the API's
// introduction says 4048 characters, the CLI's docs 16 KB; the smaller is
// the one kept.
const MaxOnStart = 4048

// compactScript drops a shell script's comment lines and indentation, so
// that it fits in Vast's onstart. The script has no heredocs or
// multi-line strings for this to break.
func compactScript(s string) string {
	var b strings.Builder
	for _, line := range strings.Split(s, "\n") {
		line = strings.TrimLeft(line, " \t")
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		b.WriteString(line + "\n")
	}
	return b.String()
}

// prefetchEnd ends the here-document that carries the prefetch script.
const prefetchEnd = "CRABBOX_PREFETCH_EOF"

// prefetchLauncher is shell that writes the prefetch script under root
// (a shell expression), then starts it in the background with its output
// in .crabbox/prefetch.log, so that it never holds up the boot: the
// caller's script (onstart, cloud-init's runcmd) ends at once. pre runs
// first in the same background job (the curl install Vast's images may
// need). It is "" when there is nothing to prefetch: the version is
// resolved at bootstrap time, or no architecture has a checksum.
func (b *Bootstrapper) prefetchLauncher(root, pre string) string {
	x64, arm64 := b.cfg.RunnerChecksums["x64"], b.cfg.RunnerChecksums["arm64"]
	if b.cfg.RunnerVersion == "" || b.cfg.RunnerURL == "" || (x64 == "" && arm64 == "") {
		return ""
	}
	var s strings.Builder
	s.WriteString(`R="` + root + `"` + "\n")
	s.WriteString(`mkdir -p "$R/.crabbox"` + "\n")
	s.WriteString(`cat >"$R/.crabbox/prefetch.sh" <<'` + prefetchEnd + "'\n")
	s.WriteString(compactScript(prefetchScript))
	s.WriteString(prefetchEnd + "\n")
	// setsid: out of the caller's process group, so that whatever ends
	// the caller's group (cloud-init's unit, Vast's entrypoint) does not
	// end the prefetch.
	args := `bash "$R/.crabbox/prefetch.sh" "$R" ` + shellQuote(b.cfg.RunnerURL) + " " +
		shellQuote(b.cfg.RunnerVersion) + " " + shellQuote(x64) + " " + shellQuote(arm64)
	s.WriteString(`(` + pre + `command -v setsid >/dev/null && exec setsid ` + args + `; exec ` + args +
		`) >"$R/.crabbox/prefetch.log" 2>&1 </dev/null &` + "\n")
	return s.String()
}

// lockWait is how long host.sh install waits, in seconds, for a prefetch
// under way to let go of the cache: half the phase's timeout, so that a
// stuck prefetch still leaves the install time to download itself.
func lockWait(phase time.Duration) string {
	return strconv.Itoa(max(int(phase/time.Second)/2, 1))
}

// parseInstall reads the facts host.sh install prints last (see its
// "crabbox-" lines): how the runner was got, what was done about its
// dependencies, its steps' durations, as install.<step> phases, and the
// tarball's download. returned is when the install's output arrived:
// the download's age is counted back from it.
func parseInstall(out string, returned time.Time, res *provisioner.BootstrapResult) {
	for _, line := range strings.Split(out, "\n") {
		f := strings.Fields(line)
		switch {
		case len(f) == 2 && f[0] == "crabbox-runner":
			switch f[1] {
			case provisioner.RunnerPrefetched, provisioner.RunnerWaited, provisioner.RunnerDownloaded, provisioner.RunnerImage:
				res.RunnerGot = f[1]
			}
		case len(f) == 2 && f[0] == "crabbox-deps" && depsRE.MatchString(f[1]):
			res.Deps = f[1]
		case len(f) == 6 && f[0] == "crabbox-fetch":
			res.Fetch = parseFetch(f[1:], returned)
		case len(f) == 3 && f[0] == "crabbox-time" && depsRE.MatchString(f[1]):
			if ms, err := strconv.ParseInt(f[2], 10, 64); err == nil && ms >= 0 {
				res.Phases = append(res.Phases, provisioner.PhaseTime{Name: "install." + f[1], Duration: time.Duration(ms) * time.Millisecond})
			}
		}
	}
}

// parseFetch reads "by age download total bytes" (milliseconds, and
// bytes); nil unless every field is what host.sh prints.
func parseFetch(f []string, returned time.Time) *provisioner.RunnerFetch {
	if f[0] != provisioner.FetchByPrefetch && f[0] != provisioner.FetchByInstall {
		return nil
	}
	var n [4]int64
	for i, s := range f[1:] {
		v, err := strconv.ParseInt(s, 10, 64)
		if err != nil || v < 0 || v > 1e15 {
			return nil
		}
		n[i] = v
	}
	age, download, total := msDuration(n[0]), msDuration(n[1]), msDuration(n[2])
	if download > total || total > age {
		return nil
	}
	return &provisioner.RunnerFetch{By: f[0], Began: returned.Add(-age), Download: download, Total: total, Bytes: n[3]}
}

func msDuration(ms int64) time.Duration { return time.Duration(ms) * time.Millisecond }

// depsRE bounds the words taken from the host's output: a host's
// operator controls every byte it prints.
var depsRE = regexp.MustCompile(`^[a-z]{1,16}$`)
