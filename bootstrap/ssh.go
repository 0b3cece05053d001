package bootstrap

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"strings"
	"sync"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/crabbox/crabbox-runner/provisioner"

	"github.com/crabbox/crabbox-runner/internal/tail"
)

// Errors from the host script's phases, beside provisioner.ErrGPUCheck.
var (
	// ErrRunnerChecksum: the downloaded runner tarball does not match
	// Config.RunnerSHA256. Another host will not fix it; the configuration
	// or the download source is wrong.
	ErrRunnerChecksum = errors.New("runner tarball checksum mismatch")
	// ErrRunnerStart: the runner exited right after it was started.
	ErrRunnerStart = errors.New("runner did not start")
)

// Exit codes of host.sh.
const (
	exitGPU      = 10
	exitChecksum = 11
	exitStart    = 12
)

// maxOutput bounds what is kept of a phase's stdout and stderr.
const maxOutput = 64 << 10

// conn is one SSH connection to a host, on which phases run as sessions.
type conn struct {
	b       *Bootstrapper
	client  *ssh.Client
	addr    string
	hostKey string   // as presented, authorized_keys format
	secrets []string // redacted from anything the host prints
	stop    func() bool
	// res, when set, collects each phase's duration.
	res *provisioner.BootstrapResult
}

func (c *conn) Close() {
	c.stop()
	_ = c.client.Close()
}

// dial connects and authenticates. The host key must match KnownHostKey
// when one is given; otherwise the key seen is trusted and recorded.
// Cancelling ctx closes the connection, also after dial has returned.
func (b *Bootstrapper) dial(ctx context.Context, req provisioner.ProbeRequest) (*conn, error) {
	addr := req.Endpoint.Addr()
	if addr == "" {
		return nil, errors.New("bootstrap: the host has no SSH endpoint")
	}
	// The provisioner resolved the provider's endpoint and checked every
	// address (provisioner/endpoint.go); a name here would be looked up
	// again, and its second answer need not be the one checked.
	if _, err := netip.ParseAddr(req.Endpoint.Host); err != nil {
		return nil, fmt.Errorf("bootstrap: SSH endpoint %s is not an IP address; names are resolved and checked before a connection", addr)
	}
	if req.Credentials == nil || len(req.Credentials.ClientPrivatePEM) == 0 {
		return nil, errors.New("bootstrap: no SSH client key")
	}
	// The parser's error is not wrapped: it is about secret material.
	signer, err := ssh.ParsePrivateKey(req.Credentials.ClientPrivatePEM)
	if err != nil {
		return nil, errors.New("bootstrap: the SSH client key is not a valid OpenSSH private key")
	}
	// The lease's key first; then any fallback (the key under the state key
	// before a rotation), which a host made before the rotation holds.
	signers := []ssh.Signer{signer}
	secrets := []string{string(req.Credentials.ClientPrivatePEM)}
	for _, pem := range req.Credentials.FallbackPrivatePEMs {
		s, err := ssh.ParsePrivateKey(pem)
		if err != nil {
			return nil, errors.New("bootstrap: a fallback SSH client key is not a valid OpenSSH private key")
		}
		signers = append(signers, s)
		secrets = append(secrets, string(pem))
	}
	var known ssh.PublicKey
	if req.KnownHostKey != "" {
		known, _, _, _, err = ssh.ParseAuthorizedKey([]byte(req.KnownHostKey))
		if err != nil {
			return nil, fmt.Errorf("bootstrap: known host key of %s is not in authorized_keys format", addr)
		}
	}
	user := req.Endpoint.User
	if user == "" {
		user = "root"
	}

	var (
		mu       sync.Mutex
		seen     ssh.PublicKey
		mismatch error
	)
	cfg := &ssh.ClientConfig{
		User: user,
		Auth: []ssh.AuthMethod{ssh.PublicKeys(signers...)},
		HostKeyCallback: func(_ string, _ net.Addr, key ssh.PublicKey) error {
			mu.Lock()
			defer mu.Unlock()
			if known != nil && !bytes.Equal(key.Marshal(), known.Marshal()) {
				mismatch = fmt.Errorf("%w: %s presented %s %s, expected %s %s", provisioner.ErrHostKeyMismatch, addr,
					key.Type(), ssh.FingerprintSHA256(key), known.Type(), ssh.FingerprintSHA256(known))
				return mismatch
			}
			if seen == nil {
				seen = key
			}
			return nil
		},
		Timeout: b.cfg.ConnectTimeout,
	}
	if known != nil {
		// Ask for the pinned key's type, so a host with several host keys
		// presents the one we know rather than a different, valid one.
		cfg.HostKeyAlgorithms = hostKeyAlgorithms(known.Type())
	}

	start := time.Now()
	d := net.Dialer{Timeout: b.cfg.ConnectTimeout}
	nc, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, b.connectError(ctx, addr, err)
	}
	stop := context.AfterFunc(ctx, func() { _ = nc.Close() })
	_ = nc.SetDeadline(time.Now().Add(b.cfg.ConnectTimeout))
	sc, chans, reqs, err := ssh.NewClientConn(nc, addr, cfg)
	if err != nil {
		stop()
		_ = nc.Close()
		mu.Lock()
		defer mu.Unlock()
		if mismatch != nil {
			b.log.Warn("bootstrap: host key mismatch", "endpoint", addr)
			return nil, fmt.Errorf("bootstrap: ssh to %s: %w", addr, mismatch)
		}
		return nil, b.connectError(ctx, addr, err)
	}
	_ = nc.SetDeadline(time.Time{})
	mu.Lock()
	hostKey := strings.TrimSpace(string(ssh.MarshalAuthorizedKey(seen)))
	mu.Unlock()
	b.log.Debug("bootstrap: connected", "endpoint", addr, "phase", "connect", "duration", time.Since(start).Round(time.Millisecond))
	return &conn{
		b:       b,
		client:  ssh.NewClient(sc, chans, reqs),
		addr:    addr,
		hostKey: hostKey,
		secrets: secrets,
		stop:    stop,
	}, nil
}

