// Package lambdatest is a fake Lambda Cloud API for tests: an httptest
// server on 127.0.0.1 that follows Lambda's OpenAPI 1.8.3 document and
// checks every request it receives and every answer it sends against that
// document (see Validator). A request that breaks it gets Lambda's 400
// global/invalid-parameters answer and fails the test, so the client and
// the fake cannot drift away from Lambda together.
//
// Its instances are real: each launched instance becomes an OpenSSH sshd on
// loopback (internal/sshd) configured the way Lambda's cloud-init would
// configure the host from the launch's user_data (host key from ssh_keys,
// ssh_authorized_keys) plus the registered key named in ssh_key_names,
// with a fake nvidia-smi first on PATH and CRABBOX_HOST_ROOT as its file
// system, like providers/local. Terminating an instance stops its sshd and
// kills everything started through it.
//
// Faults: 429s and 5xx answers (FailNext), launches refused for capacity
// in regions that GET /instance-types still lists (NoCapacity), instances
// that stay booting, turn unhealthy or are preempted (Options.Behavior,
// SetStatus), and Lambda's own rate limits (Options.EnforceLimits).
//
// Lambda as it is: images per region and architecture (images.go; a
// launch with an image the region does not have for the type's
// architecture is a 404), terminate refused until the instance's VM has
// launched, and an SSH key that a live instance uses cannot be deleted.
package lambdatest

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/crabbox/crabbox-runner/internal/fakegpu"
)

// Options configure a Server.
type Options struct {
	// APIKey is the key the fake accepts; DefaultAPIKey when empty.
	APIKey string
	// InstanceTypes replace DefaultInstanceTypes.
	InstanceTypes []InstanceType
	// Images replace DefaultImages (see SetImages).
	Images []Image
	// Dir holds the instances' directories; a t.TempDir when empty.
	Dir string
	// BootDelay is how long an instance stays booting before its sshd
	// starts, unless its Behavior says otherwise.
	BootDelay time.Duration
	// TerminatedTTL is how long a terminated instance stays visible (status
	// terminated) before GET answers 404. Lambda does not document it.
	TerminatedTTL time.Duration
	// Behavior chooses the fault of the seq'th launched instance (from 1).
	Behavior func(seq int, req LaunchRequest) Behavior
	// FirewallRulesets maps the ruleset ids that exist to their region.
	FirewallRulesets map[string]string
	// FileSystems maps the file system names that exist to their region.
	FileSystems map[string]string
	// EnforceLimits makes the fake answer 429 to requests that come faster
	// than Lambda allows: GeneralInterval between any two requests,
	// LaunchInterval between launches. Requests closer than half the
	// interval are refused, to leave room for scheduling jitter.
	EnforceLimits   bool
	GeneralInterval time.Duration
	LaunchInterval  time.Duration
	// AllowViolations records requests and answers that break the OpenAPI
	// document without failing the test: for tests of the fake itself.
	AllowViolations bool
}

// Behavior is the fault injected into one instance.
type Behavior struct {
	BootDelay    time.Duration // overrides Options.BootDelay when set
	StuckBooting bool          // stays booting, never gets an IP
	Unhealthy    bool          // becomes unhealthy instead of active
	Preempted    bool          // becomes preempted instead of active
	BrokenGPU    bool          // nvidia-smi fails as with a missing driver
	// GPUFault boots a host whose GPUs are not what the type says, or are
	// broken (internal/fakegpu).
	GPUFault fakegpu.Fault
	// NoRunnerDeps: the image lacks the runner's libraries (its fake
	// ldconfig does not list them, internal/fakehost); Lambda's own image
	// has them.
	NoRunnerDeps bool
	// InitStageLead is how long before SSH is reachable (status active)
	// cloud-init's network stage runs user_data's bootcmd. The stage is
	// ordered before sshd (canonical/cloud-init,
	// systemd/cloud-init-network.service.tmpl: Before=sshd.service), but
	// nothing stored says by how much on Lambda: 0, the strict default,
	// runs it as SSH comes up. At most the boot delay.
	InitStageLead time.Duration
	// PackageUpdateTime is how long the final stage's package step
	// (package_update, package_upgrade, packages) holds up runcmd;
	// DefaultPackageUpdateTime when zero, none when negative
	// (cloudinit.go).
	PackageUpdateTime time.Duration
}

