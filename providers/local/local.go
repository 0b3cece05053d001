// Package local is a provisioner.Provider whose instances are real OpenSSH
// servers on loopback, each with its own directory as the host's file
// system root and a fake nvidia-smi. It lets tests and the demo run the
// whole lease lifecycle, bootstrap included, on one machine; Behavior
// injects the faults of real clouds (hosts that never boot, broken GPUs,
// failed creates, unexpected host keys).
package local

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/user"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/crabbox/crabbox-runner/internal/sshd"
	"github.com/crabbox/crabbox-runner/provisioner"

	"github.com/crabbox/crabbox-runner/internal/fakegpu"
	"github.com/crabbox/crabbox-runner/internal/fakehost"
)

// Name is the provider's name in configuration.
const Name = "local"

// DefaultOffers are offered when Options.Offers is empty.
var DefaultOffers = []provisioner.Offer{
	{ID: "local-rtx4090", GPU: "RTX 4090", GPUCount: 1, GPUMemoryGB: 24, PricePerHour: 0.35, Region: "local"},
	{ID: "local-a100-sxm4", GPU: "A100 SXM4", GPUCount: 1, GPUMemoryGB: 80, PricePerHour: 1.29, Region: "local"},
	{ID: "local-a100-pcie", GPU: "A100 PCIE", GPUCount: 1, GPUMemoryGB: 40, PricePerHour: 0.89, Region: "local"},
	{ID: "local-2x-a100-sxm4", GPU: "A100 SXM4", GPUCount: 2, GPUMemoryGB: 80, PricePerHour: 2.58, Region: "local"},
	{ID: "local-h100-sxm", GPU: "H100 SXM", GPUCount: 1, GPUMemoryGB: 80, PricePerHour: 2.49, Region: "local"},
}

// Options configure a Provider.
type Options struct {
	// Dir holds one directory per instance. Required.
	Dir string
	// Offers replace DefaultOffers.
	Offers []provisioner.Offer
	// GPUName is what the fake nvidia-smi reports ("NVIDIA " is prefixed
	// unless present); the offer's GPU when empty.
	GPUName string
	// Behavior decides how the seq'th Create (from 1) behaves.
	Behavior func(seq int, req provisioner.CreateRequest) Behavior
	Logger   *slog.Logger
}

// Behavior is the fault injected into one instance.
type Behavior struct {
	NeverBoot bool          // stays pending and never listens
	BrokenGPU bool          // nvidia-smi fails as with a missing driver
	BootDelay time.Duration // pending this long before sshd starts
	CreateErr error         // returned by Create, nothing is created
	// IgnoreHostKey makes the host use a key of its own instead of the one
	// given at create, as a host that ignored the injected key would.
	IgnoreHostKey bool
	// Machine is what `uname -m` answers on the host ("aarch64" for an
	// arm64 host such as Lambda's GH200); this machine's own when empty.
	// A shim on the host's PATH answers it, so the host script and the
	// fake runner see that architecture.
	Machine string
	// GPUOutput is printed by the fake nvidia-smi before its answer (or
	// its failure): a hostile host's operator controls every byte a host
	// prints, workflow commands included (issue #15).
	GPUOutput string
	// GPUFault gives the host GPUs that are not what the offer says, or
	// broken ones (internal/fakegpu).
	GPUFault fakegpu.Fault
	// RunnerDeps: the host's image has the runner's libraries (its fake
	// ldconfig lists them, internal/fakehost), so bootstrap skips
	// installdependencies.sh. Without, it runs.
	RunnerDeps bool
	// ImageRunner: the host's image carries this runner release (a
	// .tar.gz) unpacked at ImageRunnerPath (default /opt/actions-runner)
	// of its image directory, which sessions and the start script see as
	// CRABBOX_IMAGE_FS (internal/fakehost).
	ImageRunner     []byte
	ImageRunnerPath string
}

// Provider implements provisioner.Provider on loopback.
type Provider struct {
	opts  Options
	log   *slog.Logger
	user  string
	offer map[string]provisioner.Offer

	mu        sync.Mutex
	seq       int
	instances map[string]*host
	created   int
	destroyed int
}

var _ provisioner.Provider = (*Provider)(nil)

