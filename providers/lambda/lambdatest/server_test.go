package lambdatest

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"
)

type client struct {
	t   *testing.T
	s   *Server
	key string
}

// do sends a request and decodes the answer's envelope.
func (c client) do(method, path, body string) (int, map[string]json.RawMessage) {
	c.t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, _ := http.NewRequest(method, c.s.URL()+path, rd)
	req.Header.Set("Authorization", "Bearer "+c.key)
	req.Header.Set("Accept", "application/json")
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		c.t.Fatal(err)
	}
	defer resp.Body.Close()
	var env map[string]json.RawMessage
	raw, _ := io.ReadAll(resp.Body)
	if len(raw) > 0 {
		if err := json.Unmarshal(raw, &env); err != nil {
			c.t.Fatalf("%s %s: answer %q is not JSON", method, path, raw)
		}
	}
	return resp.StatusCode, env
}

func errorCode(env map[string]json.RawMessage) string {
	var e struct{ Code string }
	json.Unmarshal(env["error"], &e)
	return e.Code
}

// A request outside the document gets Lambda's invalid-parameters answer
// and is recorded as a violation.
func TestFakeRefusesRequestsOutsideTheDocument(t *testing.T) {
	s := New(t, Options{AllowViolations: true})
	c := client{t, s, s.APIKey()}
	for _, body := range []string{
		`{"region_name":"us-east-1","instance_type_name":"gpu_1x_a10","ssh_key_names":["k"],"quantity":1}`,
		`{"region_name":"us-east-1","instance_type_name":"gpu_1x_a10","ssh_key_names":["k"],"image":"gpu-base-24-04"}`,
		`{"region_name":"us-east-1","instance_type_name":"gpu_1x_a10","ssh_key_names":["k"],"firewall_ruleset_name":"web"}`,
	} {
		status, env := c.do(http.MethodPost, "/api/v1/instance-operations/launch", body)
		if status != 400 || errorCode(env) != "global/invalid-parameters" {
			t.Errorf("%s: %d %s", body, status, env["error"])
		}
	}
	if n := len(s.Violations()); n != 3 {
		t.Fatalf("%d violations recorded, want 3: %q", n, s.Violations())
	}
	if len(s.Launches()) != 0 {
		t.Fatal("an invalid launch reached the launch logic")
	}
}

func TestFakeAuthentication(t *testing.T) {
	s := New(t, Options{})
	if status, env := (client{t, s, "wrong"}).do(http.MethodGet, "/api/v1/instances", ""); status != 401 || errorCode(env) != "global/invalid-api-key" {
		t.Fatalf("wrong key: %d %s", status, env["error"])
	}
	for _, h := range []string{
		"Bearer " + s.APIKey(),
		"Basic " + base64.StdEncoding.EncodeToString([]byte(s.APIKey()+":")),
		"Basic " + s.APIKey(),
	} {
		req, _ := http.NewRequest(http.MethodGet, s.URL()+"/api/v1/instances", nil)
		req.Header.Set("Authorization", h)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Errorf("%.12s…: %d", h, resp.StatusCode)
		}
	}
}

// A launched instance is a real sshd configured from the user_data as
// cloud-init would: the given host key, the authorized keys, and the
// registered key; terminating it stops sshd.
func TestFakeHostFollowsUserData(t *testing.T) {
	s := New(t, Options{})
	c := client{t, s, s.APIKey()}
	hostPub, hostPEM := genKey(t)
	clientPub, clientPEM := genKey(t)
	registeredPub, registeredPEM := genKey(t)

	body, _ := json.Marshal(map[string]string{"name": "reg", "public_key": registeredPub})
	if status, env := c.do(http.MethodPost, "/api/v1/ssh-keys", string(body)); status != 200 {
		t.Fatalf("add key: %d %s", status, env["error"])
	}
	if status, env := c.do(http.MethodPost, "/api/v1/ssh-keys", string(body)); status != 400 || errorCode(env) != "global/invalid-parameters" {
		t.Fatalf("a duplicate key name: %d %s", status, env["error"])
	}
	ud := "#cloud-config\nssh_deletekeys: true\nssh_keys:\n  ed25519_private: |\n" + indent(string(hostPEM), "    ") +
		"  ed25519_public: " + hostPub + "\nssh_authorized_keys:\n  - " + clientPub + "\n"
	launch, _ := json.Marshal(map[string]any{
		"region_name": "us-east-1", "instance_type_name": "gpu_1x_a100_sxm4", "ssh_key_names": []string{"reg"},
		"name": "fake-test", "user_data": ud,
	})
	id, ip := launchActive(t, c, launch)
	host, port := s.SSHAddress(ip)
	addr := net.JoinHostPort(host, strconv.Itoa(port))
	for name, key := range map[string][]byte{"user_data key": clientPEM, "registered key": registeredPEM} {
		out := sshRun(t, addr, key, hostPub, "nvidia-smi --query-gpu=name,memory.total --format=csv,noheader; echo $CRABBOX_HOST_ROOT")
		if !strings.Contains(out, "NVIDIA A100 SXM4, 40960 MiB") || !strings.Contains(out, s.HostRoot(id)) {
			t.Errorf("%s: host said %q", name, out)
		}
	}
	if status, _ := c.do(http.MethodPost, "/api/v1/instance-operations/terminate", `{"instance_ids":["`+id+`"]}`); status != 200 {
		t.Fatalf("terminate: %d", status)
	}
	waitUntil(t, "sshd stopped", func() bool { return len(s.Live()) == 0 && !s.Running(id) })
	if conn, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
		conn.Close()
		t.Fatal("sshd still listens after terminate")
	}
	if status, _ := c.do(http.MethodPost, "/api/v1/instance-operations/terminate", `{"instance_ids":["`+id+`"]}`); status != 404 {
		t.Fatalf("terminating a gone instance: %d, want 404", status)
	}
}