// DefaultAPIKey is the key a Server accepts when Options.APIKey is empty.
const DefaultAPIKey = "secret_lambdatest_0123456789abcdef0123456789abcdef"

// Request is one request the fake received, as it answered it.
type Request struct {
	Method   string
	Path     string
	Body     []byte
	Status   int
	Code     string // error code of the answer, if any
	Injected bool   // answered by an injected fault
	At       time.Time
}

// Fault is an answer given instead of the real one.
type Fault struct {
	Status     int
	Body       string // sent as is; may be empty or not JSON
	RetryAfter string // Retry-After header, if set
	// Path limits the fault to requests whose path contains it.
	Path string
	// Applied makes the request take effect before the fault is answered,
	// as when Lambda launches an instance but the answer is an error.
	Applied bool
}

// Server is a fake Lambda API.
type Server struct {
	t    testing.TB
	opts Options
	srv  *httptest.Server
	v    *Validator

	mu          sync.Mutex
	requests    []Request
	violations  []string
	faults      []Fault
	capacity    map[string][]string // type → regions with capacity
	noCapacity  map[string]bool     // "type@region" launches refused
	images      []Image
	keys        []*wSSHKey
	instances   map[string]*instance
	order       []string // instance ids in launch order
	launches    []LaunchRequest
	seq         int
	lastRequest time.Time
	lastLaunch  time.Time
	closed      bool
}

// New starts a fake Lambda and stops it, with every instance, when the test
// ends.
func New(t testing.TB, opts Options) *Server {
	t.Helper()
	v, err := NewValidator()
	if err != nil {
		t.Fatal(err)
	}
	if opts.APIKey == "" {
		opts.APIKey = DefaultAPIKey
	}
	if opts.InstanceTypes == nil {
		opts.InstanceTypes = DefaultInstanceTypes
	}
	if opts.Dir == "" {
		opts.Dir = t.TempDir()
	}
	if err := os.MkdirAll(opts.Dir, 0o700); err != nil {
		t.Fatal(err)
	}
	if opts.Images == nil {
		opts.Images = DefaultImages()
	}
	s := &Server{t: t, opts: opts, v: v, capacity: map[string][]string{}, noCapacity: map[string]bool{}, instances: map[string]*instance{},
		images: slices.Clone(opts.Images)}
	for _, it := range opts.InstanceTypes {
		s.capacity[it.Name] = slices.Clone(it.Regions)
		s.checkArchRegionsLocked(it.Name, it.Regions)
	}
	s.srv = httptest.NewServer(http.HandlerFunc(s.serve))
	t.Cleanup(s.Close)
	return s
}

// URL is the API base URL, as CRABBOX_LAMBDA_API_URL takes it.
func (s *Server) URL() string { return s.srv.URL }

// APIKey is the key the fake accepts.
func (s *Server) APIKey() string { return s.opts.APIKey }

// Close terminates every instance, stopping its sshd, and stops the server.
func (s *Server) Close() {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return
	}
	s.closed = true
	var all []*instance
	for _, in := range s.instances {
		all = append(all, in)
	}
	s.mu.Unlock()
	s.srv.Close()
	for _, in := range all {
		s.stopHost(in)
	}
}

// Requests returns every request received so far.
func (s *Server) Requests() []Request {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.requests)
}

// Violations returns every breach of the OpenAPI document seen so far.
func (s *Server) Violations() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.violations)
}

// Launches returns the body of every launch request that reached the
// launch logic (valid, authenticated, not refused by a fault).
func (s *Server) Launches() []LaunchRequest {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.launches)
}

// FailNext answers the next n requests matching f.Path with the fault.
func (s *Server) FailNext(n int, f Fault) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for range n {
		s.faults = append(s.faults, f)
	}
}

// ClearFaults drops the faults not yet given.
func (s *Server) ClearFaults() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.faults = nil
}

