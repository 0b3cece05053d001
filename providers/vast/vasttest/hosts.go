package vasttest

import (
	"cmp"
	"context"
	"errors"
	"io"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/crabbox/crabbox-runner/internal/fakegpu"
	"github.com/crabbox/crabbox-runner/internal/fakehost"
	"github.com/crabbox/crabbox-runner/internal/sshd"
)

// host is a booted instance: sshd, the proxy in front of it, its directory,
// its onstart running.
type host struct {
	dir   string
	srv   *sshd.Server
	proxy *forwarder
	boot  *fakehost.Boot
}

func (h *host) root() string { return filepath.Join(h.dir, "root") }

// image is the directory that stands for the image's file system
// (fakehost.ImageFSEnv).
func (h *host) image() string { return filepath.Join(h.dir, "image") }

func (h *host) close() error {
	var errs []error
	if h.boot != nil {
		h.boot.Stop()
	}
	if h.proxy != nil {
		h.proxy.close()
	}
	if h.srv != nil {
		errs = append(errs, h.srv.Stop())
	}
	errs = append(errs, os.RemoveAll(h.dir))
	return errors.Join(errs...)
}

// boot walks an instance through Vast's states: null → loading → running
// (or the behaviour's failure). The host starts just before "running".
func (s *Server) boot(in *instance) {
	defer close(in.done)
	wait := func(d time.Duration) bool {
		t := time.NewTimer(d)
		defer t.Stop()
		select {
		case <-in.stop:
			return false
		case <-t.C:
			return true
		}
	}
	set := func(status, msg string) {
		s.mu.Lock()
		in.status, in.statusMsg = status, msg
		s.mu.Unlock()
	}
	b := in.behavior
	loadingAfter, runningAfter := s.opts.LoadingAfter, s.opts.RunningAfter
	if b.BootAfter > 0 {
		loadingAfter = b.BootAfter / 10
		runningAfter = b.BootAfter - loadingAfter
	}
	// The image's own files come with its pull, which is the boot's
	// wait (BootAfter): laid out while it runs, so that writing them does
	// not lengthen the boot.
	pulled := make(chan error, 1)
	go func() { pulled <- s.pullImage(in) }()
	if !wait(loadingAfter) {
		return
	}
	if b.OCIError {
		set("created", OCIMessage)
		return
	}
	set("loading", "Pulling image "+in.params.Image)
	if b.NeverBoot || !wait(runningAfter) {
		return
	}
	if b.FailStatus != "" {
		set(b.FailStatus, "container exited with code 1")
		return
	}
	err := <-pulled
	var h *host
	if err == nil {
		h, err = s.startHost(in)
	}
	if err != nil {
		s.logf("instance %d: host failed to start: %v", in.id, err)
		set("exited", "container failed to start: "+err.Error())
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	select {
	case <-in.stop:
		// Destroyed while starting: destroy() does not see the host, and
		// waits for done, so the host is gone before destroy returns.
		s.mu.Unlock()
		if err := h.close(); err != nil {
			s.logf("instance %d: stopping host: %v", in.id, err)
		}
		s.mu.Lock()
		return
	default:
	}
	// Keys attached while the host started.
	for _, k := range in.keys {
		if err := h.srv.AddAuthorizedKey(k); err != nil {
			s.logf("instance %d: key: %v", in.id, err)
		}
	}
	in.host = h
	in.status = "running"
	in.reachableAt = time.Now()
	in.statusMsg = "success, running " + in.params.Image + "/ssh"
	s.logf("instance %d running: ssh %s, proxy port %d", in.id, h.srv.Addr(), h.proxy.port())
}

// hostDir is where instance in's host lives.
func (s *Server) hostDir(in *instance) string {
	return filepath.Join(s.opts.Dir, "instance-"+strconv.FormatInt(in.id, 10))
}

// pullImage lays out the files of the instance's image that the fake
// knows of: the runner of Behavior.ImageRunner.
func (s *Server) pullImage(in *instance) error {
	if len(in.behavior.ImageRunner) == 0 {
		return nil
	}
	return fakehost.UnpackImageRunner(in.behavior.ImageRunner, (&host{dir: s.hostDir(in)}).image(),
		cmp.Or(in.behavior.ImageRunnerPath, fakehost.DefaultImageRunnerPath))
}

// startHost lays out the host, starts its sshd and proxy, and starts the
// onstart script the way Vast's entrypoint does: after the entrypoint has
// started SSH (vast-api.md §5: "shell script run after Vast's entrypoint
// (SSH/Jupyter runtypes only)"). Nothing says whether Vast reports the
// instance running before, during or after onstart; the stricter plausible
// order is kept: the script runs in the background while the instance is
// reported running, so SSH may well be reachable before onstart has
// finished, or done anything.
func (s *Server) startHost(in *instance) (*host, error) {
	dir := s.hostDir(in)
	h := &host{dir: dir}
	for _, d := range []string{"bin", "root", "sshd", "image"} {
		if err := os.MkdirAll(filepath.Join(dir, d), 0o700); err != nil {
			return nil, err
		}
	}
	if err := os.WriteFile(filepath.Join(dir, "bin", "nvidia-smi"), []byte(nvidiaSMI(in.offer, in.behavior)), 0o755); err != nil {
		return nil, err
	}
	// Vast's images are Docker images; the usual CUDA ones (nvidia/cuda
	// *-ubuntu22.04) are built on the minimal ubuntu image, which has
	// zlib but not libicu nor Kerberos: the runner's dependencies are
	// missing unless Behavior.RunnerDeps says the image has them.
	if err := os.WriteFile(filepath.Join(dir, "bin", "ldconfig"), []byte(fakehost.Ldconfig(in.behavior.RunnerDeps)), 0o755); err != nil {
		return nil, err
	}
	s.mu.Lock()
	keys := append([]string(nil), in.keys...)
	s.mu.Unlock()
	logFile, err := os.OpenFile(filepath.Join(dir, "sshd", "sshd.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return nil, err
	}
	defer logFile.Close()
	env := map[string]string{
		"PATH":              filepath.Join(dir, "bin") + ":/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
		"CRABBOX_HOST_ROOT": h.root(),
		// The host's own home, as root's is in the container: its login
		// shell reads no start files of the user the tests run as.
		"HOME":                h.root(),
		"VAST_CONTAINERLABEL": "C." + strconv.FormatInt(in.id, 10),
		fakehost.ImageFSEnv:   h.image(),
	}
	// No HostKeyPEM: Vast hosts make their own key; nobody can choose it.
	h.srv, err = sshd.Start(sshd.Options{Dir: filepath.Join(dir, "sshd"), AuthorizedKeys: keys, Env: env, LogWriter: logFile})
	if err != nil {
		h.close()
		return nil, err
	}
	if h.proxy, err = newForwarder(h.srv.Addr()); err != nil {
		h.close()
		return nil, err
	}
	if in.params.OnStart != nil && strings.TrimSpace(*in.params.OnStart) != "" {
		if h.boot, err = s.runOnStart(*in.params.OnStart, dir, env, h.srv); err != nil {
			h.close()
			return nil, err
		}
		go s.keepOnStartOutput(in, h.boot)
	}
	return h, nil
}

// runOnStart starts the script with the host's root as HOME, as root's home
// would be in the container, and returns at once. The sshd's marker in its
// environment lets the host's end kill what it leaves in the background.
func (s *Server) runOnStart(script, dir string, env map[string]string, srv *sshd.Server) (*fakehost.Boot, error) {
	benv := []string{"HOME=" + filepath.Join(dir, "root"), "VAST_TCP_PORT_22=" + strconv.Itoa(srv.Port()), srv.Marker()}
	for k, v := range env {
		benv = append(benv, k+"="+v)
	}
	return fakehost.StartBoot(script, filepath.Join(dir, "root"), benv)
}

// keepOnStartOutput records the script's output and error once it ends
// (within a minute). A failing script does not stop the instance, as on
// Vast.
func (s *Server) keepOnStartOutput(in *instance, b *fakehost.Boot) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	out, err := b.Wait(ctx)
	s.mu.Lock()
	defer s.mu.Unlock()
	in.onstartOut = out
	if err != nil {
		in.onstartErr = err.Error()
	}
}

// nvidiaSMI is the host's nvidia-smi (internal/fakegpu): the offer's
// GPUs, driver and CUDA (its cuda_max_good), or the behaviour's fault.
func nvidiaSMI(o Offer, b Behavior) string {
	st := fakegpu.State{Count: max(o.NumGPUs, 1), Name: fakegpu.NameFor(o.GPUName), MemMiB: int(o.GPURAM), Driver: o.DriverVersion}
	if o.CUDAMaxGood > 0 {
		st.CUDA = strconv.FormatFloat(o.CUDAMaxGood, 'f', -1, 64)
	}
	if b.BrokenGPU {
		st = st.With(fakegpu.NoDriver)
	}
	if b.GPUFault != "" {
		st = st.With(b.GPUFault)
	}
	return fakegpu.Script(st)
}

// forwarder is the fake SSH proxy (Vast's sshN.vast.ai): a TCP relay on its
// own port to the host's sshd.
type forwarder struct {
	ln     net.Listener
	target string

	mu    sync.Mutex
	conns map[net.Conn]bool
	done  bool
	wg    sync.WaitGroup
}

func newForwarder(target string) (*forwarder, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	f := &forwarder{ln: ln, target: target, conns: map[net.Conn]bool{}}
	f.wg.Add(1)
	go f.accept()
	return f, nil
}

func (f *forwarder) port() int { return f.ln.Addr().(*net.TCPAddr).Port }

func (f *forwarder) accept() {
	defer f.wg.Done()
	for {
		c, err := f.ln.Accept()
		if err != nil {
			return
		}
		up, err := net.DialTimeout("tcp", f.target, 5*time.Second)
		if err != nil {
			c.Close()
			continue
		}
		if !f.track(c, up) {
			c.Close()
			up.Close()
			return
		}
		f.wg.Add(2)
		go f.pipe(c, up)
		go f.pipe(up, c)
	}
}

func (f *forwarder) track(cs ...net.Conn) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.done {
		return false
	}
	for _, c := range cs {
		f.conns[c] = true
	}
	return true
}

func (f *forwarder) pipe(dst, src net.Conn) {
	defer f.wg.Done()
	io.Copy(dst, src)
	// Half-close would be kinder, but SSH ends both ways together.
	dst.Close()
	src.Close()
}

func (f *forwarder) close() {
	f.mu.Lock()
	f.done = true
	f.ln.Close()
	for c := range f.conns {
		c.Close()
	}
	f.mu.Unlock()
	f.wg.Wait()
}
