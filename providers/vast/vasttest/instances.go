package vasttest

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"golang.org/x/crypto/ssh"
)

// instance is one rented contract.
type instance struct {
	id       int64
	seq      int
	offer    Offer
	behavior Behavior
	params   createBody
	runtype  string
	direct   bool
	disk     float64
	created  time.Time

	status    string // actual_status; "" is null
	statusMsg string
	intended  string
	curState  string
	label     string
	keys      []string

	host      *host // set once booted
	stop      chan struct{}
	done      chan struct{}
	destroyed bool

	onstartOut string
	onstartErr string

	// reachableAt is when the instance became running with SSH details,
	// destroyedAt when its destroy was asked for (records.go).
	reachableAt, destroyedAt time.Time
}

// Instance is a snapshot of one fake instance, for assertions.
type Instance struct {
	ID, OfferID, MachineID int64
	Label                  string
	Image                  string
	RunType                string
	Direct                 bool
	Disk                   float64
	OnStart                string
	Status                 string // actual_status, "" for null
	StatusMsg              string
	Keys                   []string // attached public keys
	SSHPort                int      // sshd's port once booted (direct)
	ProxyPort              int      // the proxy's port once booted
	HostRoot               string   // CRABBOX_HOST_ROOT of the host
	HostKey                string   // the sshd's host public key
	OnStartOutput          string
	OnStartError           string
	Destroyed              bool
}

func (in *instance) snapshot() Instance {
	out := Instance{
		ID: in.id, OfferID: in.offer.ID, MachineID: in.offer.MachineID, Label: in.label,
		Image: in.params.Image, RunType: in.runtype, Direct: in.direct, Disk: in.disk,
		Status: in.status, StatusMsg: in.statusMsg, Keys: append([]string(nil), in.keys...),
		OnStartOutput: in.onstartOut, OnStartError: in.onstartErr, Destroyed: in.destroyed,
	}
	if in.params.OnStart != nil {
		out.OnStart = *in.params.OnStart
	}
	if in.host != nil {
		out.SSHPort = in.host.srv.Port()
		out.ProxyPort = in.host.proxy.port()
		out.HostRoot = in.host.root()
		out.HostKey = in.host.srv.HostPublicKey()
	}
	return out
}

// Instances returns every instance ever created, destroyed ones included,
// in creation order.
func (s *Server) Instances() []Instance {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []Instance
	for _, in := range s.sorted() {
		out = append(out, in.snapshot())
	}
	return out
}

// Live returns the instances not destroyed, in creation order.
func (s *Server) Live() []Instance {
	var out []Instance
	for _, in := range s.Instances() {
		if !in.Destroyed {
			out = append(out, in)
		}
	}
	return out
}

// Instance returns one instance's snapshot.
func (s *Server) Instance(id int64) (Instance, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	in, ok := s.instances[id]
	if !ok {
		return Instance{}, false
	}
	return in.snapshot(), true
}

// Outbid stops an interruptible instance as a higher bid (or an on-demand
// rental of the same GPUs) does: "your instance will be stopped. Stopping
// an instance kills the running processes" (vast-ai/docs
// instances/rental-types.mdx); "When outbid, the instance moves to
// `stopped` (not destroyed) and storage charges continue" (vast-ai/vast-cli
// vastai/SKILL.md). actual_status and cur_state say stopped, intended_status
// stays running (the renter still wants it: it resumes when its priority
// returns), status_msg is left null (its text is not documented), SSH
// details go, and the host's processes (the runner) die with its sshd.
// It returns false for an instance that is not a running bid.
func (s *Server) Outbid(id int64) bool {
	s.mu.Lock()
	in, ok := s.live(id)
	if !ok || in.params.Price == nil || in.status != "running" {
		s.mu.Unlock()
		return false
	}
	in.status, in.curState, in.statusMsg = "stopped", "stopped", ""
	h := in.host
	in.host = nil
	s.mu.Unlock()
	if h != nil {
		if err := h.close(); err != nil {
			s.logf("instance %d: stopping host: %v", id, err)
		}
	}
	s.logf("instance %d outbid: stopped", id)
	return true
}

