package provisioner_test

import (
	"context"
	"fmt"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/crabbox/crabbox-runner/provisioner"
	"github.com/crabbox/crabbox-runner/store/sqlite"
)

// memProvider is an in-memory provider: instances boot after bootPolls Get
// calls, unless the behaviour for that create says otherwise.
type memProvider struct {
	mu        sync.Mutex
	seq       int
	instances map[string]*memInstance
	created   int
	destroyed int
	// behave, when set, decides per create (1-based).
	behave  func(n int) memBehavior
	offers  []provisioner.Offer
	lists   int   // ListOwned calls
	gets    int   // Get calls
	listErr error // ListOwned fails with it when set
	// destroyGate, when set, is called (unlocked) before each Destroy:
	// a test holds a destroy there (hedge_test.go).
	destroyGate func(id string)
	// unlisted hides instances from ListOwned (not from Get): a listing
	// that lags the creates it follows (gc_test.go).
	unlisted map[string]bool
	// afterList, when set, is called (unlocked) after ListOwned has taken
	// its listing and before it returns it (gc_test.go).
	afterList func()
	// peak is the most instances live at once.
	peak int
}

type memBehavior struct {
	neverBoot bool
	createErr error
	// sshHost, when set, is the host the instance reports instead of
	// 127.0.0.1 (endpoint_test.go).
	sshHost string
	// hold, when set, keeps the instance booting until it is closed
	// (hedge_test.go).
	hold <-chan struct{}
	// answerOnCancel: the create goes through, but its answer never comes;
	// the call ends only when its context does (oneshot_hedge_test.go).
	answerOnCancel bool
	// createTook delays the create's answer, as a provider's create pace
	// does (oneshot_test.go).
	createTook time.Duration
}

type memInstance struct {
	inst     provisioner.Instance
	polls    int
	behavior memBehavior
}

func newMemProvider() *memProvider {
	return &memProvider{instances: map[string]*memInstance{}, offers: []provisioner.Offer{
		{Provider: "mem", ID: "o-cheap", GPU: "A100", GPUCount: 1, GPUMemoryGB: 80, PricePerHour: 1.1, MachineID: "m-cheap"},
		{Provider: "mem", ID: "o-dear", GPU: "A100", GPUCount: 1, GPUMemoryGB: 80, PricePerHour: 1.9, MachineID: "m-dear"},
	}}
}

func (m *memProvider) Name() string { return "mem" }
func (m *memProvider) Capabilities() provisioner.Capabilities {
	return provisioner.Capabilities{HostKeyInjection: true}
}

func (m *memProvider) Offers(ctx context.Context, c provisioner.Class) ([]provisioner.Offer, error) {
	return m.offers, nil
}

func (m *memProvider) Create(ctx context.Context, req provisioner.CreateRequest) (*provisioner.Instance, error) {
	inst, b, err := m.create(req)
	if b.createTook > 0 {
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(b.createTook):
		}
	}
	if err == nil && b.answerOnCancel {
		<-ctx.Done()
		return nil, ctx.Err()
	}
	return inst, err
}

func (m *memProvider) create(req provisioner.CreateRequest) (*provisioner.Instance, memBehavior, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.seq++
	var b memBehavior
	if m.behave != nil {
		b = m.behave(m.seq)
	}
	if b.createErr != nil {
		return nil, b, b.createErr
	}
	id := fmt.Sprintf("i-%d", m.seq)
	mi := &memInstance{behavior: b, inst: provisioner.Instance{Provider: "mem", ID: id, Status: provisioner.InstancePending,
		Marker: req.Marker, PricePerHour: req.Offer.PricePerHour}}
	m.instances[id] = mi
	m.created++
	m.peak = max(m.peak, len(m.instances))
	inst := mi.inst
	return &inst, b, nil
}

