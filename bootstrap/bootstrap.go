// Package bootstrap turns a rented host into a one-job GitHub Actions runner
// over SSH. It implements provisioner.Bootstrapper: it generates each lease's
// SSH keys, writes the cloud-init user-data (or Vast's onstart script) that
// prepares a host, and runs the embedded host script in phases: GPU check,
// runner install (checksum verified) and runner start, with the JIT config
// sent over SSH stdin so that it never appears on a command line.
package bootstrap

import (
	"cmp"
	"context"
	_ "embed"
	"errors"
	"fmt"
	"log/slog"
	"regexp"
	"strings"
	"sync"
	"time"

	"github.com/crabbox/crabbox-runner/provisioner"
)

// hostScript is uploaded to the host on every bootstrap, so a host never
// runs a script older than the binary that drives it.
//
//go:embed host.sh
var hostScript []byte

// Default timeouts.
const (
	DefaultConnectTimeout = 30 * time.Second
	// DefaultCommandTimeout covers the slowest phase: downloading the
	// runner (~200 MB) and installing its dependencies.
	DefaultCommandTimeout = 15 * time.Minute
)

// Config configures a Bootstrapper.
type Config struct {
	// RunnerURL is the runner tarball's URL, with {version} and {arch}
	// placeholders, e.g.
	// https://github.com/actions/runner/releases/download/v{version}/actions-runner-linux-{arch}-{version}.tar.gz
	RunnerURL string
	// RunnerVersion is the release to install; it may be empty only with
	// Resolve, which then names it.
	RunnerVersion string
	// RunnerChecksums are the tarballs' SHA-256 (64 hex digits) by
	// architecture ("x64", "arm64"): each host installs the tarball of
	// its own architecture (uname -m), checked against that
	// architecture's checksum. A tarball that does not match stops the
	// bootstrap.
	RunnerChecksums map[string]string
	// RunnerSHA256 is the x64 tarball's checksum, the same as
	// RunnerChecksums["x64"] (which wins when both are set).
	RunnerSHA256 string
	// Resolve names the release for an architecture without a configured
	// checksum; nil leaves hosts of such architectures without a runner
	// (an error, never an unverified install).
	Resolve        ResolveFunc
	ConnectTimeout time.Duration // TCP connect and SSH handshake
	CommandTimeout time.Duration // each phase on the host
	Logger         *slog.Logger
}

// Bootstrapper implements provisioner.Bootstrapper.
type Bootstrapper struct {
	cfg Config
	log *slog.Logger

	mu       sync.Mutex
	resolved map[string]Release // by architecture, from Resolve
}

var _ provisioner.Bootstrapper = (*Bootstrapper)(nil)

