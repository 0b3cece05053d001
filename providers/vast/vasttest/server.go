// Package vasttest is a fake Vast.ai API for tests: an httptest server on
// 127.0.0.1 that follows reference/vast-api.md field by field and is strict
// where the real service is loose or undocumented, so that a client which
// passes here sends what Vast expects: GPU names with spaces, memory in MB,
// env as an object, known operators only, the Bearer key.
//
// Its instances are real: each one that boots is an OpenSSH sshd on
// loopback (internal/sshd) with its own host key, a fake nvidia-smi on PATH
// and CRABBOX_HOST_ROOT as its file system root, reachable directly (the
// port mapped to 22/tcp) and through a proxy port (ssh_host:ssh_port).
// Attaching an SSH key adds it to that sshd's authorized keys; destroying
// the instance stops the sshd and kills everything started through it.
//
// Faults are injected per call (429 and 5xx bursts in Vast's various body
// styles, answers that follow a call that did take effect) and per host
// (never boots, exits, OCI runtime error, broken GPU), and offers can vanish
// between search and create. Every request is recorded.
package vasttest

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/crabbox/crabbox-runner/internal/fakegpu"
)

// DefaultAPIKey is the key the server accepts when Options.APIKey is empty.
const DefaultAPIKey = "vast-test-key-0123456789abcdef"

// Options configure a Server.
type Options struct {
	// APIKey is the Bearer key every request must carry.
	APIKey string
	// Dir holds one directory per booted instance. Required.
	Dir string
	// Offers is the market; DefaultOffers when nil.
	Offers []Offer
	// LoadingAfter is how long a new instance's actual_status stays null;
	// RunningAfter how long it then stays "loading". Defaults 20ms, 50ms.
	LoadingAfter time.Duration
	RunningAfter time.Duration
	// Behavior decides the fate of the seq'th created instance (from 1),
	// created from offer with the create request's label (what names the
	// lease: "label" is an optional request field, vast-openapi.yaml
	// createInstance), "" when the request had none. A test that pairs
	// draws across runs keys them on the label, not on seq.
	Behavior func(seq int, offer Offer, label string) Behavior
	// GoneAs404 answers GET of a destroyed instance with 404 rather than
	// {"instances": null}; Vast is said to do either.
	GoneAs404 bool
	// RelistAfter keeps a destroyed instance's offer off the market this
	// long, as Vast's machines take a while to be listed again after a
	// contract ends; at once when zero.
	RelistAfter time.Duration
	// MinInterval, when set, answers 429 to a call that follows the
	// previous call to the same endpoint sooner than this, as Vast does.
	MinInterval time.Duration
	// RateLimits sets the interval per endpoint (DocumentedLimits gives
	// Vast's), over MinInterval.
	RateLimits map[Op]time.Duration
	// CreateDelay, when set, holds the answer of the n'th create (from 1,
	// counting the calls that reached the create handler) this long after
	// the create took effect.
	CreateDelay func(n int) time.Duration
	// LoseCreate, when it says so, makes the n'th create take effect and
	// never answer: the connection hangs until the client gives up.
	LoseCreate func(n int) bool
	// ListLag leaves an instance out of GET /api/v1/instances/ (the
	// listing gc reads) until this long after its create, while GET
	// /api/v0/instances/{id}/ shows it at once. Neither the reference (vast-api.md) nor vast-cli
	// says how soon a new instance is listed; a listing served from a
	// replica or a cache would lag, and that is the stricter case for a
	// client that judges hosts gone from it. Zero: listed at once.
	ListLag time.Duration
	// AttachAnyTime accepts SSH keys before the container runs. By
	// default the fake refuses them until then (see handleAttach); tests
	// about something else may opt out.
	AttachAnyTime bool
	// Logf receives one line per event (t.Logf).
	Logf func(format string, args ...any)
}