func (m *memProvider) Get(ctx context.Context, id string) (*provisioner.Instance, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.gets++
	mi, ok := m.instances[id]
	if !ok {
		return nil, provisioner.ErrNotFound
	}
	mi.polls++
	held := false
	if mi.behavior.hold != nil {
		select {
		case <-mi.behavior.hold:
		default:
			held = true
		}
	}
	if mi.polls >= 2 && !mi.behavior.neverBoot && !held {
		mi.inst.Status = provisioner.InstanceRunning
		mi.inst.SSH = provisioner.Endpoint{Host: "127.0.0.1", Port: 22, User: "root"}
		if mi.behavior.sshHost != "" {
			mi.inst.SSH.Host = mi.behavior.sshHost
		}
	}
	inst := mi.inst
	return &inst, nil
}

func (m *memProvider) ListOwned(ctx context.Context, deployment string) ([]*provisioner.Instance, error) {
	m.mu.Lock()
	m.lists++
	if m.listErr != nil {
		m.mu.Unlock()
		return nil, m.listErr
	}
	var out []*provisioner.Instance
	for id, mi := range m.instances {
		if mi.inst.Marker.Deployment == deployment && !m.unlisted[id] {
			inst := mi.inst
			out = append(out, &inst)
		}
	}
	after := m.afterList
	m.mu.Unlock()
	if after != nil {
		after()
	}
	return out, nil
}

func (m *memProvider) Destroy(ctx context.Context, inst *provisioner.Instance) error {
	if m.destroyGate != nil {
		m.destroyGate(inst.ID)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if _, ok := m.instances[inst.ID]; ok {
		delete(m.instances, inst.ID)
		m.destroyed++
	}
	return nil
}

// lose puts a running instance in a lost state (outbid, preempted, …),
// as the provider would show it from then on; gone removes it.
func (m *memProvider) lose(id string, status provisioner.InstanceStatus) {
	m.mu.Lock()
	defer m.mu.Unlock()
	mi, ok := m.instances[id]
	if !ok {
		return
	}
	if status == provisioner.InstanceGone {
		delete(m.instances, id)
		return
	}
	mi.behavior.neverBoot = true
	mi.inst.Status, mi.inst.StatusMessage, mi.inst.SSH = status, "test: "+string(status), provisioner.Endpoint{}
}

func (m *memProvider) requests() (lists, gets int) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.lists, m.gets
}

func (m *memProvider) counts() (live, created, destroyed int) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return len(m.instances), m.created, m.destroyed
}

// memGitHub keeps runners in memory; a bootstrapped runner is online.
type memGitHub struct {
	mu      sync.Mutex
	seq     int64
	runners map[int64]*provisioner.Runner
	removed int
	// reruns are the jobs RerunJob was asked for; rerunErrs its first
	// answers, in order, then rerunErr.
	reruns    []int64
	rerunErrs []error
	rerunErr  error
	// jits names every runner registered, in order.
	jits []string
	// refuseRemoval answers every removal with 422, busy or not.
	refuseRemoval bool
}

func newMemGitHub() *memGitHub { return &memGitHub{runners: map[int64]*provisioner.Runner{}} }

func (g *memGitHub) GenerateJITConfig(ctx context.Context, s provisioner.Scope, name string, labels []string) (*provisioner.JITConfig, error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	// A runner name is unique in its scope: GitHub answers 409 "Already
	// exists - A runner with the name … already exists." (reference
	// github-runners.md §3, generate-jitconfig).
	for _, r := range g.runners {
		if r.Name == name {
			return nil, fmt.Errorf("github: 409 Already exists - A runner with the name %s already exists", name)
		}
	}
	g.seq++
	g.jits = append(g.jits, name)
	g.runners[g.seq] = &provisioner.Runner{ID: g.seq, Name: name, Status: "offline", Labels: labels}
	return &provisioner.JITConfig{RunnerID: g.seq, RunnerName: name, Encoded: "secret-jit"}, nil
}

func (g *memGitHub) Runner(ctx context.Context, s provisioner.Scope, id int64) (*provisioner.Runner, error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	r, ok := g.runners[id]
	if !ok {
		return nil, provisioner.ErrNotFound
	}
	c := *r
	return &c, nil
}

