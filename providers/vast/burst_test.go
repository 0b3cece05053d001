package vast_test

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/crabbox/crabbox-runner/providers/vast"
	"github.com/crabbox/crabbox-runner/providers/vast/vasttest"
	"github.com/crabbox/crabbox-runner/provisioner"
	"github.com/crabbox/crabbox-runner/store/sqlite"
)

// TestBurstAgainstVastLimits runs a burst of leases through the real
// provisioner and store with the Vast provider against vasttest at Vast's
// documented per-endpoint limits, everything a hundred times faster
// (scale): create's 4.5 s threshold is 45 ms, its 120 s timeout 1.2 s, a
// 30-90 s create answer 0.3-0.9 s. GitHub and the bootstrap are in memory
// (no SSH): the figures are the Vast calls. It reports creates, failed
// creates, 429s, Vast requests per lease by endpoint from queued to
// destroyed, and the most hosts rented at once, in all and per lease.
//
// Issue 14's figures (50 leases, two runs: plain, and slow and lost create
// answers):
//
//	CRABBOX_VAST_BURST=50 go test -run TestBurstAgainstVastLimits -v -count=1 ./providers/vast/
//
// Without the variable it runs 8 leases, as a test. CRABBOX_VAST_SCALE
// (default 0.01) sets the speed-up.
func TestBurstAgainstVastLimits(t *testing.T) {
	n := 8
	if s := os.Getenv("CRABBOX_VAST_BURST"); s != "" {
		n, _ = strconv.Atoi(s)
	}
	t.Run("plain", func(t *testing.T) { vastBurst(t, n, false) })
	t.Run("slow and lost creates", func(t *testing.T) { vastBurst(t, n, true) })
}

