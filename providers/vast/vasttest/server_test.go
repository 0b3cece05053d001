package vasttest

import (
	"crypto/ed25519"
	"crypto/rand"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"
)

func newServer(t *testing.T, opts Options) *Server {
	t.Helper()
	if _, err := os.Stat("/usr/sbin/sshd"); err != nil {
		if os.Getenv("CI") != "" {
			t.Fatal("/usr/sbin/sshd missing in CI: install openssh-server")
		}
		t.Skip("/usr/sbin/sshd missing: install openssh-server")
	}
	opts.Dir = t.TempDir()
	opts.Logf = t.Logf
	s := New(opts)
	t.Cleanup(s.Close)
	return s
}

// do sends one raw request and returns the status and body.
func do(t *testing.T, s *Server, method, path, body string, auth bool) (int, string) {
	t.Helper()
	req, err := http.NewRequest(method, s.URL()+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if auth {
		req.Header.Set("Authorization", "Bearer "+s.APIKey())
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// TestStrictAboutShapesAndUnits: what a careless client would send is
// refused with 400, naming the mistake.
func TestStrictAboutShapesAndUnits(t *testing.T) {
	s := newServer(t, Options{})
	cases := []struct {
		name, method, path, body string
		want                     int
		msg                      string
	}{
		{"CLI GPU name", "POST", "/api/v0/bundles/", `{"gpu_name": {"eq": "RTX_4090"}}`, 400, "underscores"},
		{"CLI GPU names in a list", "POST", "/api/v0/bundles/", `{"gpu_name": {"in": ["RTX 4090", "RTX_3090"]}}`, 400, "underscores"},
		{"GB where MB is due", "POST", "/api/v0/bundles/", `{"gpu_ram": {"gte": 24}}`, 400, "MB"},
		{"days where seconds are due", "POST", "/api/v0/bundles/", `{"duration": {"gte": 3}}`, 400, "seconds"},
		{"unknown operator", "POST", "/api/v0/bundles/", `{"num_gpus": {"between": [1, 2]}}`, 400, "unknown operator"},
		{"in without a list", "POST", "/api/v0/bundles/", `{"num_gpus": {"in": 1}}`, 400, "takes a list"},
		{"bare value", "POST", "/api/v0/bundles/", `{"num_gpus": 1}`, 400, "operator object"},
		{"unknown field", "POST", "/api/v0/bundles/", `{"gpu_memory": {"gte": 24000}}`, 400, "unknown search field"},
		{"country as text", "POST", "/api/v0/bundles/", `{"geolocation": {"eq": "Texas"}}`, 400, "country codes"},
		{"bad order", "POST", "/api/v0/bundles/", `{"order": [["dph_total", "up"]]}`, 400, "asc"},
		{"bad type", "POST", "/api/v0/bundles/", `{"type": "spot"}`, 400, "type"},
		{"env as a flag string", "PUT", "/api/v0/asks/5000101/", `{"image": "ubuntu", "env": "-e A=B -p 80:80"}`, 400, "JSON object"},
		{"no image", "PUT", "/api/v0/asks/5000101/", `{"disk": 10}`, 400, "image is required"},
		{"unknown create field", "PUT", "/api/v0/asks/5000101/", `{"image": "ubuntu", "onstart_cmd": "x"}`, 400, "unknown field"},
		{"unknown runtype", "PUT", "/api/v0/asks/5000101/", `{"image": "ubuntu", "runtype": "ssh_tunnel"}`, 400, "runtype"},
		{"disk too big", "PUT", "/api/v0/asks/5000101/", `{"image": "ubuntu", "disk": 5000}`, 400, "exceeds"},
		{"key id instead of key text", "POST", "/api/v0/instances/1/ssh/", `{"ssh_key": 42}`, 400, "public key text"},
		{"list filter on a computed column", "GET", "/api/v1/instances/?select_filters=" + `%7B%22dph_total%22%3A%7B%22lte%22%3A1%7D%7D`, "", 400, "cannot filter"},
		{"bad after_token", "GET", "/api/v1/instances/?after_token=zzz", "", 400, "invalid_token"},
		{"gone offer", "PUT", "/api/v0/asks/1/", `{"image": "ubuntu"}`, 404, "no_such_ask"},
		{"unknown path", "GET", "/api/v0/nothing/", "", 404, "Not Found"},
		{"wrong method", "PATCH", "/api/v0/instances/1/", "", 405, "Method"},
	}
	for _, tc := range cases {
		status, body := do(t, s, tc.method, tc.path, tc.body, true)
		if status != tc.want || !strings.Contains(body, tc.msg) {
			t.Errorf("%s: %d %s; want %d with %q", tc.name, status, body, tc.want, tc.msg)
		}
	}
	if n := len(s.Live()); n != 0 {
		t.Fatalf("%d instances made by refused requests", n)
	}
}

func TestNeedsTheBearerKey(t *testing.T) {
	s := newServer(t, Options{})
	if status, body := do(t, s, "GET", "/api/v0/instances/1/", "", false); status != 401 || !strings.Contains(body, "auth_error") {
		t.Errorf("no key: %d %s", status, body)
	}
	if status, body := do(t, s, "POST", "/api/v0/bundles/", "{}", false); status != 404 || !strings.Contains(body, "Invalid user key") {
		t.Errorf("search without a key: %d %s", status, body)
	}
	if status, _ := do(t, s, "GET", "/api/v0/instances/1/?api_key="+s.APIKey(), "", false); status != 401 {
		t.Errorf("the legacy api_key parameter was accepted: %d", status)
	}
	for _, r := range s.Requests() {
		if r.Authorized {
			t.Errorf("%s counted as authorized", r.Path)
		}
	}
}

func TestPathsWithAndWithoutSlash(t *testing.T) {
	s := newServer(t, Options{})
	for _, p := range []string{"/api/v0/bundles/", "/api/v0/bundles"} {
		status, body := do(t, s, "POST", p, `{"gpu_name": {"eq": "RTX 4090"}, "order": [["dph_total", "asc"]], "type": "on-demand", "allocated_storage": 72}`, true)
		var resp struct{ Offers []map[string]any }
		if status != 200 || json.Unmarshal([]byte(body), &resp) != nil || len(resp.Offers) != 2 {
			t.Fatalf("%s: %d %s", p, status, body)
		}
		// dph_total includes 72 GB of storage at storage_cost $/GB/month.
		if got := resp.Offers[0]["dph_total"].(float64); got != 0.26 {
			t.Errorf("%s: cheapest 4090 dph_total %v, want 0.25 + 0.10×72/720 = 0.26", p, got)
		}
	}
	for _, p := range []string{"/api/v0/instances/20000001/", "/api/v0/instances/20000001"} {
		if status, body := do(t, s, "GET", p, "", true); status != 200 || body != `{"instances":null}` {
			t.Errorf("%s: %d %s", p, status, body)
		}
	}
}

// TestInstanceLifecycle walks one instance through the raw API: created
// with actual_status null, loading, running with ports and SSH details, a
// key attached while running logs in, destroy stops its sshd.
func TestInstanceLifecycle(t *testing.T) {
	s := newServer(t, Options{LoadingAfter: 30 * time.Millisecond, RunningAfter: 30 * time.Millisecond})
	status, body := do(t, s, "PUT", "/api/v0/asks/5000201/", `{"client_id": "me", "image": "nvidia/cuda:12.4.1-devel-ubuntu22.04", "disk": 40,
		"label": "crabbox:t:l:1", "runtype": "ssh_direct", "env": {"-p 8080:8080": "1"}, "cancel_unavail": true}`, true)
	var created struct {
		Success     bool  `json:"success"`
		NewContract int64 `json:"new_contract"`
	}
	if status != 200 || json.Unmarshal([]byte(body), &created) != nil || !created.Success || created.NewContract == 5000201 {
		t.Fatalf("create: %d %s", status, body)
	}
	path := "/api/v0/instances/" + strconv.FormatInt(created.NewContract, 10) + "/"
	show := func() map[string]any {
		_, body := do(t, s, "GET", path, "", true)
		var resp struct{ Instances map[string]any }
		if err := json.Unmarshal([]byte(body), &resp); err != nil {
			t.Fatal(err)
		}
		return resp.Instances
	}
	if first := show(); first["actual_status"] != nil || first["ports"] != nil || first["label"] != "crabbox:t:l:1" {
		t.Fatalf("just created: %v", first)
	}
	seen := map[string]bool{}
	var in map[string]any
	deadline := time.Now().Add(20 * time.Second)
	for {
		in = show()
		st, _ := in["actual_status"].(string)
		seen[st] = true
		if st == "running" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("not running: %v", in)
		}
		time.Sleep(5 * time.Millisecond)
	}
	if !seen["loading"] {
		t.Errorf("never seen loading: %v", seen)
	}
	ports := in["ports"].(map[string]any)["22/tcp"].([]any)[0].(map[string]any)
	hostPort, ok := ports["HostPort"].(string)
	if !ok || in["public_ipaddr"] != "127.0.0.1\n" || in["image_runtype"] != "ssh ssh_direc" || in["ssh_port"] == nil {
		t.Fatalf("running: %v", in)
	}

	_, priv, _ := ed25519.GenerateKey(rand.Reader)
	signer, _ := ssh.NewSignerFromKey(priv)
	cfg := &ssh.ClientConfig{User: "root", Auth: []ssh.AuthMethod{ssh.PublicKeys(signer)}, HostKeyCallback: ssh.InsecureIgnoreHostKey(), Timeout: 5 * time.Second}
	if u := os.Getenv("USER"); u != "" {
		cfg.User = u
	}
	addr := net.JoinHostPort("127.0.0.1", hostPort)
	if c, err := ssh.Dial("tcp", addr, cfg); err == nil {
		c.Close()
		t.Fatal("logged in before the key was attached")
	}
	key := strings.TrimSpace(string(ssh.MarshalAuthorizedKey(signer.PublicKey())))
	if status, body := do(t, s, "POST", path+"ssh/", `{"ssh_key": "`+key+`"}`, true); status != 200 || !strings.Contains(body, `"success":true`) {
		t.Fatalf("attach: %d %s", status, body)
	}
	if status, body := do(t, s, "POST", path+"ssh/", `{"ssh_key": "`+key+`"}`, true); status != 200 || !strings.Contains(body, "already associated") {
		t.Fatalf("attach again: %d %s", status, body)
	}
	c, err := ssh.Dial("tcp", addr, cfg)
	if err != nil {
		t.Fatalf("ssh after attach: %v", err)
	}
	sess, _ := c.NewSession()
	// Stdout only: the login shell's start files may write to stderr
	// (a root .bashrc running pyenv complains of its rehash lock).
	out, err := sess.Output("nohup sleep 300 >/dev/null 2>&1 & echo $! $CRABBOX_HOST_ROOT")
	c.Close()
	fields := strings.Fields(string(out))
	if err != nil || len(fields) != 2 || !strings.HasSuffix(fields[1], "/root") {
		t.Fatalf("session: %v %s", err, out)
	}
	orphan, _ := strconv.Atoi(fields[0])

	if status, body := do(t, s, "DELETE", path, "{}", true); status != 200 || !strings.Contains(body, `"success":true`) {
		t.Fatalf("destroy: %d %s", status, body)
	}
	if c, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
		c.Close()
		t.Fatal("sshd still listening after destroy")
	}
	if alive(orphan) {
		t.Fatalf("process %d started on the host outlived destroy", orphan)
	}
	if status, body := do(t, s, "DELETE", path, "", true); status != 404 || !strings.Contains(body, "not_found") {
		t.Fatalf("destroy again: %d %s", status, body)
	}
	if got := show(); got != nil {
		t.Fatalf("destroyed instance still shown: %v", got)
	}
}

func TestListPagesAndLabelCounts(t *testing.T) {
	var market []Offer
	for i := range 30 {
		market = append(market, Offer{ID: int64(100 + i), GPUName: "L4", NumGPUs: 1, GPURAM: 23034, DphBase: 0.3, DiskSpace: 100})
	}
	s := newServer(t, Options{Offers: market, Behavior: func(int, Offer, string) Behavior { return Behavior{NeverBoot: true} }})
	for i := range 30 {
		label := "a"
		if i%3 == 0 {
			label = "b"
		}
		if status, body := do(t, s, "PUT", "/api/v0/asks/"+strconv.Itoa(100+i)+"/", `{"image": "x", "label": "`+label+`"}`, true); status != 200 {
			t.Fatalf("create: %d %s", status, body)
		}
	}
	type page struct {
		Instances   []map[string]any
		LabelCounts map[string]int `json:"label_counts"`
		NextToken   *string        `json:"next_token"`
		Total       int            `json:"total_instances"`
	}
	get := func(q string) page {
		status, body := do(t, s, "GET", "/api/v1/instances/?"+q, "", true)
		var p page
		if status != 200 || json.Unmarshal([]byte(body), &p) != nil {
			t.Fatalf("list %s: %d %s", q, status, body)
		}
		return p
	}
	p1 := get("limit=100")
	if len(p1.Instances) != 25 || p1.NextToken == nil || p1.Total != 30 || p1.LabelCounts["a"] != 20 || p1.LabelCounts["b"] != 10 {
		t.Fatalf("first page: %d instances, next %v, total %d, labels %v", len(p1.Instances), p1.NextToken, p1.Total, p1.LabelCounts)
	}
	p2 := get("after_token=" + *p1.NextToken)
	if len(p2.Instances) != 5 || p2.NextToken != nil {
		t.Fatalf("second page: %d, next %v", len(p2.Instances), p2.NextToken)
	}
	b := get(`select_filters=%7B%22label%22%3A%7B%22eq%22%3A%22b%22%7D%7D`)
	if len(b.Instances) != 10 || b.Total != 10 {
		t.Fatalf("label filter: %d", len(b.Instances))
	}
	if p := get("limit=0"); len(p.Instances) != 5 {
		t.Fatalf("limit=0 gave %d, Vast gives 5", len(p.Instances))
	}
}

// alive: the process exists and is not a zombie waiting for its reaper.
func alive(pid int) bool {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return false
	}
	i := strings.LastIndexByte(string(b), ')')
	return i > 0 && i+2 < len(b) && b[i+2] != 'Z' && b[i+2] != 'X'
}