// Behavior is what happens to one instance.
type Behavior struct {
	NeverBoot bool // stays "loading" forever
	// FailStatus ("exited", "offline", "unknown") replaces "running" when
	// the instance would start.
	FailStatus string
	OCIError   bool // stays "created" with an OCI runtime error in status_msg
	BrokenGPU  bool // boots, but nvidia-smi fails as with a missing driver
	// GPUFault boots a host whose GPUs are not what the offer says, or
	// are broken (internal/fakegpu).
	GPUFault fakegpu.Fault
	// BootAfter, when set, is this instance's whole boot, create to
	// "running" with SSH, replacing Options.LoadingAfter and RunningAfter
	// (the time-to-runner benchmark draws it per instance, records.go).
	// Vast gives no split between the two: the first tenth is null (the
	// container being created), the rest "loading" (the image pull, which
	// is most of a Vast boot: "null → loading → running in 1–5 min (image
	// size dependent)", reference vast-api.md §6).
	BootAfter time.Duration
	// SSHAt ("host:port"), when set, is the SSH endpoint the running
	// instance reports, as ssh_host/ssh_port and as public_ipaddr with its
	// 22/tcp port, instead of the fake's proxy and sshd: a machine whose
	// operator points its answer elsewhere. Direct SSH dials public_ipaddr
	// and ports["22/tcp"] as the instance reports them (vast-cli's ssh-url;
	// /work/shared/reference/vast-api.md, "How to connect"): the machine's
	// own network decides that address, and no document says Vast checks it.
	SSHAt string
	// RunnerDeps: the instance's image has the runner's libraries (its
	// fake ldconfig lists them, internal/fakehost); without, the usual
	// CUDA image's case, bootstrap installs them.
	RunnerDeps bool
	// ImageRunner: the instance's image carries this runner release
	// (a .tar.gz, e.g. githubtest.RunnerTarball's) unpacked at
	// ImageRunnerPath (default /opt/actions-runner, as
	// examples/images/cuda-runner/Dockerfile does; GitHub's own runner
	// image has it in /home/runner, actions/runner images/Dockerfile).
	// The image's file system is a directory of the fake host's, named
	// to its sessions and onstart by CRABBOX_IMAGE_FS (internal/fakehost).
	ImageRunner     []byte
	ImageRunnerPath string
}

// OCIMessage is the status_msg of an instance whose container cannot start.
const OCIMessage = "Error response from daemon: failed to create task for container: failed to create shim task: " +
	"OCI runtime create failed: runc create failed: unable to start container process: error during container init: " +
	"nvidia-container-cli: requirement error: unsatisfied condition: cuda>=12.4, please update your driver to a newer version"

// Op names a kind of API call, for faults and request records.
type Op string

// The calls the fake serves.
const (
	OpSearch  Op = "search"  // POST /api/v0/bundles/
	OpCreate  Op = "create"  // PUT /api/v0/asks/{id}/
	OpShow    Op = "show"    // GET /api/v0/instances/{id}/
	OpManage  Op = "manage"  // PUT /api/v0/instances/{id}/ (label, state)
	OpDestroy Op = "destroy" // DELETE /api/v0/instances/{id}/
	OpAttach  Op = "attach"  // POST /api/v0/instances/{id}/ssh/
	OpList    Op = "list"    // GET /api/v1/instances/
)

// Fault is one injected answer.
type Fault struct {
	Status      int
	Body        string
	ContentType string // text/plain when empty
	// Apply makes the call take effect before the fault is answered, as
	// when a server fails after it has acted (a create that did create).
	Apply bool
}

// Ready-made faults in the body styles Vast uses.
var (
	TooFrequent     = Fault{Status: 429, Body: "API requests too frequent endpoint threshold=4.5"}
	TooFrequentJSON = Fault{Status: 429, Body: `{"detail": "API requests too frequent endpoint threshold=2.0"}`, ContentType: "application/json"}
	RateLimited     = Fault{Status: 429, Body: `{"success": false, "error": "rate_limit_exceeded", "msg": "API requests too frequent endpoint threshold=3.0"}`, ContentType: "application/json"}
	InternalError   = Fault{Status: 500, Body: `{"success": false, "error": "server_error", "msg": "Internal error"}`, ContentType: "application/json"}
	BadGateway      = Fault{Status: 502, Body: "<html><body><h1>502 Bad Gateway</h1></body></html>", ContentType: "text/html"}
	Unavailable     = Fault{Status: 503, Body: "Service Temporarily Unavailable"}
)

// Request is one recorded API call.
type Request struct {
	Op     Op // "" for an unknown path
	Method string
	Path   string
	Query  string
	Body   []byte
	// Authorized: the request carried the right Bearer key.
	Authorized bool
	Status     int
	At         time.Time
}

// Server is a running fake. Its methods are safe for concurrent use.
type Server struct {
	opts Options
	srv  *httptest.Server

	mu     sync.Mutex
	market []Offer
	// rented maps an offer id to the time it is rentable again: far in
	// the future while an instance holds it, RelistAfter past its destroy.
	rented     map[int64]time.Time
	vanish     map[int64]int // offer id → status of its next create
	faults     map[Op][]Fault
	limits     map[limitKey]time.Time
	limited429 int
	creates    int
	quit       chan struct{}
	requests   []Request
	instances  map[int64]*instance
	seq        int
	nextID     int64
	closed     bool
}

