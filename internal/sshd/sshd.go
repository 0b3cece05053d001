// Package sshd runs a real OpenSSH sshd on loopback, so that tests and the
// local provider exercise the same SSH server, shells and process handling
// as a rented host, instead of an in-process imitation of one.
//
// Every session of a Server carries a marker variable in its environment
// (sshd's SetEnv), which is how Stop finds and kills everything the sessions
// left behind, including processes detached with setsid or nohup.
package sshd

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/crabbox/crabbox-runner/internal/tail"
)

// Binary is the sshd started by Start. sshd re-executes itself, so it must
// be an absolute path.
const Binary = "/usr/sbin/sshd"

// MarkerVar is the environment variable that tags every process started
// through a Server.
const MarkerVar = "CRABBOX_SSHD_INSTANCE"

const (
	startTimeout = 15 * time.Second
	stopTimeout  = 15 * time.Second
	bindAttempts = 10
)

// Options configure a Server.
type Options struct {
	// Dir holds the server's configuration, keys, pid file and
	// authorized_keys. It is created if missing.
	Dir string
	// HostKeyPEM is the host's OpenSSH private key; an ed25519 key is
	// generated when nil.
	HostKeyPEM []byte
	// AuthorizedKeys are the client keys allowed to log in, in
	// authorized_keys format.
	AuthorizedKeys []string
	// Env is set in every session (sshd's SetEnv, OpenSSH 8.7 or later),
	// over what sshd sets itself: HOME given here is the sessions' home.
	Env map[string]string
	// LogWriter receives sshd's log; discarded when nil.
	LogWriter io.Writer
}

// Server is a running sshd.
type Server struct {
	dir     string
	port    int
	hostPub string
	marker  string // MarkerVar=value, as it appears in /proc/<pid>/environ

	cmd  *exec.Cmd
	done chan struct{} // closed when sshd has exited

	stopOnce sync.Once
	stopErr  error

	authMu sync.Mutex // serialises AddAuthorizedKey
}

// pickPort returns a port that was free a moment ago. It is a variable so a
// test can hand out a busy port and see Start retry.
var pickPort = func() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// Start writes the configuration into opts.Dir and starts sshd on
// 127.0.0.1. It returns once the port accepts connections.
func Start(opts Options) (*Server, error) {
	if opts.Dir == "" {
		return nil, errors.New("sshd: Options.Dir is required")
	}
	if _, err := os.Stat(Binary); err != nil {
		return nil, fmt.Errorf("sshd: %s not found (install openssh-server): %w", Binary, err)
	}
	dir, err := filepath.Abs(opts.Dir)
	if err != nil {
		return nil, fmt.Errorf("sshd: %w", err)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("sshd: %w", err)
	}
	if os.Geteuid() == 0 {
		// sshd running as root chroots its unprivileged child here and
		// refuses to start without it.
		if err := os.MkdirAll("/run/sshd", 0o755); err != nil {
			return nil, fmt.Errorf("sshd: privilege separation directory: %w", err)
		}
	}
	ver, err := opensshVersion()
	if err != nil {
		return nil, err
	}
	if ver < 87 {
		return nil, fmt.Errorf("sshd: OpenSSH %d.%d is too old: SetEnv needs 8.7 or later", ver/10, ver%10)
	}

	hostPEM := opts.HostKeyPEM
	if hostPEM == nil {
		if hostPEM, err = generateHostKey(); err != nil {
			return nil, err
		}
	}
	signer, err := ssh.ParsePrivateKey(hostPEM)
	if err != nil {
		return nil, errors.New("sshd: HostKeyPEM is not a valid OpenSSH private key")
	}
	id := make([]byte, 16)
	if _, err := rand.Read(id); err != nil {
		return nil, fmt.Errorf("sshd: %w", err)
	}
	s := &Server{
		dir:     dir,
		hostPub: strings.TrimSpace(string(ssh.MarshalAuthorizedKey(signer.PublicKey()))),
		marker:  MarkerVar + "=" + hex.EncodeToString(id),
	}

	hostKeyFile := filepath.Join(dir, "ssh_host_key")
	if err := os.WriteFile(hostKeyFile, hostPEM, 0o600); err != nil {
		return nil, fmt.Errorf("sshd: %w", err)
	}
	authFile := filepath.Join(dir, "authorized_keys")
	var auth strings.Builder
	for _, k := range opts.AuthorizedKeys {
		k = strings.TrimSpace(k)
		if strings.ContainsAny(k, "\r\n") {
			return nil, errors.New("sshd: an authorized key spans several lines")
		}
		auth.WriteString(k + "\n")
	}
	if err := os.WriteFile(authFile, []byte(auth.String()), 0o600); err != nil {
		return nil, fmt.Errorf("sshd: %w", err)
	}
	setenv, err := setEnvLine(opts.Env, s.marker)
	if err != nil {
		return nil, err
	}

	logw := opts.LogWriter
	if logw == nil {
		logw = io.Discard
	}
	var lastErr error
	for range bindAttempts {
		port, err := pickPort()
		if err != nil {
			return nil, fmt.Errorf("sshd: picking a port: %w", err)
		}
		conf := config(dir, port, hostKeyFile, authFile, setenv, ver)
		confFile := filepath.Join(dir, "sshd_config")
		if err := os.WriteFile(confFile, []byte(conf), 0o600); err != nil {
			return nil, fmt.Errorf("sshd: %w", err)
		}
		err = s.start(confFile, port, logw)
		if err == nil {
			return s, nil
		}
		lastErr = err
		if !errors.Is(err, errBind) {
			return nil, err
		}
	}
	return nil, fmt.Errorf("sshd: no free port after %d attempts: %w", bindAttempts, lastErr)
}