// Crash kills a running instance's host (its sshd, the runner with it)
// and leaves its status as it was: a machine that dies says nothing, and
// Vast marks it unknown only once its daemon's heartbeat lapses
// (vast-api.md §6: unknown is "no recent heartbeat from host"; the lapse
// is not documented, so the fake never gets there by itself: SetStatus
// does). It returns false for an instance that is not running.
func (s *Server) Crash(id int64) bool {
	s.mu.Lock()
	in, ok := s.live(id)
	if !ok || in.status != "running" || in.host == nil {
		s.mu.Unlock()
		return false
	}
	// The instance keeps its SSH details, as Vast's record would; only
	// the machine behind them is gone (sshd stopped; Stop is idempotent,
	// so the destroy's close later is harmless).
	srv := in.host.srv
	s.mu.Unlock()
	if err := srv.Stop(); err != nil {
		s.logf("instance %d: stopping host: %v", id, err)
	}
	s.logf("instance %d crashed: host gone, status still running", id)
	return true
}

// SetMinBid changes an offer's current min_bid, as other renters' bids
// move it.
func (s *Server) SetMinBid(offerID int64, minBid float64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for i := range s.market {
		if s.market[i].ID == offerID {
			s.market[i].MinBid = minBid
		}
	}
}

// SetStatus changes an instance's actual_status and status_msg, as when a
// running host goes offline.
func (s *Server) SetStatus(id int64, status, msg string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if in, ok := s.instances[id]; ok {
		in.status, in.statusMsg = status, msg
	}
}

func (s *Server) sorted() []*instance {
	list := make([]*instance, 0, len(s.instances))
	for _, in := range s.instances {
		list = append(list, in)
	}
	sort.Slice(list, func(i, j int) bool { return list[i].id < list[j].id })
	return list
}

// createBody is PUT /asks/{id}/ as the spec and the docs define it. Unknown
// fields are refused.
type createBody struct {
	ClientID       *string         `json:"client_id"`
	Image          string          `json:"image"`
	TemplateHashID string          `json:"template_hash_id"`
	Label          *string         `json:"label"`
	Disk           *float64        `json:"disk"`
	RunType        string          `json:"runtype"`
	TargetState    string          `json:"target_state"`
	Price          *float64        `json:"price"`
	Env            json.RawMessage `json:"env"`
	CancelUnavail  *bool           `json:"cancel_unavail"`
	VM             *bool           `json:"vm"`
	OnStart        *string         `json:"onstart"`
	Args           []string        `json:"args"`
	ArgsStr        string          `json:"args_str"`
	UseJupyterLab  *bool           `json:"use_jupyter_lab"`
	JupyterDir     string          `json:"jupyter_dir"`
	PythonUTF8     *bool           `json:"python_utf8"`
	LangUTF8       *bool           `json:"lang_utf8"`
	Force          *bool           `json:"force"`
	User           string          `json:"user"`
	ImageLogin     string          `json:"image_login"`
	VolumeInfo     json.RawMessage `json:"volume_info"`
}

// runtypeTokens are the documented runtypes and the CLI's legacy tokens.
var runtypeTokens = map[string]bool{
	"ssh": true, "ssh_proxy": true, "ssh_direct": true, "ssh_direc": true,
	"jupyter": true, "jupyter_proxy": true, "jupyter_direct": true, "jupyter_direc": true, "args": true,
}

func decodeStrict(body []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	return dec.Decode(v)
}