func vastBurst(t *testing.T, n int, slow bool) {
	requireSSHD(t)
	// CRABBOX_VAST_SCALE runs Vast's times slower than the default
	// hundredfold speed-up: at 0.01 create's 45 ms interval is within
	// reach of a loaded machine's scheduling jitter.
	scale := scale
	if s := os.Getenv("CRABBOX_VAST_SCALE"); s != "" {
		if f, err := strconv.ParseFloat(s, 64); err == nil && f > 0 {
			scale = f
		}
	}
	opts := vasttest.Options{
		Dir: t.TempDir(), Offers: a100Market(n + n/2), RateLimits: vasttest.DocumentedLimits(scale),
		// A minute's boot, scaled: pulling the image, then starting.
		LoadingAfter: time.Duration(scale * float64(20*time.Second)), RunningAfter: time.Duration(scale * float64(40*time.Second)),
		// Rented machines stay off the market for the run.
		RelistAfter: time.Hour,
	}
	if slow {
		// Every create answers after 30-90 s (scaled); every fifth takes
		// effect and never answers.
		opts.CreateDelay = vasttest.SlowCreates(scale)
		opts.LoseCreate = func(k int) bool { return k%5 == 0 }
	}
	fake := vasttest.New(opts)
	t.Cleanup(fake.Close)

	var mu sync.Mutex
	byEndpoint := map[string]int{}
	byStatus := map[string]int{}
	p := newProvider(t, fake, func(c *vast.Config) {
		c.MinRequestInterval = 0
		c.PaceFactor = scale
		c.CreateTimeout = time.Duration(scale * float64(vast.DefaultCreateTimeout))
		c.StatusTTL = time.Duration(scale * float64(vast.DefaultStatusTTL))
		c.SearchTTL = time.Duration(scale * float64(vast.DefaultSearchTTL))
		c.CreateLookup = time.Duration(scale * float64(vast.DefaultCreateLookup))
		c.Retry = vast.Retry{}
		c.OnRequest = func(ep string, status int) {
			mu.Lock()
			byEndpoint[ep]++
			byStatus[ep+" "+strconv.Itoa(status)]++
			mu.Unlock()
		}
	})

	st, err := sqlite.Open(context.Background(), filepath.Join(t.TempDir(), "p.db"))
	if err != nil {
		t.Fatal(err)
	}
	gh := &burstGitHub{runners: map[int64]*provisioner.Runner{}}
	class := provisioner.Class{
		Name: "a100", Labels: []string{"self-hosted", "a100"}, Providers: []string{vast.Name},
		GPU: a100.GPU, MaxPricePerHour: 2.5, MinReliability: 0.95, VerifiedOnly: true, DirectSSH: true, DiskGB: 40,
		BootTimeout: 30 * time.Second, IdleTimeout: time.Hour, MaxLifetime: time.Hour,
	}
	prov, err := provisioner.New(provisioner.Config{
		Deployment: "burst", Classes: []provisioner.Class{class}, Providers: map[string]provisioner.Provider{vast.Name: p},
		GitHub: gh, Bootstrapper: &burstBootstrapper{gh: gh}, Store: st,
		// serve's 2 s poll of a booting host, scaled.
		PollInterval: time.Duration(scale * float64(2*time.Second)), QueuePollInterval: 20 * time.Millisecond,
		Logger:    slog.New(slog.DiscardHandler),
		Reconcile: provisioner.ReconcileConfig{Interval: -1, GCInterval: -1, DeadlineInterval: 100 * time.Millisecond},
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if err := prov.Start(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		sctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		prov.Stop(sctx)
		st.Close()
	})

	// Hosts rented at every moment: in all, and per lease (by label).
	var maxLive, maxPerLease int
	stopSampling := make(chan struct{})
	sampled := make(chan struct{})
	go func() {
		defer close(sampled)
		for {
			live := fake.Live()
			per := map[string]int{}
			for _, in := range live {
				per[in.Label]++
				maxPerLease = max(maxPerLease, per[in.Label])
			}
			maxLive = max(maxLive, len(live))
			select {
			case <-stopSampling:
				return
			case <-time.After(2 * time.Millisecond):
			}
		}
	}()

	start := time.Now()
	send := func(action string, job int64, runner string) {
		ev := provisioner.JobEvent{DeliveryID: fmt.Sprintf("%s-%d", action, job), Action: action, Status: action, JobID: job,
			RunID: job, RunAttempt: 1, Labels: []string{"self-hosted", "a100"}, Repo: "acme/ml", Org: "acme", Visibility: "private",
			RunnerName: runner, ReceivedAt: time.Now()}
		if _, err := prov.HandleJobEvent(ctx, ev); err != nil {
			t.Error(err)
		}
	}
	var wg sync.WaitGroup
	for j := 1; j <= n; j++ {
		wg.Add(1)
		go func() { defer wg.Done(); send("queued", int64(j), "") }()
	}
	wg.Wait()
	count := func(s provisioner.State) int {
		ls, err := st.Leases(ctx, provisioner.LeaseFilter{States: []provisioner.State{s}})
		if err != nil {
			t.Fatal(err)
		}
		return len(ls)
	}
	waitFor := func(what string, within time.Duration, cond func() bool) {
		deadline := time.Now().Add(within)
		for !cond() {
			if time.Now().After(deadline) {
				var counts []string
				for _, s := range provisioner.AllStates {
					if k := count(s); k > 0 {
						counts = append(counts, fmt.Sprintf("%s=%d", s, k))
					}
				}
				t.Fatalf("timed out waiting for %s: %v", what, counts)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	waitFor("every lease's runner online", 5*time.Minute, func() bool { return count(provisioner.StateIdle) == n })
	online := time.Since(start)
	leases, _ := st.Leases(ctx, provisioner.LeaseFilter{States: []provisioner.State{provisioner.StateIdle}})
	for i, l := range leases {
		send("in_progress", int64(i+1), l.RunnerName)
	}
	for i, l := range leases {
		send("completed", int64(i+1), l.RunnerName)
	}
	waitFor("every lease released and host destroyed", 5*time.Minute, func() bool {
		return count(provisioner.StateReleased) == n && len(fake.Live()) == 0
	})
	took := time.Since(start)
	close(stopSampling)
	<-sampled

	reqs := fake.Requests()
	creates, failedCreates, lostAnswers, limited := 0, 0, 0, map[vasttest.Op]int{}
	createStatus := map[int]int{}
	for _, r := range reqs {
		if r.Status == 429 {
			limited[r.Op]++
		}
		if r.Op == vasttest.OpCreate && r.Status != 429 {
			creates++
			createStatus[r.Status]++
			switch r.Status {
			case 200:
			case 0:
				lostAnswers++ // took effect, no answer: adopted or swept
			default:
				failedCreates++ // 404 no_such_ask and the like
			}
		}
	}
	instances := len(fake.Instances())
	mu.Lock()
	total := 0
	var eps []string
	for ep, k := range byEndpoint {
		total += k
		eps = append(eps, fmt.Sprintf("%s %.2f", ep, float64(k)/float64(n)))
	}
	statuses := fmt.Sprint(byStatus)
	mu.Unlock()
	sort.Strings(eps)
	report := fmt.Sprintf("burst of %d Vast leases (slow and lost creates: %v), scale %.2f: all online after %s, all destroyed after %s\n"+
		"  creates %d (by status %v, 0 = no answer), failed %d (%.0f%%), answers lost %d, instances made %d\n"+
		"  429s by call %v\n  requests per lease %.2f (client attempts %d):\n    %s\n"+
		"  most hosts rented at once %d (leases %d), most per lease %d\n  client attempts by status: %s",
		n, slow, scale, online.Round(time.Millisecond), took.Round(time.Millisecond),
		creates, createStatus, failedCreates, 100*float64(failedCreates)/float64(max(creates, 1)), lostAnswers, instances,
		limited, float64(total)/float64(n), total, strings.Join(eps, "\n    "),
		maxLive, n, maxPerLease, statuses)
	t.Log(report)
	if os.Getenv("CRABBOX_VAST_BURST") != "" {
		fmt.Fprintln(os.Stderr, report)
	}

	// What issue 14 asks of the burst.
	if maxPerLease > 1 {
		t.Errorf("a lease had %d hosts at once", maxPerLease)
	}
	if maxLive > n || instances != n {
		t.Errorf("hosts: %d at most at once, %d made, for %d leases", maxLive, instances, n)
	}
	if createStatus[429] > 0 {
		t.Errorf("a create ended on a 429")
	}
	if failedCreates*10 > creates {
		t.Errorf("%d of %d creates failed; want at most 10%%", failedCreates, creates)
	}
	// Listings are shared by all booting hosts, so their cost per lease
	// falls as the burst grows; the target is for 50.
	if n >= 20 && total > 10*n {
		t.Errorf("%.2f Vast requests per lease; want at most 10", float64(total)/float64(n))
	}
}

// burstGitHub keeps runners in memory; a bootstrapped runner is online.
type burstGitHub struct {
	mu      sync.Mutex
	seq     int64
	runners map[int64]*provisioner.Runner
}

func (g *burstGitHub) GenerateJITConfig(ctx context.Context, s provisioner.Scope, name string, labels []string) (*provisioner.JITConfig, error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	for id, r := range g.runners {
		if r.Name == name {
			delete(g.runners, id)
		}
	}
	g.seq++
	g.runners[g.seq] = &provisioner.Runner{ID: g.seq, Name: name, Status: "offline", Labels: labels}
	return &provisioner.JITConfig{RunnerID: g.seq, RunnerName: name, Encoded: "jit"}, nil
}

func (g *burstGitHub) Runner(ctx context.Context, s provisioner.Scope, id int64) (*provisioner.Runner, error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	r, ok := g.runners[id]
	if !ok {
		return nil, provisioner.ErrNotFound
	}
	c := *r
	return &c, nil
}

func (g *burstGitHub) RunnerByName(ctx context.Context, s provisioner.Scope, name string) (*provisioner.Runner, error) {
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

func (g *burstGitHub) ListRunners(ctx context.Context, s provisioner.Scope) ([]provisioner.Runner, error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	var out []provisioner.Runner
	for _, r := range g.runners {
		out = append(out, *r)
	}
	return out, nil
}

func (g *burstGitHub) RemoveRunner(ctx context.Context, s provisioner.Scope, id int64) error {
	g.mu.Lock()
	defer g.mu.Unlock()
	delete(g.runners, id)
	return nil
}

// burstBootstrapper "starts" the runner by marking it online; the lease's
// client key is a real one, as Vast checks the keys it is given.
type burstBootstrapper struct{ gh *burstGitHub }

func (b *burstBootstrapper) NewCredentials(seed []byte, withHostKey bool) (*provisioner.Credentials, error) {
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, err
	}
	signer, err := ssh.NewSignerFromKey(priv)
	if err != nil {
		return nil, err
	}
	return &provisioner.Credentials{ClientPublicKey: strings.TrimSpace(string(ssh.MarshalAuthorizedKey(signer.PublicKey()))), ClientPrivatePEM: []byte("unused")}, nil
}
func (b *burstBootstrapper) UserData(*provisioner.Credentials) (string, error) { return "", nil }
func (b *burstBootstrapper) OnStart(*provisioner.Credentials) string           { return "true" }
func (b *burstBootstrapper) Probe(context.Context, provisioner.ProbeRequest) (string, error) {
	return "ssh-ed25519 HOST", nil
}
func (b *burstBootstrapper) Bootstrap(ctx context.Context, req provisioner.BootstrapRequest) (*provisioner.BootstrapResult, error) {
	b.gh.mu.Lock()
	if r, ok := b.gh.runners[req.JIT.RunnerID]; ok {
		r.Status = "online"
	}
	b.gh.mu.Unlock()
	return &provisioner.BootstrapResult{HostKey: "ssh-ed25519 HOST"}, nil
}