var errBind = errors.New("could not bind")

// start runs sshd on one port and waits for it to listen. A port another
// process took in the meantime comes back as errBind.
func (s *Server) start(confFile string, port int, logw io.Writer) error {
	pidFile := filepath.Join(s.dir, "sshd.pid")
	_ = os.Remove(pidFile)
	tail := &tail.Buffer{Max: 8 << 10}
	cmd := exec.Command(Binary, "-D", "-e", "-f", confFile)
	cmd.Stdout = io.MultiWriter(logw, tail)
	cmd.Stderr = cmd.Stdout
	// Sessions inherit nothing from us through sshd, but a descendant may
	// keep its log pipe open; don't let that hold up Wait forever.
	cmd.WaitDelay = 2 * time.Second
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("sshd: %w", err)
	}
	done := make(chan struct{})
	go func() {
		_ = cmd.Wait()
		close(done)
	}()

	// The pid file is written after sshd has bound its port, so a
	// connection accepted before it exists may come from another process
	// that holds the port.
	want := strconv.Itoa(cmd.Process.Pid)
	deadline := time.Now().Add(startTimeout)
	for {
		select {
		case <-done:
			out := tail.String()
			if strings.Contains(out, "Bind to port") || strings.Contains(out, "Cannot bind any address") ||
				strings.Contains(out, "Address already in use") {
				return errBind
			}
			return fmt.Errorf("sshd exited at start: %s", strings.TrimSpace(out))
		default:
		}
		if b, err := os.ReadFile(pidFile); err == nil && strings.TrimSpace(string(b)) == want {
			c, err := net.DialTimeout("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)), time.Second)
			if err == nil {
				c.Close()
				s.cmd, s.done, s.port = cmd, done, port
				return nil
			}
		}
		if time.Now().After(deadline) {
			_ = cmd.Process.Kill()
			<-done
			return fmt.Errorf("sshd did not listen on port %d within %s: %s", port, startTimeout, strings.TrimSpace(tail.String()))
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// AddAuthorizedKey lets one more client key log in, as a cloud's "attach SSH
// key" call does on a running host. sshd reads the file at every login, so
// the key works at once. A key already there is not added twice.
func (s *Server) AddAuthorizedKey(key string) error {
	key = strings.TrimSpace(key)
	if key == "" || strings.ContainsAny(key, "\r\n") {
		return errors.New("sshd: an authorized key must be one non-empty line")
	}
	pub, _, _, _, err := ssh.ParseAuthorizedKey([]byte(key))
	if err != nil {
		return errors.New("sshd: not a public key in authorized_keys format")
	}
	s.authMu.Lock()
	defer s.authMu.Unlock()
	file := filepath.Join(s.dir, "authorized_keys")
	old, err := os.ReadFile(file)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("sshd: %w", err)
	}
	for _, line := range strings.Split(string(old), "\n") {
		if have, _, _, _, err := ssh.ParseAuthorizedKey([]byte(line)); err == nil && bytes.Equal(have.Marshal(), pub.Marshal()) {
			return nil
		}
	}
	if len(old) > 0 && !bytes.HasSuffix(old, []byte("\n")) {
		old = append(old, '\n')
	}
	// Written beside and renamed, so a login never reads half a file.
	tmp := file + ".tmp"
	if err := os.WriteFile(tmp, append(old, key+"\n"...), 0o600); err != nil {
		return fmt.Errorf("sshd: %w", err)
	}
	if err := os.Rename(tmp, file); err != nil {
		return fmt.Errorf("sshd: %w", err)
	}
	return nil
}

// Addr is the host:port sshd listens on.
func (s *Server) Addr() string { return net.JoinHostPort("127.0.0.1", strconv.Itoa(s.port)) }

// Port is the port sshd listens on.
func (s *Server) Port() int { return s.port }

// HostPublicKey is the server's host key in authorized_keys format.
func (s *Server) HostPublicKey() string { return s.hostPub }

// Pid is sshd's process id.
func (s *Server) Pid() int { return s.cmd.Process.Pid }

// Marker is the MarkerVar=value entry found in the environment of every
// process started through the server.
func (s *Server) Marker() string { return s.marker }

// Stop stops sshd and kills every process started through it: connection
// handlers, sessions and whatever they detached. It is safe to call more
// than once.
func (s *Server) Stop() error {
	s.stopOnce.Do(func() { s.stopErr = s.stop() })
	return s.stopErr
}

func (s *Server) stop() error {
	sshdPid := s.cmd.Process.Pid
	// Connection handlers carry no marker and are found as sshd's children,
	// so they are listed before sshd dies and they are reparented. Killing
	// the listener before them means no new session starts meanwhile.
	handlers := s.processes(sshdPid)
	_ = s.cmd.Process.Kill()
	<-s.done
	kill(handlers)

	deadline := time.Now().Add(stopTimeout)
	for {
		pids := s.processes(sshdPid)
		if len(pids) == 0 {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("sshd: processes still alive after %s: %v", stopTimeout, pids)
		}
		kill(pids)
		time.Sleep(20 * time.Millisecond)
	}
}

func kill(pids []int) {
	for _, pid := range pids {
		if p, err := os.FindProcess(pid); err == nil {
			_ = p.Kill()
		}
	}
}

// processes lists the live processes that came from this server: those with
// its marker in their environment, and the descendants of sshd while it
// runs (its connection handlers, which carry no marker).
func (s *Server) processes(sshdPid int) []int {
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return nil
	}
	self := os.Getpid()
	parent := map[int]int{}
	var found []int
	seen := map[int]bool{}
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == self {
			continue
		}
		ppid, state, ok := procStat(pid)
		if !ok || state == 'Z' || state == 'X' {
			continue
		}
		parent[pid] = ppid
		if hasMarker(pid, s.marker) {
			found = append(found, pid)
			seen[pid] = true
		}
	}
	for pid := range parent {
		if seen[pid] {
			continue
		}
		for p, hops := parent[pid], 0; p > 1 && hops < 64; p, hops = parent[p], hops+1 {
			if p == sshdPid {
				found = append(found, pid)
				break
			}
		}
	}
	sort.Ints(found)
	return found
}