// SetCapacity sets the regions GET /instance-types lists as having capacity
// for the type.
func (s *Server) SetCapacity(typeName string, regions ...string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.capacity[typeName] = slices.Clone(regions)
	s.checkArchRegionsLocked(typeName, regions)
}

// NoCapacity makes launches of the type in the region fail with
// insufficient-capacity while GET /instance-types still lists the region,
// as Lambda's listing lags behind its capacity.
func (s *Server) NoCapacity(typeName, region string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.noCapacity[typeName+"@"+region] = true
}

func (s *Server) violation(format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	s.mu.Lock()
	s.violations = append(s.violations, msg)
	s.mu.Unlock()
	if !s.opts.AllowViolations {
		s.t.Errorf("lambdatest: %s", msg)
	}
}

// maxRequestBody is above the 1 MB user-data limit plus the rest of a launch.
const maxRequestBody = 2 << 20

// answer is what a handler returns: data for a 2xx, or an error envelope.
type answer struct {
	status int
	data   any
	err    *wError
	// undocumented: an answer the document has no response for, given
	// where the document is silent and evidence shows Lambda gives one;
	// not checked against the document.
	undocumented bool
}

func ok(data any) answer { return answer{status: http.StatusOK, data: data} }

func fail(status int, code, message, suggestion string) answer {
	return answer{status: status, err: &wError{Code: code, Message: message, Suggestion: suggestion}}
}

func (s *Server) serve(w http.ResponseWriter, r *http.Request) {
	arrived := time.Now()
	body, err := io.ReadAll(io.LimitReader(r.Body, maxRequestBody+1))
	if err != nil || len(body) > maxRequestBody {
		http.Error(w, "request too large", http.StatusRequestEntityTooLarge)
		return
	}
	rec := Request{Method: r.Method, Path: r.URL.Path, Body: body, At: arrived}
	defer func() {
		s.mu.Lock()
		s.requests = append(s.requests, rec)
		s.mu.Unlock()
	}()

	problems := s.v.ValidateRequest(r, body)
	for _, p := range problems {
		s.violation("%s %s: request %s", r.Method, r.URL.Path, p)
	}
	if f, ok := s.takeFault(r); ok {
		if f.Applied && len(problems) == 0 && s.authorized(r.Header.Get("Authorization")) {
			s.route(r, body)
		}
		rec.Status, rec.Injected = f.Status, true
		if f.RetryAfter != "" {
			w.Header().Set("Retry-After", f.RetryAfter)
		}
		if f.Body != "" {
			w.Header().Set("Content-Type", "application/json")
		}
		w.WriteHeader(f.Status)
		io.WriteString(w, f.Body)
		return
	}
	var a answer
	switch {
	case !s.authorized(r.Header.Get("Authorization")):
		a = fail(http.StatusUnauthorized, "global/invalid-api-key", "API key was invalid, expired, or deleted.",
			"Check your API key or create a new one, then try again.")
	case len(problems) > 0:
		a = fail(http.StatusBadRequest, "global/invalid-parameters", "Invalid request data.", problems[0])
	case s.opts.EnforceLimits && s.tooFast(r, arrived):
		rec.Status, rec.Injected = http.StatusTooManyRequests, true
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusTooManyRequests)
		io.WriteString(w, `{"error":{"code":"global/too-many-requests","message":"Too many requests"}}`)
		return
	default:
		a = s.route(r, body)
	}
	rec.Status = a.status
	var out []byte
	if a.err != nil {
		rec.Code = a.err.Code
		out, _ = json.Marshal(map[string]any{"error": a.err})
	} else {
		out, _ = json.Marshal(map[string]any{"data": a.data})
	}
	h := http.Header{"Content-Type": {"application/json"}}
	// An answer to a request that broke the document is not checked: the
	// document has no answer for it (GET operations declare no 400).
	if len(problems) == 0 && !a.undocumented {
		for _, p := range s.v.ValidateResponse(r, a.status, h, out) {
			s.violation("%s %s: answer %d %s", r.Method, r.URL.Path, a.status, p)
		}
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(a.status)
	w.Write(out)
}