func (g *memGitHub) RunnerByName(ctx context.Context, s provisioner.Scope, name string) (*provisioner.Runner, error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	for _, r := range g.runners {
		if r.Name == name {
			c := *r
			return &c, nil
		}
	}
	return nil, provisioner.ErrNotFound
}

func (g *memGitHub) ListRunners(ctx context.Context, s provisioner.Scope) ([]provisioner.Runner, error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	var out []provisioner.Runner
	for _, r := range g.runners {
		out = append(out, *r)
	}
	return out, nil
}

func (g *memGitHub) RemoveRunner(ctx context.Context, s provisioner.Scope, id int64) error {
	g.mu.Lock()
	defer g.mu.Unlock()
	if r, ok := g.runners[id]; ok {
		if r.Busy || g.refuseRemoval {
			// GitHub answers 422 to removing a runner that runs a job
			// (reference github-runners.md §4; the client maps it).
			return provisioner.ErrRunnerBusy
		}
		delete(g.runners, id)
		g.removed++
	}
	return nil
}

// setBusy makes GitHub hand the runner a job (no webhook said so yet).
func (g *memGitHub) setBusy(id int64) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if r, ok := g.runners[id]; ok {
		r.Status, r.Busy = "online", true
	}
}

// dropRunner is GitHub removing a JIT runner whose job is done.
func (g *memGitHub) dropRunner(id int64) {
	g.mu.Lock()
	defer g.mu.Unlock()
	delete(g.runners, id)
}

func (g *memGitHub) RerunJob(ctx context.Context, s provisioner.Scope, repo string, jobID int64) error {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.reruns = append(g.reruns, jobID)
	if len(g.rerunErrs) > 0 {
		err := g.rerunErrs[0]
		g.rerunErrs = g.rerunErrs[1:]
		return err
	}
	return g.rerunErr
}

func (g *memGitHub) setOnline(id int64) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if r, ok := g.runners[id]; ok {
		r.Status = "online"
	}
}

func (g *memGitHub) removedCount() int {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.removed
}

func (g *memGitHub) live() int {
	g.mu.Lock()
	defer g.mu.Unlock()
	return len(g.runners)
}

// memBootstrapper "starts" the runner by marking it online.
type memBootstrapper struct {
	gh *memGitHub
	mu sync.Mutex
	// registered, when set, is told of each runner registered (after
	// Ready), and its start waits until the returned channel is closed.
	registered func(runnerID int64) <-chan struct{}
	gpuBad     func(host provisioner.Endpoint, n int) bool
	// gpu, when set, is the GPU report of the nth bootstrap.
	gpu func(n int) *provisioner.GPUReport
	n   int
	// hold, when set, keeps every bootstrap waiting until it is closed.
	hold chan struct{}
	// dialled lists the endpoint of every Probe and Bootstrap.
	dialled []string
	// failStart, when set, may fail a registered runner's start (after
	// registered): the runner stays registered and never comes online.
	failStart func(runnerID int64) error
}

func (b *memBootstrapper) NewCredentials(seed []byte, withHostKey bool) (*provisioner.Credentials, error) {
	c := &provisioner.Credentials{ClientPublicKey: "ssh-ed25519 CLIENT", ClientPrivatePEM: []byte("PRIVATE")}
	if withHostKey {
		c.HostKey = &provisioner.HostKeyPair{PublicKey: "ssh-ed25519 HOST", PrivatePEM: []byte("HOSTPRIVATE")}
	}
	return c, nil
}
func (b *memBootstrapper) UserData(c *provisioner.Credentials) (string, error) {
	return "#cloud-config\n", nil
}
func (b *memBootstrapper) OnStart(c *provisioner.Credentials) string { return "true" }
func (b *memBootstrapper) Probe(ctx context.Context, req provisioner.ProbeRequest) (string, error) {
	b.mu.Lock()
	b.dialled = append(b.dialled, req.Endpoint.Addr())
	b.mu.Unlock()
	return "ssh-ed25519 HOST", nil
}