// procStat reads a process's parent and state from /proc/<pid>/stat.
func procStat(pid int) (ppid int, state byte, ok bool) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0, 0, false
	}
	// The command name is in parentheses and may itself contain them.
	i := bytes.LastIndexByte(b, ')')
	if i < 0 || i+2 >= len(b) {
		return 0, 0, false
	}
	f := strings.Fields(string(b[i+2:]))
	if len(f) < 2 {
		return 0, 0, false
	}
	ppid, err = strconv.Atoi(f[1])
	if err != nil {
		return 0, 0, false
	}
	return ppid, f[0][0], true
}

func hasMarker(pid int, marker string) bool {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/environ")
	if err != nil {
		return false
	}
	for _, kv := range bytes.Split(b, []byte{0}) {
		if string(kv) == marker {
			return true
		}
	}
	return false
}

var envName = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)

// setEnvLine builds sshd's SetEnv directive. sshd accepts double-quoted
// values but has no escape for a quote inside one, so such values are
// refused rather than mangled.
func setEnvLine(env map[string]string, marker string) (string, error) {
	names := make([]string, 0, len(env))
	for k := range env {
		names = append(names, k)
	}
	sort.Strings(names)
	// Sessions run as the user running the tests, whose shell start-up
	// files may run pyenv's rehash (ours do): it waits up to a minute for
	// a lock that a session killed mid-rehash left behind, and every later
	// SSH session of every test stalled on it. A rented host has no such
	// files; a try at the lock without the wait keeps the developer's shell
	// out of the timings.
	parts := []string{marker, "PYENV_REHASH_TIMEOUT=0"}
	for _, k := range names {
		v := env[k]
		if !envName.MatchString(k) || k == MarkerVar {
			return "", fmt.Errorf("sshd: invalid environment variable name %q", k)
		}
		if strings.ContainsAny(v, "\"\\\r\n\x00") {
			return "", fmt.Errorf("sshd: value of %s contains a quote, backslash or line break", k)
		}
		parts = append(parts, k+"="+v)
	}
	for i, p := range parts {
		parts[i] = `"` + p + `"`
	}
	return "SetEnv " + strings.Join(parts, " "), nil
}