// New starts a fake on 127.0.0.1.
func New(opts Options) *Server {
	if opts.APIKey == "" {
		opts.APIKey = DefaultAPIKey
	}
	if opts.Dir == "" {
		panic("vasttest: Options.Dir is required")
	}
	if opts.Offers == nil {
		opts.Offers = DefaultOffers
	}
	if opts.LoadingAfter <= 0 {
		opts.LoadingAfter = 20 * time.Millisecond
	}
	if opts.RunningAfter <= 0 {
		opts.RunningAfter = 50 * time.Millisecond
	}
	s := &Server{
		opts:      opts,
		market:    append([]Offer(nil), opts.Offers...),
		rented:    map[int64]time.Time{},
		vanish:    map[int64]int{},
		faults:    map[Op][]Fault{},
		limits:    map[limitKey]time.Time{},
		quit:      make(chan struct{}),
		instances: map[int64]*instance{},
		nextID:    20000001,
	}
	s.srv = httptest.NewServer(http.HandlerFunc(s.serve))
	return s
}

// URL is the API base (CRABBOX_VAST_API_URL).
func (s *Server) URL() string { return s.srv.URL }

// APIKey is the key the server accepts.
func (s *Server) APIKey() string { return s.opts.APIKey }

// Close destroys every instance and stops the server.
func (s *Server) Close() {
	s.mu.Lock()
	if !s.closed {
		close(s.quit) // answers held back (lost creates) end now
	}
	s.closed = true
	var live []*instance
	for _, in := range s.instances {
		if !in.destroyed {
			live = append(live, in)
		}
	}
	s.mu.Unlock()
	for _, in := range live {
		s.destroy(in)
	}
	s.srv.Close()
}

// FailNext makes the next calls of the kind answer these faults, one each.
func (s *Server) FailNext(op Op, faults ...Fault) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.faults[op] = append(s.faults[op], faults...)
}

// Vanish makes the offer disappear between search and create: it is still
// found by searches until the next create on it, which answers status
// (404 or 410, no_such_ask); then it is gone from the market.
func (s *Server) Vanish(offerID int64, status int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.vanish[offerID] = status
}

// isRented reports whether the offer is taken; s.mu is held.
func (s *Server) isRented(offerID int64) bool {
	until, ok := s.rented[offerID]
	if ok && !time.Now().Before(until) {
		delete(s.rented, offerID)
		return false
	}
	return ok
}

// Requests returns every request so far, in order.
func (s *Server) Requests() []Request {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]Request, len(s.requests))
	copy(out, s.requests)
	return out
}

// RequestsFor returns the requests of one kind.
func (s *Server) RequestsFor(op Op) []Request {
	var out []Request
	for _, r := range s.Requests() {
		if r.Op == op {
			out = append(out, r)
		}
	}
	return out
}

func (s *Server) logf(format string, args ...any) {
	if s.opts.Logf != nil {
		s.opts.Logf("vasttest: "+format, args...)
	}
}

var (
	reAsk      = regexp.MustCompile(`^/api/v0/asks/([0-9]+)$`)
	reInstance = regexp.MustCompile(`^/api/v0/instances/([0-9]+)$`)
	reSSH      = regexp.MustCompile(`^/api/v0/instances/([0-9]+)/ssh$`)
)

// route names the call; paths are accepted with and without the trailing
// slash, as Vast does. allowed is the method the path takes.
func route(method, path string) (op Op, id int64, ok bool) {
	p := strings.TrimSuffix(path, "/")
	num := func(re *regexp.Regexp) (int64, bool) {
		m := re.FindStringSubmatch(p)
		if m == nil {
			return 0, false
		}
		n, err := strconv.ParseInt(m[1], 10, 64)
		return n, err == nil
	}
	switch {
	case p == "/api/v0/bundles":
		return OpSearch, 0, method == http.MethodPost
	case p == "/api/v1/instances":
		return OpList, 0, method == http.MethodGet
	}
	if n, ok := num(reAsk); ok {
		return OpCreate, n, method == http.MethodPut
	}
	if n, ok := num(reSSH); ok {
		return OpAttach, n, method == http.MethodPost
	}
	if n, ok := num(reInstance); ok {
		switch method {
		case http.MethodGet:
			return OpShow, n, true
		case http.MethodPut:
			return OpManage, n, true
		case http.MethodDelete:
			return OpDestroy, n, true
		}
		return OpShow, n, false
	}
	return "", 0, false
}

