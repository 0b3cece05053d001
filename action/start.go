package action

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/crabbox/crabbox-runner/bootstrap"
	"github.com/crabbox/crabbox-runner/github"
	"github.com/crabbox/crabbox-runner/internal/config"
	"github.com/crabbox/crabbox-runner/provisioner"
)

// Names ties the names of a lease together; stop derives them all from the
// lease id.
type Names struct {
	LeaseID string
	// Label is unique to the workflow run, its attempt and the lease: no
	// other job can ask for it, so no other job can take the runner.
	Label      string
	RunnerName string
}

// NewNames makes the names of a new lease for a run and attempt.
func NewNames(deployment string, runID, attempt int64) Names {
	id := newLeaseID()
	return Names{
		LeaseID:    id,
		Label:      fmt.Sprintf("crabbox-%d-%d-%s", runID, attempt, id),
		RunnerName: runnerName(deployment, id),
	}
}

// runnerName is the same as the webhook deployment's, so gc and the
// `leases` view read both alike.
func runnerName(deployment, leaseID string) string { return "crabbox-" + deployment + "-" + leaseID }

const leaseIDAlphabet = "abcdefghijkmnpqrstuvwxyz23456789"

// newLeaseID returns "l" and ten random characters, as the provisioner's
// lease ids are: short enough for instance labels and runner names.
func newLeaseID() string {
	b := make([]byte, 10)
	if _, err := rand.Read(b); err != nil {
		panic(err)
	}
	var sb strings.Builder
	sb.WriteByte('l')
	for _, c := range b {
		sb.WriteByte(leaseIDAlphabet[int(c)%len(leaseIDAlphabet)])
	}
	return sb.String()
}

func (r *runner) start(ctx context.Context) error {
	in := r.in
	names := NewNames(in.Deployment, r.ctx.RunID, r.ctx.RunAttempt)
	// Written first: if this step fails or is cancelled halfway, stop still
	// learns which lease to clean up.
	r.setOutputs("label", names.Label, "lease-id", names.LeaseID, "runner-name", names.RunnerName)

	gh, err := r.github()
	if err != nil {
		return err
	}
	scope := r.scope()
	boot, err := bootstrap.New(r.bootstrapConfig(gh))
	if err != nil {
		return err
	}
	providers, provNames, err := r.providers()
	if err != nil {
		return err
	}
	p, err := r.provisioner(maskingGitHub{gh, r.secrets}, maskingBootstrapper{boot, r.secrets}, providers)
	if err != nil {
		return err
	}
	class := provisioner.Class{
		Name:            "action",
		Labels:          r.labels(names),
		GPU:             provisioner.GPURequirement{Name: in.GPU, Count: in.GPUCount, MinMemoryGB: in.MinGPUMemory},
		Providers:       provNames,
		MaxPricePerHour: in.MaxPrice,
		DiskGB:          in.DiskGB,
		Image:           in.Image,
		Region:          in.Region,
		VerifiedOnly:    true,
		DirectSSH:       true,
		CheckGPU:        in.CheckGPU,
		BootTimeout:     in.BootTimeout,
		MaxLifetime:     in.MaxLifetime,
		HedgeAfter:      in.HedgeAfter,
	}
	started := r.now()
	expires := started.Add(in.MaxLifetime)

	r.ga.Infof("Leasing %s on %s for %s (label %s, runner %s, expires %s)",
		describeGPU(in), strings.Join(provNames, ", "), scope, names.Label, names.RunnerName, expires.UTC().Format(time.RFC3339))
	r.ga.Group("Leasing a GPU host and starting its runner")
	var race *provisioner.RaceReport
	l, err := p.LeaseNow(ctx, provisioner.OneShotRequest{
		LeaseID: names.LeaseID, Class: class, Scope: scope, RunnerName: names.RunnerName,
		Labels: class.Labels, Expires: expires, Timeout: in.Timeout,
		// Progress carries host output (nvidia-smi's answer, a failed
		// offer's error with the host's stderr): fenced.
		Progress: r.hostText,
		Raced:    func(rep provisioner.RaceReport) { race = &rep },
	})
	r.ga.EndGroup()
	if err != nil {
		return r.startFailed(ctx, p, gh, scope, names, err)
	}
	online := r.now().Sub(started)
	r.setOutputs("provider", l.Provider, "price-per-hour", price(l.PricePerHour), "gpu", l.GPU, "instance-id", l.InstanceID)
	r.ga.Noticef("GPU runner %s online: %s %s at %s/h after %s; jobs use runs-on: %s",
		names.RunnerName, l.Provider, l.GPU, money(l.PricePerHour), online.Round(time.Second), names.Label)
	r.summary(fmt.Sprintf("### GPU runner started\n\n"+
		"| provider | GPU | price per hour | time to online | label | expires |\n"+
		"|---|---|---|---|---|---|\n"+
		"| %s | %s | %s | %s | `%s` | %s |\n",
		mdCell(l.Provider), mdCell(l.GPU), money(l.PricePerHour), online.Round(time.Second), names.Label,
		expires.UTC().Format("2006-01-02 15:04 MST")) + raceSummary(race, started))
	return nil
}