func TestFakeInjectsCapacityFaults(t *testing.T) {
	s := New(t, Options{})
	c := client{t, s, s.APIKey()}
	pub, _ := genKey(t)
	body, _ := json.Marshal(map[string]string{"name": "k", "public_key": pub})
	c.do(http.MethodPost, "/api/v1/ssh-keys", string(body))
	s.NoCapacity("gpu_1x_a10", "us-east-1")
	status, env := c.do(http.MethodPost, "/api/v1/instance-operations/launch", `{"region_name":"us-east-1","instance_type_name":"gpu_1x_a10","ssh_key_names":["k"]}`)
	if status != 400 || errorCode(env) != "instance-operations/launch/insufficient-capacity" {
		t.Fatalf("launch: %d %s", status, env["error"])
	}
	// instance-types still lists the region, as Lambda's does.
	_, env = c.do(http.MethodGet, "/api/v1/instance-types", "")
	if !bytes.Contains(env["data"], []byte(`"us-east-1"`)) {
		t.Fatal("the region vanished from instance-types")
	}
	s.FailNext(1, Fault{Status: 429})
	if status, _ := c.do(http.MethodGet, "/api/v1/instances", ""); status != 429 {
		t.Fatalf("injected 429: %d", status)
	}
	if len(s.Violations()) != 0 {
		t.Fatalf("violations: %q", s.Violations())
	}
}

func genKey(t *testing.T) (string, []byte) {
	t.Helper()
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	sp, _ := ssh.NewPublicKey(pub)
	block, _ := ssh.MarshalPrivateKey(priv, "")
	return strings.TrimSpace(string(ssh.MarshalAuthorizedKey(sp))), pem.EncodeToMemory(block)
}

func indent(s, prefix string) string {
	var b strings.Builder
	for _, l := range strings.Split(strings.TrimRight(s, "\n"), "\n") {
		b.WriteString(prefix + l + "\n")
	}
	return b.String()
}

func sshRun(t *testing.T, addr string, keyPEM []byte, hostPub, cmd string) string {
	t.Helper()
	signer, err := ssh.ParsePrivateKey(keyPEM)
	if err != nil {
		t.Fatal(err)
	}
	want, _, _, _, err := ssh.ParseAuthorizedKey([]byte(hostPub))
	if err != nil {
		t.Fatal(err)
	}
	conn, err := ssh.Dial("tcp", addr, &ssh.ClientConfig{
		User: CurrentUser(), Auth: []ssh.AuthMethod{ssh.PublicKeys(signer)},
		HostKeyCallback: ssh.FixedHostKey(want), Timeout: 10 * time.Second,
	})
	if err != nil {
		t.Fatalf("ssh %s: %v", addr, err)
	}
	defer conn.Close()
	sess, err := conn.NewSession()
	if err != nil {
		t.Fatal(err)
	}
	defer sess.Close()
	// Stdout only: the login shell's start files may write to stderr
	// (a root .bashrc running pyenv complains of its rehash lock).
	var stderr strings.Builder
	sess.Stderr = &stderr
	out, err := sess.Output(cmd)
	if err != nil {
		t.Fatalf("ssh %s %q: %v\n%s%s", addr, cmd, err, out, stderr.String())
	}
	return string(out)
}

func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// launchActive launches one instance with the body and waits until it is
// active; it returns the instance's id and IP.
func launchActive(t *testing.T, c client, launch []byte) (id, ip string) {
	t.Helper()
	status, env := c.do(http.MethodPost, "/api/v1/instance-operations/launch", string(launch))
	if status != 200 {
		t.Fatalf("launch: %d %s", status, env["error"])
	}
	var ids struct {
		InstanceIDs []string `json:"instance_ids"`
	}
	json.Unmarshal(env["data"], &ids)
	id = ids.InstanceIDs[0]
	var inst struct{ IP, Status string }
	deadline := time.Now().Add(30 * time.Second)
	for inst.Status != "active" {
		if time.Now().After(deadline) {
			t.Fatalf("instance %s still %s", id, inst.Status)
		}
		time.Sleep(20 * time.Millisecond)
		_, env := c.do(http.MethodGet, "/api/v1/instances/"+id, "")
		json.Unmarshal(env["data"], &inst)
	}
	return id, inst.IP
}