func (s *Server) serve(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(io.LimitReader(r.Body, 1<<20))
	op, id, methodOK := route(r.Method, r.URL.Path)
	rec := Request{Op: op, Method: r.Method, Path: r.URL.Path, Query: r.URL.RawQuery, Body: body,
		Authorized: r.Header.Get("Authorization") == "Bearer "+s.opts.APIKey, At: time.Now()}
	status := s.handle(w, r, rec, id, methodOK)
	rec.Status = status
	s.mu.Lock()
	s.requests = append(s.requests, rec)
	s.mu.Unlock()
}

func (s *Server) handle(w http.ResponseWriter, r *http.Request, rec Request, id int64, methodOK bool) int {
	switch {
	case rec.Op == "":
		return write(w, &apiErr{status: 404, body: "<h1>Not Found</h1>", contentType: "text/html"})
	case !methodOK:
		return write(w, &apiErr{status: 405, body: "Method Not Allowed"})
	case !rec.Authorized:
		if rec.Op == OpSearch {
			// The spec documents this odd answer for a bad key on search.
			return write(w, jsonErr(404, map[string]any{"msg": "Invalid user key"}))
		}
		return write(w, jsonErr(401, map[string]any{"success": false, "error": "auth_error", "msg": "Invalid user key"}))
	}

	s.mu.Lock()
	if status, limited := s.limited(w, r, rec); limited {
		s.mu.Unlock()
		return status
	}
	var fault *Fault
	if q := s.faults[rec.Op]; len(q) > 0 {
		fault, s.faults[rec.Op] = &q[0], q[1:]
	}
	s.mu.Unlock()
	if fault != nil && !fault.Apply {
		s.logf("%s %s: injected %d", rec.Method, rec.Path, fault.Status)
		return write(w, &apiErr{status: fault.Status, body: fault.Body, contentType: fault.ContentType})
	}

	var status int
	rw := w
	if fault != nil {
		rw = discard{} // the call takes effect; its answer is replaced
	}
	switch rec.Op {
	case OpSearch:
		status = s.handleSearch(rw, rec.Body)
	case OpCreate:
		if fault != nil || (s.opts.CreateDelay == nil && s.opts.LoseCreate == nil) {
			status = s.handleCreate(rw, id, rec.Body)
			break
		}
		s.mu.Lock()
		s.creates++
		n := s.creates
		s.mu.Unlock()
		held := httptest.NewRecorder()
		s.handleCreate(held, id, rec.Body)
		return s.createAnswer(w, r, held, n)
	case OpShow:
		status = s.handleShow(rw, id)
	case OpManage:
		status = s.handleManage(rw, id, rec.Body)
	case OpDestroy:
		status = s.handleDestroy(rw, id, rec.Body)
	case OpAttach:
		status = s.handleAttach(rw, id, rec.Body)
	case OpList:
		status = s.handleList(rw, r)
	}
	if fault != nil {
		s.logf("%s %s: took effect (%d), answering injected %d", rec.Method, rec.Path, status, fault.Status)
		return write(w, &apiErr{status: fault.Status, body: fault.Body, contentType: fault.ContentType})
	}
	return status
}

type discard struct{}

func (discard) Header() http.Header         { return http.Header{} }
func (discard) Write(b []byte) (int, error) { return len(b), nil }
func (discard) WriteHeader(int)             {}

func write(w http.ResponseWriter, e *apiErr) int {
	ct := e.contentType
	if ct == "" {
		ct = "text/plain; charset=utf-8"
	}
	w.Header().Set("Content-Type", ct)
	w.WriteHeader(e.status)
	io.WriteString(w, e.body)
	return e.status
}

func writeJSON(w http.ResponseWriter, v any) int {
	b, err := json.Marshal(v)
	if err != nil {
		return write(w, jsonErr(500, map[string]any{"success": false, "error": "server_error", "msg": err.Error()}))
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusOK)
	w.Write(b)
	return http.StatusOK
}

func (s *Server) handleSearch(w http.ResponseWriter, body []byte) int {
	req, e := parseSearch(body)
	if e != nil {
		return write(w, e)
	}
	s.mu.Lock()
	rows := search(req, s.market, s.isRented)
	s.mu.Unlock()
	if rows == nil {
		rows = []map[string]any{}
	}
	return writeJSON(w, map[string]any{"offers": rows})
}
