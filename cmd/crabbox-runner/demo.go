package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/crabbox/crabbox-runner/github/githubtest"
	"github.com/crabbox/crabbox-runner/internal/config"
	"github.com/crabbox/crabbox-runner/providers/local"
	"github.com/crabbox/crabbox-runner/provisioner"
	"github.com/crabbox/crabbox-runner/status"
)

type demoOptions struct {
	jobs    int
	keep    bool
	verbose bool
	timeout time.Duration
	// serve keeps the server (status page, /metrics) up after the jobs,
	// until Ctrl-C or SIGTERM; listen is its address, loopback only.
	serve  bool
	listen string
}

func newDemoCmd(g *globalFlags, getenv config.Getenv) *cobra.Command {
	o := demoOptions{}
	cmd := &cobra.Command{
		Use:   "demo",
		Short: "Run the real server against a fake GitHub and loopback hosts, no credentials needed",
		Long: `demo runs the real serve code (store, webhook, provisioner, SSH bootstrap) against an
in-process fake GitHub and the "local" provider, whose hosts are real OpenSSH servers on
127.0.0.1. It queues jobs, follows each from queued to a released host, prints the
timeline, and exits 0 when every job ran and every host is gone. With --serve it
then keeps the server up, prints the URL of its status page (the leases' phases drawn
as a timeline) and /metrics, and waits for Ctrl-C or SIGTERM before cleaning up.

It needs OpenSSH's sshd (Debian: apt-get install -y openssh-server) and curl.
Nothing leaves this machine: every address it uses is on loopback.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			return runDemo(cmd.Context(), cmd.OutOrStdout(), cmd.ErrOrStderr(), o)
		},
	}
	cmd.Flags().IntVar(&o.jobs, "jobs", 2, "number of GPU jobs to queue")
	cmd.Flags().BoolVar(&o.keep, "keep", false, "keep the demo's directory (database, host dirs, logs)")
	cmd.Flags().BoolVarP(&o.verbose, "verbose", "v", false, "also print the server's logs")
	cmd.Flags().DurationVar(&o.timeout, "timeout", 3*time.Minute, "give up on the jobs after this long")
	cmd.Flags().BoolVar(&o.serve, "serve", false, "after the jobs, keep the server, its status page and /metrics up until Ctrl-C")
	cmd.Flags().StringVar(&o.listen, "listen", "127.0.0.1:0", "the server's address, loopback only (port 0: any free port)")
	return cmd
}

// demoPrereqs says exactly what to install when something is missing.
func demoPrereqs() error {
	var missing []string
	if _, err := os.Stat("/usr/sbin/sshd"); err != nil {
		if _, err := exec.LookPath("sshd"); err != nil {
			missing = append(missing, "openssh-server")
		}
	}
	if _, err := exec.LookPath("curl"); err != nil {
		missing = append(missing, "curl")
	}
	if len(missing) > 0 {
		return fmt.Errorf("the demo's hosts are real OpenSSH servers on loopback and need %s; on Debian: sudo apt-get install -y %s",
			strings.Join(missing, " and "), strings.Join(missing, " "))
	}
	return nil
}

func runDemo(ctx context.Context, stdout, stderr io.Writer, o demoOptions) error {
	if o.jobs < 1 {
		return errors.New("--jobs must be at least 1")
	}
	if err := demoPrereqs(); err != nil {
		return err
	}
	if o.listen == "" {
		o.listen = "127.0.0.1:0"
	}
	// The server runs until the demo ends (base: the command's context,
	// which Ctrl-C and SIGTERM cancel); the jobs get --timeout.
	base := ctx
	ctx, cancel := context.WithTimeout(ctx, o.timeout)
	defer cancel()

	dir, err := os.MkdirTemp("", "crabbox-demo-")
	if err != nil {
		return err
	}
	if o.keep {
		fmt.Fprintf(stdout, "demo directory: %s\n", dir)
	} else {
		defer os.RemoveAll(dir)
	}
	logFile, err := os.Create(filepath.Join(dir, "serve.log"))
	if err != nil {
		return err
	}
	defer logFile.Close()
	var logw io.Writer = logFile
	if o.verbose {
		logw = io.MultiWriter(logFile, stderr)
	}

	tl := &timeline{w: stdout, start: time.Now()}
	const token = "ghp_demo_token_not_a_real_one"
	secret := []byte("demo-webhook-secret")
	gh := githubtest.New(githubtest.Options{
		Tokens:        []string{token},
		OnlineTimeout: 5 * time.Second,
		OnEvent: func(e githubtest.Event) {
			if e.Kind == githubtest.EventWebhookDelivered || e.Kind == githubtest.EventRunnerOffline {
				return // the lease timeline tells the same story more plainly
			}
			tl.print("github", e.String())
		},
	})
	defer gh.Close()
	const runnerVersion = "2.330.0"
	// The hosts are this machine: its architecture's tarball must verify.
	sums := config.Checksums{}
	for _, arch := range config.RunnerArchs {
		_, sum, err := githubtest.RunnerTarballFor(runnerVersion, arch)
		if err != nil {
			return err
		}
		sums[arch] = sum
	}

	hosts, err := local.New(local.Options{Dir: filepath.Join(dir, "hosts"),
		Logger: slog.New(slog.NewTextHandler(logFile, nil))})
	if err != nil {
		return err
	}
	defer hosts.Close()

	checkGPU := true
	cfg := &config.Config{
		Deployment:  "demo",
		Listen:      o.listen,
		DatabaseURL: "sqlite:" + filepath.Join(dir, "demo.db"),
		Log:         config.LogConfig{Level: "debug", Format: "text"},
		GitHub:      config.GitHubConfig{APIURL: gh.URL(), RunnerGroupID: 1},
		Runner:      config.RunnerConfig{Version: runnerVersion, URL: gh.TarballURLTemplate(), SHA256: sums},
		Defaults:    config.ClassDefaults{BootTimeout: time.Minute, IdleTimeout: 2 * time.Minute, MaxLifetime: 30 * time.Minute},
		Classes: []config.ClassConfig{{
			Name: "a100", Labels: []string{"self-hosted", "linux", "x64", "crabbox", "a100"},
			GPU: config.GPUConfig{Name: "A100", Count: 1, MinMemoryGB: 40}, Providers: []string{"local"},
			MaxPricePerHour: 2.50, DiskGB: 80, CheckGPU: &checkGPU,
		}},
		WebhookSecret: secret,
		GitHubToken:   token,
	}
	cfg.ApplyDefaults()
	if err := cfg.Validate(config.Needs{Webhook: true, GitHub: true, Classes: true, Runner: true, Deployment: true}); err != nil {
		return err
	}
	log := newLogger(logw, cfg.Log.Level, cfg.Log.Format, string(secret), token)
	// The status page, as serve has it, during the demo and with --serve.
	recent := status.NewRecent(status.DefaultRecentSize)
	log = withRecent(log, recent)
	a, err := newApp(ctx, cfg, log, appOptions{
		Providers: map[string]provisioner.Provider{"local": hosts},
		Tune: func(c *provisioner.Config) {
			c.PollInterval = 200 * time.Millisecond
			c.QueuePollInterval = 50 * time.Millisecond
		},
	})
	if err != nil {
		return err
	}
	defer a.close()
	if !loopbackOnly(a.listener.Addr()) {
		// The demo sets no status token: its page is open only because
		// nothing but this host reaches it (access.go).
		return fmt.Errorf("demo --listen %s: not a loopback address; use 127.0.0.1:PORT, [::1]:PORT or localhost:PORT", o.listen)
	}
	if err := a.addStatusPage(recent); err != nil {
		return err
	}
	gh.SetWebhook(a.URL()+"/webhook", secret)

	runCtx, stopServe := context.WithCancel(base)
	// stopped closes when the server has stopped; serveErr is then why.
	var serveErr error
	stopped := make(chan struct{})
	go func() { serveErr = a.run(runCtx); close(stopped) }()
	defer func() {
		stopServe()
		<-stopped
	}()

	fmt.Fprintf(stdout, "crabbox-runner demo: serve on %s (status page at /), fake GitHub on %s, hosts are sshd on 127.0.0.1\n\n", a.URL(), gh.URL())
	watchCtx, stopWatch := context.WithCancel(ctx)
	watched := make(chan struct{})
	go func() { defer close(watched); tl.watchLeases(watchCtx, a.store) }()

	var ids []int64
	for i := 0; i < o.jobs; i++ {
		ids = append(ids, gh.QueueJob(githubtest.JobSpec{
			Repo: "acme/vision", Org: "acme", Labels: []string{"self-hosted", "crabbox", "a100"},
			Name:   fmt.Sprintf("train (shard %d)", i+1),
			Script: `echo "training on $(hostname), GPU: $(nvidia-smi --query-gpu=name --format=csv,noheader)"`,
		}))
	}
	for _, id := range ids {
		if _, err := gh.WaitJob(ctx, id, githubtest.StatusCompleted); err != nil {
			stopWatch()
			<-watched
			return fmt.Errorf("job %d did not complete: %w (server log: %s)", id, err, logFile.Name())
		}
	}
	err = waitReleased(ctx, a.store, hosts, o.jobs)
	stopWatch()
	<-watched
	tl.flushLeases(context.Background(), a.store)
	if err != nil {
		return fmt.Errorf("%w (server log: %s)", err, logFile.Name())
	}
	if err := printSummary(stdout, a.store, gh, ids, hosts); err != nil || !o.serve {
		return err
	}
	return serveDemo(base, stdout, a.URL(), stopped, func() error { return serveErr })
}

// serveDemo keeps the demo's server up until ctx ends (Ctrl-C, SIGTERM)
// or the server stops by itself; runDemo's deferred calls then clean up
// as after any demo.
func serveDemo(ctx context.Context, w io.Writer, url string, stopped <-chan struct{}, why func() error) error {
	fmt.Fprintf(w, "\nThe demo's server stays up: status page %s/ (each lease's phases under \"Where the time goes\"), metrics %s/metrics.\n", url, url)
	fmt.Fprintln(w, "Loopback only, no token. Press Ctrl-C to stop; hosts and the demo's files are removed then.")
	select {
	case <-ctx.Done():
		fmt.Fprintln(w, "stopping the demo's server")
		return nil
	case <-stopped:
		return fmt.Errorf("the demo's server stopped: %v", why())
	}
}

// waitReleased waits until every lease is released and no host runs.
func waitReleased(ctx context.Context, st provisioner.Store, hosts *local.Provider, jobs int) error {
	for {
		leases, err := st.Leases(ctx, provisioner.LeaseFilter{})
		if err == nil {
			done := len(leases) >= jobs && len(hosts.Live()) == 0
			for _, l := range leases {
				if l.State != provisioner.StateReleased {
					done = false
				}
			}
			if done {
				return nil
			}
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("hosts still running when the demo timed out: %d", len(hosts.Live()))
		case <-time.After(100 * time.Millisecond):
		}
	}
}

func printSummary(w io.Writer, st provisioner.Store, gh *githubtest.Server, ids []int64, hosts *local.Provider) error {
	ctx := context.Background()
	leases, err := st.Leases(ctx, provisioner.LeaseFilter{})
	if err != nil {
		return err
	}
	fmt.Fprintln(w, "\nSummary")
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "lease\tjob\tGPU\t$/hour\tqueued→online\tbusy→released\tdestroy took\tresult")
	for _, l := range leases {
		events, _ := st.LeaseEvents(ctx, l.ID)
		var online, busy, releasing, released time.Time
		for _, e := range events {
			switch e.To {
			case provisioner.StateIdle:
				online = e.At
			case provisioner.StateBusy:
				busy = e.At
				if online.IsZero() {
					online = e.At // the runner took a job the moment it came online
				}
			case provisioner.StateReleasing:
				releasing = e.At
			case provisioner.StateReleased:
				released = e.At
			}
		}
		result := "released"
		if l.Error != "" {
			result = "released after: " + l.Error
		}
		fmt.Fprintf(tw, "%s\t%d\t%s\t%.2f\t%s\t%s\t%s\t%s\n", l.ID, l.BoundJobID, l.GPU, l.PricePerHour,
			dur(l.CreatedAt, online), dur(busy, released), dur(releasing, released), result)
	}
	tw.Flush()
	for _, id := range ids {
		j, _ := gh.Job(id)
		if j.Conclusion != "success" {
			return fmt.Errorf("job %d concluded %q", id, j.Conclusion)
		}
	}
	fmt.Fprintf(w, "\n%d jobs ran on %d leased hosts; %d hosts created, %d destroyed, %d still running. No credentials were used.\n",
		len(ids), len(leases), hosts.Created(), hosts.Destroyed(), len(hosts.Live()))
	return nil
}

func dur(from, to time.Time) string {
	if from.IsZero() || to.IsZero() {
		return "-"
	}
	return to.Sub(from).Round(10 * time.Millisecond).String()
}

// timeline prints what happens, from the fake GitHub and from the leases'
// history, with the time since the demo started.
type timeline struct {
	mu    sync.Mutex
	w     io.Writer
	start time.Time
	seen  map[string]int // lease id → events printed
}

func (t *timeline) print(source, msg string) {
	t.printAt(time.Now(), source, msg)
}

func (t *timeline) printAt(at time.Time, source, msg string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	fmt.Fprintf(t.w, "%7.2fs  %-7s %s\n", at.Sub(t.start).Seconds(), source, msg)
}

func (t *timeline) watchLeases(ctx context.Context, st provisioner.Store) {
	for {
		t.flushLeases(ctx, st)
		select {
		case <-ctx.Done():
			return
		case <-time.After(50 * time.Millisecond):
		}
	}
}

func (t *timeline) flushLeases(ctx context.Context, st provisioner.Store) {
	leases, err := st.Leases(ctx, provisioner.LeaseFilter{})
	if err != nil {
		return
	}
	t.mu.Lock()
	if t.seen == nil {
		t.seen = map[string]int{}
	}
	t.mu.Unlock()
	type line struct {
		at  time.Time
		msg string
	}
	var lines []line
	for _, l := range leases {
		events, err := st.LeaseEvents(ctx, l.ID)
		if err != nil {
			continue
		}
		t.mu.Lock()
		n := t.seen[l.ID]
		t.seen[l.ID] = len(events)
		t.mu.Unlock()
		for _, e := range events[min(n, len(events)):] {
			msg := fmt.Sprintf("lease %s %s", l.ID, e.To)
			if e.From == "" {
				msg = fmt.Sprintf("lease %s created for job %d (class %s)", l.ID, l.JobID, l.Class)
			} else if e.Reason != "" {
				msg += ": " + e.Reason
			}
			if e.To == provisioner.StateBooting {
				msg += fmt.Sprintf(" (%s %s at $%.2f/h)", l.Provider, l.GPU, l.PricePerHour)
			}
			lines = append(lines, line{e.At, msg})
		}
	}
	sort.SliceStable(lines, func(i, j int) bool { return lines[i].at.Before(lines[j].at) })
	for _, ln := range lines {
		t.printAt(ln.at, "lease", ln.msg)
	}
}