func (b *Bootstrapper) connectError(ctx context.Context, addr string, err error) error {
	if ctx.Err() != nil {
		err = ctx.Err()
	}
	b.log.Warn("bootstrap: cannot connect", "endpoint", addr, "phase", "connect", "error", err.Error())
	return fmt.Errorf("bootstrap: ssh to %s: %w", addr, err)
}

func hostKeyAlgorithms(keyType string) []string {
	if keyType == ssh.KeyAlgoRSA {
		return []string{ssh.KeyAlgoRSASHA512, ssh.KeyAlgoRSASHA256, ssh.KeyAlgoRSA}
	}
	return []string{keyType}
}

// run runs one command in a new session and returns its stdout. A phase that
// outlives CommandTimeout or ctx closes the connection, which ends the
// session; the connection is not used again after that.
func (c *conn) run(ctx context.Context, phase, cmd string, stdin io.Reader) (string, error) {
	start := time.Now()
	sess, err := c.client.NewSession()
	if err != nil {
		return "", c.fail(phase, start, fmt.Errorf("bootstrap: %s on %s: new session: %w", phase, c.addr, c.ctxErr(ctx, err)))
	}
	defer sess.Close()
	stdout, stderr := tail.Buffer{Max: maxOutput}, tail.Buffer{Max: maxOutput}
	sess.Stdin, sess.Stdout, sess.Stderr = stdin, &stdout, &stderr

	errc := make(chan error, 1)
	go func() { errc <- sess.Run(cmd) }()
	timer := time.NewTimer(c.b.cfg.CommandTimeout)
	defer timer.Stop()
	select {
	case err = <-errc:
	case <-ctx.Done():
		_ = c.client.Close()
		<-errc
		err = ctx.Err()
	case <-timer.C:
		_ = c.client.Close()
		<-errc
		err = fmt.Errorf("timed out after %s: %w", c.b.cfg.CommandTimeout, context.DeadlineExceeded)
	}
	if err == nil {
		if c.res != nil {
			c.res.Phases = append(c.res.Phases, provisioner.PhaseTime{Name: phase, Duration: time.Since(start)})
		}
		c.b.log.Debug("bootstrap: phase done", "endpoint", c.addr, "phase", phase, "duration", time.Since(start).Round(time.Millisecond))
		return stdout.String(), nil
	}

	out := c.redact(strings.TrimSpace(stderr.String()))
	if out == "" {
		out = c.redact(strings.TrimSpace(stdout.String()))
	}
	out = lastLines(out, 20)
	var exit *ssh.ExitError
	switch {
	case errors.As(err, &exit) && exit.ExitStatus() == exitGPU && phase == "gpu-check":
		// nvidia-smi's own words say what is wrong with the machine.
		err = fmt.Errorf("bootstrap: gpu-check on %s: %w: %s", c.addr, provisioner.ErrGPUCheck, out)
	case errors.As(err, &exit) && exit.ExitStatus() == exitChecksum:
		err = fmt.Errorf("bootstrap: %s on %s: %w: %s", phase, c.addr, ErrRunnerChecksum, out)
	case errors.As(err, &exit) && exit.ExitStatus() == exitStart:
		err = fmt.Errorf("bootstrap: %s on %s: %w: %s", phase, c.addr, ErrRunnerStart, out)
	case errors.As(err, &exit):
		err = fmt.Errorf("bootstrap: %s on %s: exit status %d: %s", phase, c.addr, exit.ExitStatus(), out)
	default:
		err = fmt.Errorf("bootstrap: %s on %s: %w", phase, c.addr, c.ctxErr(ctx, err))
	}
	return "", c.fail(phase, start, err)
}

// ctxErr prefers the context's error over the closed-connection error that
// cancelling causes.
func (c *conn) ctxErr(ctx context.Context, err error) error {
	if ctx.Err() != nil && !errors.Is(err, context.DeadlineExceeded) {
		return ctx.Err()
	}
	return err
}

func (c *conn) fail(phase string, start time.Time, err error) error {
	c.b.log.Warn("bootstrap: phase failed", "endpoint", c.addr, "phase", phase,
		"duration", time.Since(start).Round(time.Millisecond), "error", err.Error())
	return err
}

func (c *conn) redact(s string) string {
	for _, secret := range c.secrets {
		if secret = strings.TrimSpace(secret); secret != "" {
			s = strings.ReplaceAll(s, secret, "[redacted]")
		}
	}
	return s
}

func lastLines(s string, n int) string {
	lines := strings.Split(s, "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