func (s *Server) takeFault(r *http.Request) (Fault, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for i, f := range s.faults {
		if f.Path == "" || strings.Contains(r.URL.Path, f.Path) {
			s.faults = slices.Delete(s.faults, i, i+1)
			return f, true
		}
	}
	return Fault{}, false
}

// authorized accepts what Lambda's document allows: Bearer <key>, Basic
// base64(<key>:) and Basic <key>.
func (s *Server) authorized(h string) bool {
	scheme, cred, _ := strings.Cut(h, " ")
	switch strings.ToLower(scheme) {
	case "bearer":
		return cred == s.opts.APIKey
	case "basic":
		if cred == s.opts.APIKey {
			return true
		}
		dec, err := base64.StdEncoding.DecodeString(cred)
		return err == nil && string(dec) == s.opts.APIKey+":"
	}
	return false
}

// tooFast applies Lambda's documented limits to a request that arrived at
// now.
func (s *Server) tooFast(r *http.Request, now time.Time) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	launch := r.URL.Path == "/api/v1/instance-operations/launch"
	if !s.lastRequest.IsZero() && now.Sub(s.lastRequest) < s.opts.GeneralInterval/2 {
		return true
	}
	if launch && !s.lastLaunch.IsZero() && now.Sub(s.lastLaunch) < s.opts.LaunchInterval/2 {
		return true
	}
	s.lastRequest = now
	if launch {
		s.lastLaunch = now
	}
	return false
}

var (
	sshKeyPath   = regexp.MustCompile(`^/api/v1/ssh-keys/([^/]+)$`)
	instancePath = regexp.MustCompile(`^/api/v1/instances/([^/]+)$`)
)

func (s *Server) route(r *http.Request, body []byte) answer {
	p := r.URL.Path
	switch {
	case r.Method == http.MethodGet && p == "/api/v1/instance-types":
		return s.listInstanceTypes()
	case r.Method == http.MethodGet && p == "/api/v1/images":
		return s.listImages()
	case r.Method == http.MethodGet && p == "/api/v1/ssh-keys":
		return s.listKeys()
	case r.Method == http.MethodPost && p == "/api/v1/ssh-keys":
		return s.addKey(body)
	case r.Method == http.MethodDelete && sshKeyPath.MatchString(p):
		return s.deleteKey(sshKeyPath.FindStringSubmatch(p)[1])
	case r.Method == http.MethodPost && p == "/api/v1/instance-operations/launch":
		return s.launch(body)
	case r.Method == http.MethodGet && p == "/api/v1/instances":
		return s.listInstances()
	case r.Method == http.MethodGet && instancePath.MatchString(p):
		return s.getInstance(instancePath.FindStringSubmatch(p)[1])
	case r.Method == http.MethodPost && p == "/api/v1/instance-operations/terminate":
		return s.terminate(body)
	}
	s.violation("%s %s: the fake does not implement this operation", r.Method, p)
	return fail(http.StatusNotFound, "global/object-does-not-exist", "Not found.", "")
}

func (s *Server) listInstanceTypes() answer {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := map[string]wInstanceTypesItem{}
	for _, it := range s.opts.InstanceTypes {
		regions := []wRegion{}
		for _, r := range s.capacity[it.Name] {
			regions = append(regions, region(r))
		}
		out[it.Name] = wInstanceTypesItem{InstanceType: it.wire(), Regions: regions}
	}
	return ok(out)
}

// Dir is where the fake keeps instance id's files; its root/ is the host's
// CRABBOX_HOST_ROOT.
func (s *Server) Dir(id string) string { return filepath.Join(s.opts.Dir, id) }

// HostRoot is the directory an instance's sessions see as CRABBOX_HOST_ROOT.
func (s *Server) HostRoot(id string) string { return filepath.Join(s.Dir(id), "root") }

// payload is a short form of a value for messages.
func payload(v any) string {
	b, _ := json.Marshal(v)
	if len(b) > 200 {
		b = append(b[:200], "…"...)
	}
	return string(bytes.TrimSpace(b))
}