func (s *Server) handleCreate(w http.ResponseWriter, offerID int64, body []byte) int {
	var b createBody
	if err := decodeStrict(body, &b); err != nil {
		return write(w, badRequest("invalid_args", "Invalid args: "+err.Error()))
	}
	switch {
	case b.Image == "" && b.TemplateHashID == "":
		return write(w, badRequest("invalid_args", "Invalid args: image is required"))
	case b.ClientID != nil && *b.ClientID != "me":
		return write(w, badRequest("invalid_args", "Invalid args: client_id must be \"me\""))
	case b.Label != nil && len(*b.Label) > 1024:
		return write(w, badRequest("invalid_args", "Invalid args: label longer than 1024 characters"))
	case b.OnStart != nil && len(*b.OnStart) > 4048:
		return write(w, badRequest("invalid_args", "Invalid args: onstart longer than 4048 characters"))
	case b.Disk != nil && *b.Disk <= 0:
		return write(w, badRequest("invalid_args", "Invalid args: disk must be a positive number of GB"))
	case b.TargetState != "" && b.TargetState != "running" && b.TargetState != "stopped":
		return write(w, badRequest("invalid_args", "Invalid args: target_state is running or stopped"))
	}
	if len(b.Env) > 0 && string(b.Env) != "null" {
		var env map[string]string
		if err := json.Unmarshal(b.Env, &env); err != nil {
			return write(w, badRequest("invalid_args", "Invalid args: env must be a JSON object of strings such as {\"-p 8080:8080\": \"1\"}, not a docker flag string"))
		}
	}
	runtype := b.RunType
	if runtype == "" {
		runtype = "ssh"
	}
	direct := false
	for _, t := range strings.Fields(runtype) {
		if !runtypeTokens[t] {
			return write(w, badRequest("invalid_args", fmt.Sprintf("Invalid args: unknown runtype %q", t)))
		}
		if strings.HasSuffix(t, "_direc") || strings.HasSuffix(t, "_direct") {
			direct = true
		}
	}

	s.mu.Lock()
	defer s.mu.Unlock()
	if status, ok := s.vanish[offerID]; ok {
		delete(s.vanish, offerID)
		s.market = slices.DeleteFunc(s.market, func(o Offer) bool { return o.ID == offerID })
		return write(w, offerGone(status, offerID))
	}
	idx := slices.IndexFunc(s.market, func(o Offer) bool { return o.ID == offerID })
	if idx < 0 || s.isRented(offerID) || s.closed {
		return write(w, offerGone(http.StatusNotFound, offerID))
	}
	offer := s.market[idx]
	if b.Price != nil {
		// price: "Bid price per machine (in $/hour). Only for interruptible
		// instances", minimum 0.001, maximum 128 (vast-openapi.yaml
		// createInstance); a bid under the offer's min_bid is refused with
		// 400 invalid_price (the spec's error enum for create; its message
		// text is not documented, so the client must not read it).
		switch p := *b.Price; {
		case p < 0.001 || p > 128:
			return write(w, badRequest("invalid_price", fmt.Sprintf("Invalid price: bid %.4f is outside 0.001–128 $/hr", p)))
		case p < offer.MinBidPrice():
			return write(w, badRequest("invalid_price", fmt.Sprintf("Invalid price: bid %.4f $/hr is below the current minimum bid %.4f $/hr", p, offer.MinBidPrice())))
		}
	}
	disk := 8.0
	if b.Disk != nil {
		disk = *b.Disk
	}
	if offer.DiskSpace > 0 && disk > offer.DiskSpace {
		return write(w, badRequest("invalid_args", fmt.Sprintf("Invalid args: disk %.0f GB exceeds the %.0f GB available", disk, offer.DiskSpace)))
	}
	s.seq++
	id := s.nextID
	s.nextID++
	in := &instance{
		id: id, seq: s.seq, offer: offer, params: b, runtype: runtype, direct: direct, disk: disk,
		created: time.Now(), intended: "running", curState: "running",
		stop: make(chan struct{}), done: make(chan struct{}),
	}
	if b.Label != nil {
		in.label = *b.Label
	}
	if s.opts.Behavior != nil {
		in.behavior = s.opts.Behavior(in.seq, offer, in.label)
	}
	s.instances[id] = in
	s.rented[offerID] = time.Now().Add(100 * 365 * 24 * time.Hour)
	go s.boot(in)
	s.logf("instance %d created from offer %d (machine %d)", id, offerID, offer.MachineID)
	apiKey := make([]byte, 16)
	rand.Read(apiKey)
	return writeJSON(w, map[string]any{"success": true, "new_contract": id, "instance_api_key": hex.EncodeToString(apiKey)})
}

// offerGone is the spec's answer to a create on a taken offer: 404 with
// error invalid_args and no_such_ask in msg, or 410 with error no_such_ask.
func offerGone(status int, offerID int64) *apiErr {
	if status == http.StatusGone {
		return jsonErr(410, map[string]any{"success": false, "error": "no_such_ask",
			"msg": fmt.Sprintf("error 410/3907: no_such_ask Instance type %d is no longer available.", offerID), "ask_id": offerID})
	}
	return jsonErr(404, map[string]any{"success": false, "error": "invalid_args",
		"msg": fmt.Sprintf("error 404/3603: no_such_ask Instance type by id %d is not available.", offerID), "ask_id": offerID})
}

