package lambdatest

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/user"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/crabbox/crabbox-runner/internal/sshd"

	"github.com/crabbox/crabbox-runner/internal/fakegpu"
	"github.com/crabbox/crabbox-runner/internal/fakehost"
)

// instance is one launched instance and the sshd behind it.
type instance struct {
	api          wInstance
	typ          InstanceType
	behavior     Behavior
	hostKey      []byte   // from user_data's ssh_keys; nil: sshd makes one
	authorized   []string // ssh_authorized_keys plus the launch's key
	ud           userData // what cloud-init takes from user_data (cloudinit.go)
	bootcmd      *fakehost.Boot
	boot         *fakehost.Boot // runcmd
	srv          *sshd.Server
	stop         chan struct{} // closed to end the boot goroutine
	done         chan struct{} // closed when the boot goroutine ends
	stopOnce     sync.Once
	terminatedAt time.Time
	// vmLaunched: the instance's VM is up (its boot delay has passed),
	// though the host may still be booting; only then may it be
	// terminated.
	vmLaunched bool
	// launchedAt, reachableAt (active with its sshd up) and terminateAt
	// (the terminate asked for) are the instance's record (records.go).
	launchedAt, reachableAt, terminateAt time.Time
}

const maxUserData = 1_000_000

func (s *Server) launch(body []byte) answer {
	var req LaunchRequest
	if err := json.Unmarshal(body, &req); err != nil {
		return fail(http.StatusBadRequest, "global/invalid-parameters", "Invalid request data.", "")
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return fail(http.StatusBadRequest, "global/invalid-parameters", "The fake is closed.", "")
	}
	s.launches = append(s.launches, req)
	i := slices.IndexFunc(s.opts.InstanceTypes, func(t InstanceType) bool { return t.Name == req.InstanceTypeName })
	if i < 0 {
		return fail(http.StatusNotFound, "global/object-does-not-exist", "Instance type not found.", "List instance types with GET /instance-types.")
	}
	typ := s.opts.InstanceTypes[i]
	if len(req.SSHKeyNames) != 1 {
		return fail(http.StatusBadRequest, "global/invalid-parameters", "Exactly one SSH key must be specified.", "")
	}
	keyPub, found := s.keyNamed(req.SSHKeyNames[0])
	if !found {
		return fail(http.StatusNotFound, "global/object-does-not-exist", "SSH key not found.", "Add the key with POST /ssh-keys first.")
	}
	var imageID, imageFamily string
	if req.Image != nil {
		imageID, imageFamily = req.Image.ID, req.Image.Family
	}
	if !s.launchImageOK(imageID, imageFamily, req.RegionName, typ) {
		return fail(http.StatusNotFound, "global/object-does-not-exist", "Image not found.", "List images with GET /images.")
	}
	for _, fs := range req.FileSystemNames {
		r, ok := s.opts.FileSystems[fs]
		if !ok {
			return fail(http.StatusNotFound, "global/object-does-not-exist", "File system not found.", "Check the file system's name.")
		}
		if r != req.RegionName {
			return fail(http.StatusBadRequest, "instance-operations/launch/file-system-in-wrong-region",
				"File system is in a different region.", "Launch in the file system's region.")
		}
	}
	for _, fw := range req.FirewallRulesets {
		if r, ok := s.opts.FirewallRulesets[fw.ID]; !ok || r != req.RegionName {
			return fail(http.StatusBadRequest, "global/invalid-parameters", "Firewall ruleset not found in this region.", "")
		}
	}
	if len(req.UserData) > maxUserData {
		return fail(http.StatusBadRequest, "global/invalid-parameters", "User data exceeds 1MB.", "")
	}
	if s.noCapacity[typ.Name+"@"+req.RegionName] || !slices.Contains(s.capacity[typ.Name], req.RegionName) {
		return fail(http.StatusBadRequest, "instance-operations/launch/insufficient-capacity",
			"Not enough capacity to fulfill launch request.", "Try another region or instance type.")
	}

	s.seq++
	in := &instance{
		launchedAt: time.Now(),
		typ:        typ,
		stop:       make(chan struct{}),
		done:       make(chan struct{}),
		api: wInstance{
			ID:              newID(),
			Name:            req.Name,
			Status:          "booting",
			SSHKeyNames:     slices.Clone(req.SSHKeyNames),
			FileSystemNames: append([]string{}, req.FileSystemNames...),
			Region:          region(req.RegionName),
			InstanceType:    typ.wire(),
			Hostname:        req.Hostname,
			Actions:         actions("booting", false),
			Tags:            slices.Clone(req.Tags),
		},
	}
	in.api.FirewallRulesets = slices.Clone(req.FirewallRulesets)
	if s.opts.Behavior != nil {
		in.behavior = s.opts.Behavior(s.seq, req)
	}
	in.ud = s.cloudInit(req.UserData)
	in.hostKey, in.authorized = in.ud.hostKey, append(slices.Clone(in.ud.authorized), keyPub)
	seq := s.seq
	s.instances[in.api.ID] = in
	s.order = append(s.order, in.api.ID)
	go s.boot(in, seq)
	return ok(map[string]any{"instance_ids": []string{in.api.ID}})
}