// host is one instance and the sshd behind it.
type host struct {
	inst provisioner.Instance
	dir  string
	stop chan struct{} // closed by Destroy, ends the boot goroutine
	done chan struct{} // closed when the boot goroutine has finished
	srv  *sshd.Server
	boot *fakehost.Boot // the create's OnStart, running
}

// New returns a Provider keeping its instances under opts.Dir.
func New(opts Options) (*Provider, error) {
	if opts.Dir == "" {
		return nil, errors.New("local: Options.Dir is required")
	}
	dir, err := filepath.Abs(opts.Dir)
	if err != nil {
		return nil, fmt.Errorf("local: %w", err)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("local: %w", err)
	}
	opts.Dir = dir
	if len(opts.Offers) == 0 {
		opts.Offers = DefaultOffers
	}
	u, err := user.Current()
	if err != nil {
		return nil, fmt.Errorf("local: current user: %w", err)
	}
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	p := &Provider{
		opts:      opts,
		log:       log,
		user:      u.Username,
		offer:     map[string]provisioner.Offer{},
		instances: map[string]*host{},
	}
	for _, o := range opts.Offers {
		o.Provider = Name
		p.offer[o.ID] = o
	}
	return p, nil
}

// Name implements provisioner.Provider.
func (p *Provider) Name() string { return Name }

// Capabilities implements provisioner.Provider: hosts use the injected host
// key, and there is no cloud-init.
func (p *Provider) Capabilities() provisioner.Capabilities {
	return provisioner.Capabilities{CloudInit: false, HostKeyInjection: true}
}

// Offers returns the offers that fit the class, cheapest first.
func (p *Provider) Offers(ctx context.Context, class provisioner.Class) ([]provisioner.Offer, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	var out []provisioner.Offer
	for _, o := range p.offer {
		if fits(o, class) {
			out = append(out, o)
		}
	}
	slices.SortFunc(out, func(a, b provisioner.Offer) int {
		return cmp.Or(cmp.Compare(a.PricePerHour, b.PricePerHour), cmp.Compare(a.ID, b.ID))
	})
	return out, nil
}

func fits(o provisioner.Offer, c provisioner.Class) bool {
	g := c.GPU
	switch {
	case g.Name != "" && !strings.Contains(strings.ToLower(o.GPU), strings.ToLower(g.Name)):
	case g.Count > 0 && o.GPUCount < g.Count:
	case g.MinMemoryGB > 0 && o.GPUMemoryGB < g.MinMemoryGB:
	case c.MaxPricePerHour > 0 && o.PricePerHour > c.MaxPricePerHour:
	case c.Region != "" && !strings.EqualFold(o.Region, c.Region):
	default:
		return true
	}
	return false
}

// Create starts a host for the offer. It returns at once with a pending
// instance; sshd starts in the background after the BootDelay.
func (p *Provider) Create(ctx context.Context, req provisioner.CreateRequest) (*provisioner.Instance, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	p.mu.Lock()
	p.seq++
	seq := p.seq
	p.mu.Unlock()
	var b Behavior
	if p.opts.Behavior != nil {
		b = p.opts.Behavior(seq, req)
	}
	if b.CreateErr != nil {
		return nil, b.CreateErr
	}
	offer, ok := p.offer[req.Offer.ID]
	if !ok {
		return nil, fmt.Errorf("local: offer %q: %w", req.Offer.ID, provisioner.ErrOfferUnavailable)
	}
	if req.SSHPublicKey == "" {
		return nil, errors.New("local: create needs an SSH public key")
	}

	id := "local-" + strconv.Itoa(seq)
	dir := filepath.Join(p.opts.Dir, id)
	if err := p.prepareDir(dir, offer, b); err != nil {
		_ = os.RemoveAll(dir)
		return nil, err
	}
	h := &host{
		dir:  dir,
		stop: make(chan struct{}),
		done: make(chan struct{}),
		inst: provisioner.Instance{
			Provider:     Name,
			ID:           id,
			Status:       provisioner.InstancePending,
			Marker:       req.Marker,
			PricePerHour: offer.PricePerHour,
			GPU:          offer.GPU,
			Region:       offer.Region,
			MachineID:    offer.MachineID,
			CreatedAt:    time.Now().UTC(),
		},
	}
	p.mu.Lock()
	p.instances[id] = h
	p.created++
	// Copied under the lock: the boot goroutine writes h.inst.
	inst := h.inst
	p.mu.Unlock()

	if b.NeverBoot {
		close(h.done)
	} else {
		var hostKey []byte
		if req.HostKey != nil && !b.IgnoreHostKey {
			hostKey = req.HostKey.PrivatePEM
		}
		go p.boot(h, b.BootDelay, hostKey, req.SSHPublicKey, req.OnStart)
	}
	p.log.Info("local: instance created", "instance", id, "offer", offer.ID)
	return &inst, nil
}