// raceSummary says, under the start summary's table, how a hedged start's
// race went and what the losing host cost: the Action's counterpart of
// serve's hedge metrics.
func raceSummary(rep *provisioner.RaceReport, started time.Time) string {
	if rep == nil {
		return ""
	}
	won := "the first host won; the hedge was destroyed"
	if rep.HedgeWon {
		won = "the hedge won; the first host was destroyed"
	}
	s := fmt.Sprintf("\nHedged start: a second host was started %s after the start (`hedge-after`); %s", rep.HedgedAt.Sub(started).Round(time.Second), won)
	if rep.LoserInstance != "" {
		s += fmt.Sprintf(" after %s at %s/h, at most %s.", rep.LoserHeld.Round(time.Second), money(rep.LoserPricePerHour), money(rep.LoserCost()))
	} else {
		s += " before it got a host."
	}
	return s + "\n"
}

// startFailed checks, rather than trusts, that a failed start left nothing
// behind, tries once more to remove what it finds, and says which it is.
func (r *runner) startFailed(ctx context.Context, p *provisioner.Provisioner, gh provisioner.GitHub, scope provisioner.Scope, n Names, cause error) error {
	// The step may have been cancelled; the check must still run.
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Minute)
	defer cancel()
	left := r.leftovers(ctx, p, gh, scope, n)
	if len(left) > 0 {
		_ = p.ReleaseNow(ctx, &provisioner.Lease{ID: n.LeaseID, Scope: scope, RunnerName: n.RunnerName})
		if left = r.leftovers(ctx, p, gh, scope, n); len(left) > 0 {
			return fmt.Errorf("no GPU runner started: %w. Left behind: %s; the stop step (lease-id %s) or gc removes it",
				cause, strings.Join(left, ", "), n.LeaseID)
		}
	}
	return fmt.Errorf("no GPU runner started, and nothing was left behind: %w", cause)
}

// leftovers lists what of the lease still exists; what cannot be checked
// counts as left.
func (r *runner) leftovers(ctx context.Context, p *provisioner.Provisioner, gh provisioner.GitHub, scope provisioner.Scope, n Names) []string {
	var left []string
	insts, err := p.LeaseInstances(ctx, n.LeaseID)
	switch {
	case err == nil:
		for _, inst := range insts {
			left = append(left, "instance "+inst.ID)
		}
	case !errors.Is(err, provisioner.ErrNotFound):
		left = append(left, "possibly an instance (listing failed)")
	}
	if _, err := gh.RunnerByName(ctx, scope, n.RunnerName); !errors.Is(err, provisioner.ErrNotFound) {
		left = append(left, "runner "+n.RunnerName)
	}
	return left
}

// labels are the unique label and the extra ones.
func (r *runner) labels(n Names) []string {
	return append([]string{n.Label}, r.in.Labels...)
}

// bootstrapConfig installs, on the host, the actions/runner tarball of the
// host's own architecture (the bootstrap asks uname -m): the inputs'
// release and checksum for that architecture, or else the release GitHub's
// runners/downloads endpoint names for it in this scope (of runner-version
// when that is given). Never a tarball without a checksum.
func (r *runner) bootstrapConfig(gh *github.Client) bootstrap.Config {
	in := r.in
	cfg := bootstrap.Config{Logger: r.log, RunnerVersion: in.RunnerVersion}
	if in.RunnerVersion != "" {
		cfg.RunnerURL = orDefault(in.RunnerURL, config.DefaultRunnerURL)
		cfg.RunnerChecksums = map[string]string{"x64": in.RunnerSHA256, "arm64": in.RunnerSHA256Arm64}
	}
	cfg.Resolve = func(ctx context.Context, scope provisioner.Scope, arch string) (bootstrap.Release, error) {
		rel, err := gh.RunnerDownload(ctx, scope, "linux", arch)
		if err != nil {
			return bootstrap.Release{}, fmt.Errorf("finding the %s runner release to install (or give runner-version with its checksum): %w", arch, err)
		}
		r.ga.Infof("Runner %s for %s from GitHub's runners/downloads (sha256 %s…)", rel.Version, arch, rel.SHA256[:12])
		return bootstrap.Release{Version: rel.Version, URL: rel.URL, SHA256: rel.SHA256}, nil
	}
	return cfg
}

func describeGPU(in *Inputs) string {
	var b strings.Builder
	b.WriteString(strconv.Itoa(in.GPUCount) + "x ")
	b.WriteString(orDefault(in.GPU, "any GPU"))
	if in.MinGPUMemory > 0 {
		fmt.Fprintf(&b, " (≥%g GB)", in.MinGPUMemory)
	}
	if in.MaxPrice > 0 {
		fmt.Fprintf(&b, " up to %s/h", money(in.MaxPrice))
	}
	return b.String()
}