func config(dir string, port int, hostKey, authFile, setenv string, ver int) string {
	lines := []string{
		"# Written by crabbox-runner's internal/sshd for a loopback test host.",
		"ListenAddress 127.0.0.1",
		"Port " + strconv.Itoa(port),
		"HostKey " + hostKey,
		"PidFile " + filepath.Join(dir, "sshd.pid"),
		"AuthorizedKeysFile " + authFile,
		"StrictModes no",
		"UsePAM no",
		"PasswordAuthentication no",
		"KbdInteractiveAuthentication no",
		"PubkeyAuthentication yes",
		"PermitRootLogin prohibit-password",
		"PrintMotd no",
		"PrintLastLog no",
		"UseDNS no",
		"X11Forwarding no",
		"Subsystem sftp internal-sftp",
		// Parallel tests open many connections at once.
		"MaxStartups 200",
		"MaxSessions 50",
		"LogLevel VERBOSE",
		setenv,
	}
	if ver >= 98 {
		// 9.8 and later penalise addresses whose connections fail, which
		// would lock the loopback client out after a host key mismatch test.
		lines = append(lines, "PerSourcePenalties no")
	}
	return strings.Join(lines, "\n") + "\n"
}

var (
	versionOnce sync.Once
	versionNum  int
	versionErr  error
	versionRE   = regexp.MustCompile(`OpenSSH_(\d+)\.(\d+)`)
)

// opensshVersion returns sshd's version as major*10+minor (9.2 → 92). sshd
// prints it in its usage message, which every version has.
func opensshVersion() (int, error) {
	versionOnce.Do(func() {
		out, _ := exec.Command(Binary, "-V").CombinedOutput()
		m := versionRE.FindSubmatch(out)
		if m == nil {
			versionErr = fmt.Errorf("sshd: cannot tell the OpenSSH version from %q", strings.TrimSpace(string(out)))
			return
		}
		major, _ := strconv.Atoi(string(m[1]))
		minor, _ := strconv.Atoi(string(m[2]))
		versionNum = major*10 + minor
	})
	return versionNum, versionErr
}

func generateHostKey() ([]byte, error) {
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("sshd: %w", err)
	}
	block, err := ssh.MarshalPrivateKey(priv, "crabbox-sshd")
	if err != nil {
		return nil, fmt.Errorf("sshd: %w", err)
	}
	return pem.EncodeToMemory(block), nil
}