var (
	sha256RE  = regexp.MustCompile(`^[0-9a-f]{64}$`)
	versionRE = regexp.MustCompile(`^[0-9A-Za-z][0-9A-Za-z._-]*$`)
	// Runner names become directory names on the host.
	runnerNameRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$`)
)

// New checks the configuration and returns a Bootstrapper.
func New(cfg Config) (*Bootstrapper, error) {
	if cfg.RunnerVersion == "" && cfg.Resolve == nil {
		return nil, errors.New("bootstrap: runner version is required")
	}
	if cfg.RunnerVersion != "" && !versionRE.MatchString(cfg.RunnerVersion) {
		return nil, fmt.Errorf("bootstrap: runner version %q: want something like 2.330.0", cfg.RunnerVersion)
	}
	sums := map[string]string{}
	for arch, sum := range cfg.RunnerChecksums {
		sums[arch] = sum
	}
	if _, ok := sums["x64"]; !ok && cfg.RunnerSHA256 != "" {
		sums["x64"] = cfg.RunnerSHA256
	}
	for arch, sum := range sums {
		sum = strings.ToLower(strings.TrimSpace(sum))
		switch {
		case !runnerNameRE.MatchString(arch):
			return nil, fmt.Errorf("bootstrap: runner architecture %q: want x64 or arm64", arch)
		case sum == "":
			delete(sums, arch)
			continue
		case !sha256RE.MatchString(sum):
			return nil, fmt.Errorf("bootstrap: runner sha256 of %s must be 64 hexadecimal digits", arch)
		}
		sums[arch] = sum
	}
	cfg.RunnerChecksums = sums
	if len(sums) == 0 && cfg.Resolve == nil {
		return nil, errors.New("bootstrap: runner sha256 is required (the tarball's SHA-256 from the runner's release notes)")
	}
	if len(sums) > 0 && cfg.RunnerVersion == "" {
		return nil, errors.New("bootstrap: a runner sha256 needs the runner version it is of")
	}
	if cfg.RunnerURL == "" && cfg.RunnerVersion != "" {
		return nil, errors.New("bootstrap: runner URL is required")
	}
	if cfg.RunnerURL != "" {
		if err := checkURL(resolveURL(cfg.RunnerURL, cmp.Or(cfg.RunnerVersion, "1.0.0"), "x64")); err != nil {
			return nil, err
		}
	}
	if cfg.ConnectTimeout < 0 || cfg.CommandTimeout < 0 {
		return nil, errors.New("bootstrap: timeouts must not be negative")
	}
	if cfg.ConnectTimeout == 0 {
		cfg.ConnectTimeout = DefaultConnectTimeout
	}
	if cfg.CommandTimeout == 0 {
		cfg.CommandTimeout = DefaultCommandTimeout
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Bootstrapper{cfg: cfg, log: log, resolved: map[string]Release{}}, nil
}

func resolveURL(tmpl, version, arch string) string {
	return strings.NewReplacer("{version}", version, "{arch}", arch).Replace(tmpl)
}

// Probe connects, checking the host key, and runs a no-op.
func (b *Bootstrapper) Probe(ctx context.Context, req provisioner.ProbeRequest) (string, error) {
	c, err := b.dial(ctx, req)
	if err != nil {
		return "", err
	}
	defer c.Close()
	if _, err := c.run(ctx, "probe", "true", nil); err != nil {
		return "", err
	}
	return c.hostKey, nil
}

// Bootstrap uploads the host script and runs its phases, each in its own
// SSH session over one connection: arch, gpu-check (when asked), then
// req.Ready (the gate's verdict and the runner's registration), install,
// start.
func (b *Bootstrapper) Bootstrap(ctx context.Context, req provisioner.BootstrapRequest) (*provisioner.BootstrapResult, error) {
	if req.JIT == nil || (req.JIT.Encoded == "" && !req.InstallOnly && req.Ready == nil) {
		return nil, errors.New("bootstrap: no JIT config")
	}
	name := req.JIT.RunnerName
	if !runnerNameRE.MatchString(name) {
		return nil, fmt.Errorf("bootstrap: runner name %q: use letters, digits, '.', '_' and '-' (at most 64)", name)
	}
	start := time.Now()
	c, err := b.dial(ctx, req.ProbeRequest)
	if err != nil {
		return nil, err
	}
	defer c.Close()
	// Output of the start phase could echo what it was given; keep the JIT
	// config out of every error whatever the host prints.
	if req.JIT.Encoded != "" {
		c.secrets = append(c.secrets, req.JIT.Encoded)
	}

	res := &provisioner.BootstrapResult{HostKey: c.hostKey}
	c.res = res
	if _, err := c.run(ctx, "upload", uploadCommand, strings.NewReader(string(hostScript))); err != nil {
		return nil, err
	}
	arch, err := c.run(ctx, "arch", script("arch"), nil)
	if err != nil {
		return nil, err
	}
	arch = strings.TrimSpace(arch)
	if req.CheckGPU {
		out, err := c.run(ctx, "gpu-check", script("gpu-check"), nil)
		switch {
		case errors.Is(err, provisioner.ErrGPUCheck):
			// No nvidia-smi at all: a finding for the gate like any other.
			res.GPU = &provisioner.GPUReport{NoGPU: "nvidia-smi not found on PATH"}
		case err != nil:
			return nil, err
		default:
			res.GPU = ParseGPUReport(out)
		}
		res.GPUInfo = res.GPU.Summary()
		if req.Ready == nil {
			// Without a judge, a host with no GPU answering still fails.
			if g := provisioner.JudgeGPU(res.GPU, provisioner.GateWant{}); !g.Passed && (g.Rule == provisioner.GateNoGPU || g.Rule == provisioner.GateGPULost) {
				return nil, &provisioner.GateError{Result: g}
			}
		}
	}
	if req.Ready != nil {
		// The host is judged and the runner registered only now, so that
		// a host that fails its check never has a runner on GitHub.
		jit, err := req.Ready(ctx, res)
		if err != nil {
			return nil, err
		}
		if jit == nil || (jit.Encoded == "" && !req.InstallOnly) || !runnerNameRE.MatchString(jit.RunnerName) {
			return nil, errors.New("bootstrap: no JIT config from the registration")
		}
		req.JIT, name = jit, jit.RunnerName
		c.secrets = append(c.secrets, jit.Encoded)
	}
	rel, err := b.release(ctx, req.Scope, arch)
	if err != nil {
		return nil, err
	}
	out, err := c.run(ctx, "install", script("install", rel.URL, rel.Version, rel.SHA256, arch, name, lockWait(b.cfg.CommandTimeout)), nil)
	if err != nil {
		return nil, err
	}
	parseInstall(out, time.Now(), res)
	res.Arch, res.RunnerVersion, res.RunnerSHA256 = arch, rel.Version, rel.SHA256
	if req.InstallOnly {
		b.log.Info("bootstrap: runner installed, not started", "endpoint", req.Endpoint.Addr(), "duration", time.Since(start).Round(time.Millisecond))
		return res, nil
	}
	if _, err := c.run(ctx, "start", script("start", name), strings.NewReader(req.JIT.Encoded+"\n")); err != nil {
		return nil, err
	}
	b.log.Info("bootstrap: runner started", "endpoint", req.Endpoint.Addr(), "runner", res.RunnerGot, "deps", res.Deps,
		"duration", time.Since(start).Round(time.Millisecond))
	return res, nil
}

// hostRoot is where everything of crabbox-runner lives on a host, as a shell
// expression to use inside double quotes. The local provider points
// CRABBOX_HOST_ROOT elsewhere so that its hosts share no files.
const hostRoot = `${CRABBOX_HOST_ROOT:-$HOME}/crabbox`

// uploadCommand stores the script read from stdin. It runs in the login
// shell, which may be any POSIX sh, with the login's umask: its own is 077,
// so that the directories it makes are private like everything host.sh
// makes.
const uploadCommand = `set -e; umask 077; d="` + hostRoot + `/.crabbox"; mkdir -p "$d"; ` +
	`cat > "$d/host.sh.tmp"; chmod 700 "$d/host.sh.tmp"; mv -f "$d/host.sh.tmp" "$d/host.sh"`

// script is the command line that runs one phase of the uploaded script.
// Its arguments are not secret: the host's process list shows them.
func script(phase string, args ...string) string {
	var b strings.Builder
	b.WriteString(`bash "` + hostRoot + `/.crabbox/host.sh" ` + phase)
	for _, a := range args {
		b.WriteString(" " + shellQuote(a))
	}
	return b.String()
}

func shellQuote(s string) string {
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}