func (b *memBootstrapper) dials() []string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return append([]string(nil), b.dialled...)
}

func (b *memBootstrapper) Bootstrap(ctx context.Context, req provisioner.BootstrapRequest) (*provisioner.BootstrapResult, error) {
	b.mu.Lock()
	b.dialled = append(b.dialled, req.Endpoint.Addr())
	b.n++
	n, hold := b.n, b.hold
	b.mu.Unlock()
	if hold != nil {
		select {
		case <-hold:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	if b.gpuBad != nil && b.gpuBad(req.Endpoint, n) {
		return nil, fmt.Errorf("nvidia-smi: %w", provisioner.ErrGPUCheck)
	}
	res := &provisioner.BootstrapResult{HostKey: "ssh-ed25519 HOST"}
	if req.CheckGPU && b.gpu != nil {
		res.GPU = b.gpu(n)
	}
	jit := req.JIT
	if req.Ready != nil {
		var err error
		if jit, err = req.Ready(ctx, res); err != nil {
			return nil, err
		}
	}
	b.mu.Lock()
	registered := b.registered
	b.mu.Unlock()
	if registered != nil {
		select {
		case <-registered(jit.RunnerID):
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	if b.failStart != nil {
		if err := b.failStart(jit.RunnerID); err != nil {
			return nil, err
		}
	}
	b.gh.setOnline(jit.RunnerID)
	return res, nil
}

type harness struct {
	t     testing.TB
	p     *provisioner.Provisioner
	store *sqlite.Store
	prov  *memProvider
	gh    *memGitHub
	boot  *memBootstrapper
	class provisioner.Class
}

func testClass() provisioner.Class {
	return provisioner.Class{
		Name: "a100", Labels: []string{"self-hosted", "linux", "crabbox", "a100"}, Providers: []string{"mem"},
		GPU: provisioner.GPURequirement{Name: "A100", Count: 1}, MaxPricePerHour: 2,
		BootTimeout: 2 * time.Second, IdleTimeout: time.Hour, MaxLifetime: time.Hour,
	}
}

func newHarness(t testing.TB, tweak func(*provisioner.Config)) *harness {
	t.Helper()
	st, err := sqlite.Open(context.Background(), filepath.Join(t.TempDir(), "p.db"))
	if err != nil {
		t.Fatal(err)
	}
	h := &harness{t: t, store: st, prov: newMemProvider(), gh: newMemGitHub(), class: testClass()}
	h.boot = &memBootstrapper{gh: h.gh}
	cfg := provisioner.Config{
		Deployment: "test", Classes: []provisioner.Class{h.class},
		Providers: map[string]provisioner.Provider{"mem": h.prov}, GitHub: h.gh, Bootstrapper: h.boot, Store: st,
		PollInterval: 10 * time.Millisecond, InlineWait: 300 * time.Millisecond, QueuePollInterval: 20 * time.Millisecond,
		Logger:    testLogger(t),
		Reconcile: provisioner.ReconcileConfig{Interval: -1, GCInterval: -1, DeadlineInterval: 100 * time.Millisecond},
		// The fakes' hosts are on loopback (endpoint_test.go takes this away).
		Endpoints: provisioner.EndpointPolicy{AllowPrivate: map[string]bool{"mem": true, "market": true, "vast": true}},
	}
	if tweak != nil {
		tweak(&cfg)
	}
	h.p, err = provisioner.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := h.p.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		h.p.Stop(ctx)
		st.Close()
	})
	return h
}

func (h *harness) event(action string, job int64, guid string, mod ...func(*provisioner.JobEvent)) provisioner.Outcome {
	h.t.Helper()
	ev := provisioner.JobEvent{DeliveryID: guid, Action: action, Status: action, JobID: job, RunID: 1, RunAttempt: 1,
		Labels: []string{"self-hosted", "A100"}, Repo: "acme/ml", Org: "acme", Visibility: "private"}
	for _, m := range mod {
		m(&ev)
	}
	out, err := h.p.HandleJobEvent(context.Background(), ev)
	if err != nil {
		h.t.Fatal(err)
	}
	// The tests look at leases right after an event: let its balance land.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := h.p.WaitBalanced(ctx); err != nil {
		h.t.Fatal(err)
	}
	return out
}

func (h *harness) leases(states ...provisioner.State) []*provisioner.Lease {
	h.t.Helper()
	ls, err := h.store.Leases(context.Background(), provisioner.LeaseFilter{States: states})
	if err != nil {
		h.t.Fatal(err)
	}
	return ls
}

// waitFor polls cond until it holds or the deadline passes.
func (h *harness) waitFor(what string, cond func() bool) {
	h.t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			h.t.Fatalf("timed out waiting for %s; leases: %s", what, h.describe())
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func (h *harness) describe() string {
	s := ""
	for _, l := range h.leases() {
		s += fmt.Sprintf("\n  %s %s instance=%s runner=%s err=%q reason=%q", l.ID, l.State, l.InstanceID, l.RunnerName, l.Error, l.ReleaseReason)
	}
	return s
}

// bootingLease records a lease whose host was created and is booting, for a
// queued job 1, with no work queued for it: as an earlier version or a lost
// job left it.
func (h *harness) bootingLease(id string) *provisioner.Lease {
	h.t.Helper()
	ctx := context.Background()
	inst, err := h.prov.Create(ctx, provisioner.CreateRequest{Marker: provisioner.Marker{Deployment: "test", LeaseID: id, Expires: time.Now().Add(time.Hour)}})
	if err != nil {
		h.t.Fatal(err)
	}
	l := &provisioner.Lease{ID: id, Class: "a100", Scope: provisioner.Scope{Org: "acme"},
		State: provisioner.StatePending, RunnerName: "crabbox-test-" + id}
	if err := h.store.InTx(ctx, func(tx provisioner.Tx) error {
		if err := tx.InsertLease(ctx, l); err != nil {
			return err
		}
		if err := tx.PutJob(ctx, &provisioner.Job{ID: 1, RunAttempt: 1, Scope: l.Scope, Class: "a100", Status: provisioner.JobQueued}); err != nil {
			return err
		}
		if _, err := tx.Transition(ctx, l.ID, provisioner.StateProvisioning, "test", func(l *provisioner.Lease) {
			l.Attempts, l.Provider = 1, "mem"
			l.BootDeadline, l.ExpiresAt = time.Now().Add(time.Minute), time.Now().Add(time.Hour)
		}); err != nil {
			return err
		}
		_, err := tx.Transition(ctx, l.ID, provisioner.StateBooting, "test", func(l *provisioner.Lease) {
			l.InstanceID, l.HostKey = inst.ID, "ssh-ed25519 HOST"
		})
		return err
	}); err != nil {
		h.t.Fatal(err)
	}
	return l
}

// holdDestroy holds the destroy of instance id: destroying is closed when
// it starts, and it goes on once letGo is closed.
func (m *memProvider) holdDestroy(id string) (destroying <-chan struct{}, letGo chan struct{}) {
	started, letGo := make(chan struct{}), make(chan struct{})
	var once sync.Once
	m.mu.Lock()
	m.destroyGate = func(got string) {
		if got == id {
			once.Do(func() { close(started) })
			<-letGo
		}
	}
	m.mu.Unlock()
	return started, letGo
}

// holdCreates keeps the nth create's host booting until holds[n] is
// closed; the other creates boot as usual.
func holdCreates(holds map[int]chan struct{}) func(n int) memBehavior {
	return func(n int) memBehavior {
		if c, ok := holds[n]; ok {
			return memBehavior{hold: c}
		}
		return memBehavior{}
	}
}