// view is the instance as GET /instances/{id}/ and the v1 list show it.
func (in *instance) view() map[string]any {
	o := in.offer
	v := map[string]any{
		"id": in.id, "machine_id": o.MachineID, "host_id": o.HostID, "bundle_id": o.ID + 900000000,
		"actual_status": nil, "intended_status": in.intended, "cur_state": in.curState, "next_state": in.curState,
		"status_msg": nil, "label": nil,
		"image_uuid": in.params.Image, "image_runtype": legacyRuntype(in.runtype), "image_args": []string{},
		"extra_env": [][]string{}, "onstart": in.params.OnStart,
		"gpu_name": o.GPUName, "num_gpus": o.NumGPUs, "gpu_ram": o.GPURAM, "gpu_totalram": o.GPURAM * float64(o.NumGPUs),
		"cpu_cores": 16, "cpu_cores_effective": 8.0, "cpu_ram": 64000, "disk_space": in.disk,
		"dph_total": o.DphTotal(in.disk), "dph_base": o.DphBase, "is_bid": in.params.Price != nil, "min_bid": o.MinBidPrice(),
		"start_date": float64(in.created.UnixNano()) / 1e9, "end_date": float64(in.created.Add(30 * 24 * time.Hour).Unix()),
		"duration": time.Since(in.created).Seconds(), "uptime_mins": nil,
		"geolocation": o.Geolocation, "verification": map[bool]string{false: "verified", true: "unverified"}[o.Unverified],
		"reliability2": o.Reliability, "direct_port_count": o.DirectPortCount,
		"public_ipaddr": "127.0.0.1\n", "local_ipaddrs": "127.0.0.1 172.17.0.2\n",
		"ssh_host": nil, "ssh_port": nil, "ssh_idx": nil, "ports": nil, "jupyter_token": "0f1e2d3c",
	}
	if in.params.Price != nil {
		// A bid instance is billed at its bid plus its storage.
		v["dph_base"] = *in.params.Price
		v["dph_total"] = round6(*in.params.Price + o.StorageCost*in.disk/hoursPerMonth)
	}
	if in.status != "" {
		v["actual_status"] = in.status
	}
	if in.statusMsg != "" {
		v["status_msg"] = in.statusMsg
	}
	if in.label != "" {
		v["label"] = in.label
	}
	if in.status == "running" && in.host != nil {
		v["ssh_host"] = "127.0.0.1"
		v["ssh_port"] = in.host.proxy.port()
		v["ssh_idx"] = "1"
		if in.direct {
			v["ports"] = map[string]any{
				"22/tcp": []map[string]string{{"HostIp": "0.0.0.0", "HostPort": strconv.Itoa(in.host.srv.Port())}},
			}
			v["direct_port_start"] = in.host.srv.Port()
			v["direct_port_end"] = in.host.srv.Port()
		}
		if host, port, err := net.SplitHostPort(in.behavior.SSHAt); err == nil {
			n, _ := strconv.Atoi(port)
			v["ssh_host"], v["ssh_port"], v["public_ipaddr"] = host, n, host+"\n"
			if in.direct {
				v["ports"] = map[string]any{"22/tcp": []map[string]string{{"HostIp": "0.0.0.0", "HostPort": port}}}
			}
		}
	}
	return v
}

// legacyRuntype reports a runtype the way instances show it ("ssh
// ssh_direc ssh_proxy").
func legacyRuntype(rt string) string {
	toks := []string{}
	for _, t := range strings.Fields(rt) {
		t = strings.Replace(t, "_direct", "_direc", 1)
		if t == "ssh" {
			t = "ssh_proxy"
		}
		if !slices.Contains(toks, t) {
			toks = append(toks, t)
		}
	}
	return strings.Join(append([]string{"ssh"}, toks...), " ")
}

func (s *Server) live(id int64) (*instance, bool) {
	in, ok := s.instances[id]
	if !ok || in.destroyed {
		return nil, false
	}
	return in, true
}

func (s *Server) handleShow(w http.ResponseWriter, id int64) int {
	s.mu.Lock()
	in, ok := s.live(id)
	var v map[string]any
	if ok {
		v = in.view()
	}
	s.mu.Unlock()
	if !ok {
		if s.opts.GoneAs404 {
			return write(w, jsonErr(404, map[string]any{"success": false, "error": "no_such_instance", "msg": "Instance not found"}))
		}
		return writeJSON(w, map[string]any{"instances": nil})
	}
	return writeJSON(w, map[string]any{"instances": v})
}