// prepareDir lays out the host: bin/ with the fake nvidia-smi (and uname,
// for Behavior.Machine) first on PATH, root/ as CRABBOX_HOST_ROOT, sshd/
// for the server's files.
func (p *Provider) prepareDir(dir string, offer provisioner.Offer, b Behavior) error {
	brokenGPU := b.BrokenGPU
	for _, d := range []string{"bin", "root", "sshd", "image"} {
		if err := os.MkdirAll(filepath.Join(dir, d), 0o700); err != nil {
			return fmt.Errorf("local: %w", err)
		}
	}
	if len(b.ImageRunner) > 0 {
		if err := fakehost.UnpackImageRunner(b.ImageRunner, filepath.Join(dir, "image"), cmp.Or(b.ImageRunnerPath, fakehost.DefaultImageRunnerPath)); err != nil {
			return fmt.Errorf("local: %w", err)
		}
	}
	// The fake nvidia-smi (internal/fakegpu): the offer's GPUs, or the
	// behaviour's fault.
	st := fakegpu.State{
		Count:  max(offer.GPUCount, 1),
		Name:   fakegpu.NameFor(cmp.Or(p.opts.GPUName, offer.GPU, "A100 SXM4")),
		MemMiB: int(cmp.Or(offer.GPUMemoryGB, 80) * 1024),
		Extra:  b.GPUOutput,
	}
	if brokenGPU {
		st = st.With(fakegpu.NoDriver)
	}
	if b.GPUFault != "" {
		st = st.With(b.GPUFault)
	}
	script := fakegpu.Script(st)
	if err := os.WriteFile(filepath.Join(dir, "bin", "nvidia-smi"), []byte(script), 0o755); err != nil {
		return fmt.Errorf("local: %w", err)
	}
	if b.Machine != "" {
		if err := os.WriteFile(filepath.Join(dir, "bin", "uname"), []byte(sshd.UnameShim(b.Machine)), 0o755); err != nil {
			return fmt.Errorf("local: %w", err)
		}
	}
	if err := os.WriteFile(filepath.Join(dir, "bin", "ldconfig"), []byte(fakehost.Ldconfig(b.RunnerDeps)), 0o755); err != nil {
		return fmt.Errorf("local: %w", err)
	}
	return nil
}