// violationLocked is violation for callers holding s.mu.
func (s *Server) violationLocked(format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	s.violations = append(s.violations, msg)
	if !s.opts.AllowViolations {
		s.t.Errorf("lambdatest: %s", msg)
	}
}

// boot plays the instance's life: booting for the boot delay, then active
// with a running sshd, or the fault its Behavior asks for. user_data's
// bootcmd runs InitStageLead before the end of the boot delay (cloud-init's
// network stage, before sshd), and SSH waits for it to end, as the stage's
// unit does; runcmd runs once SSH is up (the final stage).
func (s *Server) boot(in *instance, seq int) {
	defer close(in.done)
	b := in.behavior
	delay := b.BootDelay
	if delay == 0 {
		delay = s.opts.BootDelay
	}
	var lead time.Duration
	if in.ud.bootcmd != "" {
		lead = min(max(b.InitStageLead, 0), delay)
	}
	if !s.sleep(in, delay-lead) {
		return
	}
	s.vmLaunched(in)
	if b.StuckBooting {
		// The VM runs but its system never comes up: booting for ever,
		// with terminate available.
		<-in.stop
		return
	}
	switch {
	case b.Unhealthy:
		s.setStatus(in, "unhealthy")
		return
	case b.Preempted:
		s.setStatus(in, "preempted")
		return
	}
	// sshd starts now but is reachable only once the instance is active
	// with an IP; its marker tags what bootcmd leaves behind, so that
	// stopHost ends it.
	srv, err := s.startHost(in)
	if err != nil {
		s.t.Logf("lambdatest: instance %s: sshd did not start: %v", in.api.ID, err)
		s.setStatus(in, "unhealthy")
		return
	}
	s.mu.Lock()
	// stopHost stops the server once this goroutine is done, whatever
	// happened meanwhile.
	in.srv = srv
	if in.api.Status != "booting" {
		s.mu.Unlock()
		return // terminated, or failed by SetStatus, while sshd started
	}
	if in.ud.bootcmd != "" {
		in.bootcmd = s.startStage(in, srv, "bootcmd", in.ud.bootcmd)
	}
	bootcmd := in.bootcmd
	s.mu.Unlock()
	if !s.sleep(in, lead) {
		return
	}
	if bootcmd != nil {
		select {
		case <-in.stop:
			return
		case <-bootcmd.Done():
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if in.api.Status != "booting" {
		return
	}
	in.api.Status = "active"
	in.reachableAt = time.Now()
	in.api.IP = fmt.Sprintf("127.77.%d.%d", seq/250, seq%250+1)
	in.api.PrivateIP = fmt.Sprintf("10.77.%d.%d", seq/250, seq%250+1)
	in.api.Actions = actions("active", true)
	in.jupyter()
	if in.ud.runcmd != "" {
		// The final stage: after sshd is up (it runs "as late in boot as
		// possible", cloud-init's boot stages docs), in the background
		// relative to SSH, which is already served; its package step
		// first.
		script := in.ud.runcmd
		if d := b.packageUpdateTime(); in.ud.packages && d > 0 {
			script = "sleep " + strconv.FormatFloat(d.Seconds(), 'f', 3, 64) + "\n" + script
		}
		in.boot = s.startStage(in, srv, "runcmd", script)
	}
}

// sleep waits d, or until the instance is stopped (false).
func (s *Server) sleep(in *instance, d time.Duration) bool {
	if d <= 0 {
		return true
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-in.stop:
		return false
	case <-t.C:
		return true
	}
}

// startStage starts a cloud-init script as cloud-init runs it: as root
// with root's HOME (the fake's host root). The sshd's marker lets stopHost
// end what it leaves behind. Called with s.mu held; nil if it did not
// start.
func (s *Server) startStage(in *instance, srv *sshd.Server, name, script string) *fakehost.Boot {
	root := s.HostRoot(in.api.ID)
	env := []string{"HOME=" + root, "CRABBOX_HOST_ROOT=" + root, srv.Marker(),
		"PATH=" + filepath.Join(s.Dir(in.api.ID), "bin") + ":/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"}
	b, err := fakehost.StartBoot(script, root, env)
	if err != nil {
		s.t.Logf("lambdatest: instance %s: %s did not start: %v", in.api.ID, name, err)
		return nil
	}
	return b
}

// RunCmdOutput is what the instance's runcmd printed so far, and whether
// it has ended.
func (s *Server) RunCmdOutput(id string) (string, bool) {
	s.mu.Lock()
	in, ok := s.instances[id]
	var b *fakehost.Boot
	if ok {
		b = in.boot
	}
	s.mu.Unlock()
	if b == nil {
		return "", false
	}
	select {
	case <-b.Done():
		return b.Output(), true
	default:
		return b.Output(), false
	}
}

func (s *Server) startHost(in *instance) (*sshd.Server, error) {
	dir := s.Dir(in.api.ID)
	for _, d := range []string{"bin", "root", "sshd"} {
		if err := os.MkdirAll(filepath.Join(dir, d), 0o700); err != nil {
			return nil, err
		}
	}
	if err := os.WriteFile(filepath.Join(dir, "bin", "nvidia-smi"), []byte(nvidiaSMI(in.typ, in.behavior)), 0o755); err != nil {
		return nil, err
	}
	// Lambda's GPU Base image is a full Ubuntu server install (with Lambda
	// Stack): Ubuntu's server images carry libicu (libxml2 depends on it),
	// libgssapi-krb5-2 (openssh-client depends on it), libssl3 and zlib1g,
	// so the runner's libraries are there unless Behavior.NoRunnerDeps.
	if err := os.WriteFile(filepath.Join(dir, "bin", "ldconfig"), []byte(fakehost.Ldconfig(!in.behavior.NoRunnerDeps)), 0o755); err != nil {
		return nil, err
	}
	if in.typ.Machine != "" {
		// The host looks like its type's architecture to whatever asks
		// uname -m (the host script, the runner).
		if err := os.WriteFile(filepath.Join(dir, "bin", "uname"), []byte(sshd.UnameShim(in.typ.Machine)), 0o755); err != nil {
			return nil, err
		}
	}
	logFile, err := os.OpenFile(filepath.Join(dir, "sshd", "sshd.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return nil, err
	}
	defer logFile.Close()
	return sshd.Start(sshd.Options{
		Dir:            filepath.Join(dir, "sshd"),
		HostKeyPEM:     in.hostKey,
		AuthorizedKeys: in.authorized,
		Env: map[string]string{
			"PATH":              filepath.Join(dir, "bin") + ":/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
			"CRABBOX_HOST_ROOT": filepath.Join(dir, "root"),
			// The VM's own home: its login shell reads no start files
			// of the user the tests run as.
			"HOME": filepath.Join(dir, "root"),
		},
		LogWriter: logFile,
	})
}

var gbRE = regexp.MustCompile(`(\d+)\s*GB`)

// nvidiaSMI is the host's nvidia-smi (internal/fakegpu): the type's GPUs
// named as the vendor does ("NVIDIA A100 SXM4" for "A100 (40 GB SXM4)"),
// with the nominal memory in MiB, or the behaviour's fault. Lambda does not
// say which driver its images carry: the fake's default (550.54.15, CUDA
// 12.4) stands for a current one.
func nvidiaSMI(t InstanceType, b Behavior) string {
	base, inner, _ := strings.Cut(t.GPUDescription, "(")
	mem := 80
	if m := gbRE.FindStringSubmatch(inner); m != nil {
		mem, _ = strconv.Atoi(m[1])
	}
	form := strings.TrimSpace(gbRE.ReplaceAllString(strings.TrimSuffix(strings.TrimSpace(inner), ")"), ""))
	st := fakegpu.State{Count: max(t.GPUs, 1), Name: fakegpu.NameFor(strings.TrimSpace(strings.TrimSpace(base) + " " + form)), MemMiB: mem * 1024}
	if b.BrokenGPU {
		st = st.With(fakegpu.NoDriver)
	}
	if b.GPUFault != "" {
		st = st.With(b.GPUFault)
	}
	return fakegpu.Script(st)
}

// actions is the availability of instance operations in a status, with
// the reason codes of the document's InstanceActionUnavailableCode. A
// booting instance whose VM has launched can be terminated, nothing else.
func actions(status string, vmLaunched bool) wActions {
	a := wAction{Available: true}
	switch status {
	case "booting":
		a = wAction{Available: false, ReasonCode: "vm-has-not-launched", ReasonDescription: "The instance has not launched yet."}
	case "terminating", "terminated":
		a = wAction{Available: false, ReasonCode: "vm-is-terminating", ReasonDescription: "The instance is terminating."}
	}
	out := wActions{Migrate: a, Rebuild: a, Restart: a, ColdReboot: a, Terminate: a}
	if status == "booting" && vmLaunched {
		out.Terminate = wAction{Available: true}
	}
	return out
}

func (s *Server) setStatus(in *instance, status string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	in.api.Status = status
	in.api.Actions = actions(status, in.vmLaunched)
	if status == "active" {
		in.jupyter()
	}
}

// jupyter fills the JupyterLab fields an active instance shows (wire.go).
func (in *instance) jupyter() {
	if in.api.JupyterToken == "" {
		in.api.JupyterToken = strings.ReplaceAll(newID(), "-", "")
		in.api.JupyterURL = "https://jupyter-" + strings.ReplaceAll(in.api.ID, "-", "") + ".lambdaspaces.com/?token=" + in.api.JupyterToken
	}
}

func (s *Server) vmLaunched(in *instance) {
	s.mu.Lock()
	defer s.mu.Unlock()
	in.vmLaunched = true
	in.api.Actions = actions(in.api.Status, true)
}

// SetStatus changes an instance's status, as Lambda does when a host fails
// ("unhealthy"), is taken back ("preempted") or is ended by Lambda or the
// account's console ("terminating", "terminated"): the InstanceStatus enum
// of lambda-openapi.json (1.8.3) has all of them; lambda-cloud-api.md §6.
// Any status but active and booting stops the instance's sshd, killing
// what runs on it (the runner): a preempted host does not go on serving.
func (s *Server) SetStatus(id, status string) error {
	s.mu.Lock()
	in, ok := s.instances[id]
	if !ok {
		s.mu.Unlock()
		return errors.New("lambdatest: no instance " + id)
	}
	in.api.Status = status
	in.api.Actions = actions(status, in.vmLaunched)
	s.mu.Unlock()
	if status != "active" && status != "booting" {
		s.stopHost(in)
	}
	return nil
}

// stopHost ends the boot goroutine and stops sshd, killing everything the
// host's sessions started. Concurrent and repeated calls all return once the
// host is stopped.
func (s *Server) stopHost(in *instance) {
	in.stopOnce.Do(func() {
		close(in.stop)
		<-in.done
		s.mu.Lock()
		srv, id := in.srv, in.api.ID
		in.srv = nil
		boots := []*fakehost.Boot{in.bootcmd, in.boot}
		s.mu.Unlock()
		for _, b := range boots {
			if b != nil {
				b.Stop()
			}
		}
		if srv != nil {
			if err := srv.Stop(); err != nil {
				s.t.Logf("lambdatest: instance %s: stopping sshd: %v", id, err)
			}
		}
		_ = os.RemoveAll(s.Dir(id))
	})
}

// visibleLocked reports whether the instance still shows in the API: a
// terminated one disappears after TerminatedTTL.
func (s *Server) visibleLocked(in *instance) bool {
	return in.terminatedAt.IsZero() || time.Since(in.terminatedAt) < s.opts.TerminatedTTL
}

func (s *Server) listInstances() answer {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := []wInstance{}
	for _, id := range s.order {
		if in := s.instances[id]; in != nil && s.visibleLocked(in) {
			out = append(out, in.api)
		}
	}
	return ok(out)
}

func (s *Server) getInstance(id string) answer {
	s.mu.Lock()
	defer s.mu.Unlock()
	in, ok2 := s.instances[id]
	if !ok2 || !s.visibleLocked(in) {
		return fail(http.StatusNotFound, "global/object-does-not-exist", "Specified instance does not exist.", "")
	}
	return ok(in.api)
}

// terminate answers at once with the instances "terminating"; their hosts
// stop in the background and they turn "terminated".
//
// An instance whose actions.terminate is not available is refused, and so
// is the whole request: one whose VM has not launched (reason
// vm-has-not-launched) and one already terminating (vm-is-terminating).
// The document declares no 400 for terminate and does not say what
// Lambda answers then; SkyPilot met the terminate of a terminating
// instance answered "global/unknown: An unknown error occurred."
// (skypilot-org/skypilot PR #3410, "[Lambda] Fix termination for
// lambda"). The fake gives that error as a 400, the answer a client can
// least take for "gone": it must look at the instance and try again.
func (s *Server) terminate(body []byte) answer {
	var req struct {
		InstanceIDs []string `json:"instance_ids"`
	}
	if err := json.Unmarshal(body, &req); err != nil {
		return fail(http.StatusBadRequest, "global/invalid-parameters", "Invalid request data.", "")
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	var ins []*instance
	for _, id := range req.InstanceIDs {
		in, ok := s.instances[id]
		if !ok || !s.visibleLocked(in) {
			return fail(http.StatusNotFound, "global/object-does-not-exist", "Specified instance does not exist.", "")
		}
		if !in.api.Actions.Terminate.Available && in.api.Status != "terminated" {
			return answer{status: http.StatusBadRequest, undocumented: true, err: &wError{Code: "global/unknown",
				Message: "An unknown error occurred.", Suggestion: "Instance " + id + ": " + in.api.Actions.Terminate.ReasonCode}}
		}
		ins = append(ins, in)
	}
	out := []wInstance{}
	for _, in := range ins {
		if in.api.Status != "terminated" {
			if in.terminateAt.IsZero() {
				in.terminateAt = time.Now()
			}
			in.api.Status = "terminating"
			in.api.Actions = actions("terminating", true)
			go func() {
				s.stopHost(in)
				s.mu.Lock()
				in.api.Status = "terminated"
				in.terminatedAt = time.Now()
				s.mu.Unlock()
			}()
		}
		out = append(out, in.api)
	}
	return ok(map[string]any{"terminated_instances": out})
}

// Live returns the ids of the instances not terminated, in launch order.
func (s *Server) Live() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []string
	for _, id := range s.order {
		if st := s.instances[id].api.Status; st != "terminated" {
			out = append(out, id)
		}
	}
	return out
}

// Status returns an instance's status, "" for an unknown one.
func (s *Server) Status(id string) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	if in, ok := s.instances[id]; ok {
		return in.api.Status
	}
	return ""
}

// Running reports whether the instance's sshd is up.
func (s *Server) Running(id string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	in, ok := s.instances[id]
	return ok && in.srv != nil
}

// SSHAddress maps an instance's IP to its sshd on 127.0.0.1; give it to
// lambda.Options.SSHAddress. An unknown IP maps to port 22 of itself.
func (s *Server) SSHAddress(ip string) (string, int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, in := range s.instances {
		if in.api.IP == ip && in.srv != nil {
			return "127.0.0.1", in.srv.Port()
		}
	}
	return ip, 22
}

// CurrentUser is the user the fake's hosts log in as: sshd runs as the
// test's user, so that is the ssh_user to configure.
func CurrentUser() string {
	u, err := user.Current()
	if err != nil {
		return "root"
	}
	return u.Username
}