func (s *Server) handleManage(w http.ResponseWriter, id int64, body []byte) int {
	var b struct {
		State *string `json:"state"`
		Label *string `json:"label"`
	}
	if err := decodeStrict(body, &b); err != nil || (b.State == nil && b.Label == nil) {
		return write(w, badRequest("invalid_args", "give state or label"))
	}
	if b.Label != nil && len(*b.Label) > 1024 {
		return write(w, badRequest("invalid_args", "label longer than 1024 characters"))
	}
	if b.State != nil && *b.State != "running" && *b.State != "stopped" {
		return write(w, badRequest("invalid_args", "state is running or stopped"))
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	in, ok := s.live(id)
	if !ok {
		return write(w, jsonErr(404, map[string]any{"success": false, "error": "no_such_instance", "msg": "Instance not found"}))
	}
	if b.Label != nil {
		in.label = *b.Label
	}
	if b.State != nil {
		in.intended = *b.State
		if *b.State == "stopped" {
			in.status, in.curState = "stopped", "stopped"
		}
	}
	return writeJSON(w, map[string]any{"success": true})
}

func (s *Server) handleDestroy(w http.ResponseWriter, id int64, body []byte) int {
	if len(bytes.TrimSpace(body)) > 0 {
		var b map[string]any
		if json.Unmarshal(body, &b) != nil {
			return write(w, badRequest("invalid_args", "body must be a JSON object"))
		}
	}
	s.mu.Lock()
	in, ok := s.live(id)
	if ok {
		in.destroyed = true
		in.destroyedAt = time.Now()
	}
	s.mu.Unlock()
	if !ok {
		return write(w, jsonErr(404, map[string]any{"success": false, "error": "not_found", "msg": "Instance not found"}))
	}
	s.destroy(in)
	return writeJSON(w, map[string]any{"success": true, "msg": "Instance destroyed successfully"})
}

// destroy stops the instance's host and puts its offer back on the market.
func (s *Server) destroy(in *instance) {
	s.mu.Lock()
	in.destroyed = true
	if in.destroyedAt.IsZero() {
		in.destroyedAt = time.Now()
	}
	select {
	case <-in.stop:
	default:
		close(in.stop)
	}
	s.mu.Unlock()
	<-in.done
	s.mu.Lock()
	h := in.host
	in.status, in.curState, in.intended = "exited", "unloaded", "stopped"
	s.rented[in.offer.ID] = time.Now().Add(s.opts.RelistAfter)
	s.mu.Unlock()
	if h != nil {
		if err := h.close(); err != nil {
			s.logf("instance %d: stopping host: %v", in.id, err)
		}
	}
	s.logf("instance %d destroyed", in.id)
}

func (s *Server) handleAttach(w http.ResponseWriter, id int64, body []byte) int {
	var b struct {
		SSHKey json.RawMessage `json:"ssh_key"`
	}
	if err := decodeStrict(body, &b); err != nil {
		return write(w, badRequest("invalid_args", "Invalid args: "+err.Error()))
	}
	var key string
	if json.Unmarshal(b.SSHKey, &key) != nil || strings.TrimSpace(key) == "" {
		return write(w, badRequest("invalid_args", "ssh_key must be the public key text"))
	}
	key = strings.TrimSpace(key)
	pub, _, _, _, err := ssh.ParseAuthorizedKey([]byte(key))
	if err != nil {
		return write(w, badRequest("invalid_args", "ssh_key is not a valid public key"))
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	in, ok := s.live(id)
	if !ok {
		return write(w, jsonErr(404, map[string]any{"success": false, "error": "no_such_instance", "msg": "Instance not found"}))
	}
	if in.status != "running" && !s.opts.AttachAnyTime {
		// Vast documents no answer for a key attached before the
		// container runs; its spec lists 400 (Error schema), 401 and 404
		// for attachSshKey (vast-ai/docs api-reference/openapi.yaml), and
		// the key goes into the container's authorized_keys, which does
		// not exist before it runs. The fake takes the stricter reading:
		// a 400 until the container runs.
		return write(w, badRequest("invalid_args", fmt.Sprintf("Instance %d is not running; SSH keys can be attached once it is", id)))
	}
	for _, k := range in.keys {
		if have, _, _, _, err := ssh.ParseAuthorizedKey([]byte(k)); err == nil && bytes.Equal(have.Marshal(), pub.Marshal()) {
			// Said to come back like this; a 200 that is not a success.
			return writeJSON(w, map[string]any{"success": false, "msg": "SSH key already associated with instance."})
		}
	}
	in.keys = append(in.keys, key)
	if in.host != nil {
		if err := in.host.srv.AddAuthorizedKey(key); err != nil {
			return write(w, jsonErr(500, map[string]any{"success": false, "error": "server_error", "msg": err.Error()}))
		}
	}
	return writeJSON(w, map[string]any{"success": true, "msg": "SSH key attached successfully"})
}