func (p *Provider) boot(h *host, delay time.Duration, hostKey []byte, authorized, onStart string) {
	defer close(h.done)
	if delay > 0 {
		t := time.NewTimer(delay)
		defer t.Stop()
		select {
		case <-h.stop:
			return
		case <-t.C:
		}
	}
	select {
	case <-h.stop:
		return
	default:
	}
	logFile, err := os.OpenFile(filepath.Join(h.dir, "sshd", "sshd.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		p.setFailed(h, err)
		return
	}
	defer logFile.Close()
	env := map[string]string{
		"PATH":              filepath.Join(h.dir, "bin") + ":/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
		"CRABBOX_HOST_ROOT": filepath.Join(h.dir, "root"),
		// The host's own home: its login shell reads no start files of
		// the user running the demo or the tests (a pyenv in root's
		// .bashrc took seconds a session on the test machine).
		"HOME":              filepath.Join(h.dir, "root"),
		fakehost.ImageFSEnv: filepath.Join(h.dir, "image"),
	}
	srv, err := sshd.Start(sshd.Options{
		Dir:            filepath.Join(h.dir, "sshd"),
		HostKeyPEM:     hostKey,
		AuthorizedKeys: []string{authorized},
		Env:            env,
		LogWriter:      logFile,
	})
	if err != nil {
		p.setFailed(h, err)
		return
	}
	// The start script runs as on Vast (providers/vast/vasttest): in the
	// background, SSH already up, HOME the host's root; the sshd's marker
	// lets Destroy end what it leaves behind.
	var boot *fakehost.Boot
	if strings.TrimSpace(onStart) != "" {
		benv := []string{"HOME=" + env["CRABBOX_HOST_ROOT"], srv.Marker()}
		for k, v := range env {
			benv = append(benv, k+"="+v)
		}
		if boot, err = fakehost.StartBoot(onStart, env["CRABBOX_HOST_ROOT"], benv); err != nil {
			p.log.Warn("local: start script did not start", "instance", h.inst.ID, "error", err.Error())
		}
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	h.srv, h.boot = srv, boot
	h.inst.Status = provisioner.InstanceRunning
	h.inst.SSH = provisioner.Endpoint{Host: "127.0.0.1", Port: srv.Port(), User: p.user}
	p.log.Info("local: instance running", "instance", h.inst.ID, "endpoint", srv.Addr())
}

func (p *Provider) setFailed(h *host, err error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	h.inst.Status = provisioner.InstanceFailed
	h.inst.StatusMessage = err.Error()
	p.log.Warn("local: instance failed to boot", "instance", h.inst.ID, "error", err.Error())
}

// Get returns the instance's current state, or ErrNotFound once destroyed.
func (p *Provider) Get(ctx context.Context, id string) (*provisioner.Instance, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	h, ok := p.instances[id]
	if !ok {
		return nil, fmt.Errorf("local: instance %s: %w", id, provisioner.ErrNotFound)
	}
	inst := h.inst
	return &inst, nil
}

// ListOwned returns the instances whose marker names the deployment.
func (p *Provider) ListOwned(ctx context.Context, deployment string) ([]*provisioner.Instance, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if deployment == "" {
		return nil, nil
	}
	var out []*provisioner.Instance
	for _, inst := range p.Live() {
		if inst.Marker.Deployment == deployment {
			out = append(out, inst)
		}
	}
	return out, nil
}

// Destroy stops the host's sshd, killing everything started through it, and
// removes its directory. An unknown instance counts as destroyed.
func (p *Provider) Destroy(ctx context.Context, inst *provisioner.Instance) error {
	if inst == nil {
		return nil
	}
	p.mu.Lock()
	h, ok := p.instances[inst.ID]
	if ok {
		delete(p.instances, inst.ID)
		p.destroyed++
	}
	p.mu.Unlock()
	if !ok {
		return nil
	}
	close(h.stop)
	<-h.done
	var errs []error
	if h.boot != nil {
		h.boot.Stop()
	}
	if h.srv != nil {
		errs = append(errs, h.srv.Stop())
	}
	errs = append(errs, os.RemoveAll(h.dir))
	p.log.Info("local: instance destroyed", "instance", inst.ID)
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("local: destroy %s: %w", inst.ID, err)
	}
	return nil
}

// Live returns the instances not yet destroyed, in creation order.
func (p *Provider) Live() []*provisioner.Instance {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := make([]*provisioner.Instance, 0, len(p.instances))
	for _, h := range p.instances {
		inst := h.inst
		out = append(out, &inst)
	}
	slices.SortFunc(out, func(a, b *provisioner.Instance) int {
		return cmp.Compare(seqOf(a.ID), seqOf(b.ID))
	})
	return out
}

func seqOf(id string) int {
	n, _ := strconv.Atoi(strings.TrimPrefix(id, "local-"))
	return n
}

// Created is how many instances Create made.
func (p *Provider) Created() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.created
}

// Destroyed is how many instances Destroy removed.
func (p *Provider) Destroyed() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.destroyed
}

// HostRoot is the directory the instance's sessions see as
// CRABBOX_HOST_ROOT, so tests can look at what a bootstrap left there.
func (p *Provider) HostRoot(id string) string {
	return filepath.Join(p.opts.Dir, id, "root")
}

// HostImage is the directory the instance's sessions see as the image's
// file system (CRABBOX_IMAGE_FS).
func (p *Provider) HostImage(id string) string {
	return filepath.Join(p.opts.Dir, id, "image")
}

// Close destroys every instance left.
func (p *Provider) Close() error {
	var errs []error
	for _, inst := range p.Live() {
		errs = append(errs, p.Destroy(context.Background(), inst))
	}
	return errors.Join(errs...)
}
