package githubtest

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

const testToken = "ghp_testtoken0123456789"

func newTestServer(t *testing.T, opts Options) *Server {
	t.Helper()
	if opts.Tokens == nil {
		opts.Tokens = []string{testToken}
	}
	if opts.Logf == nil {
		opts.Logf = t.Logf
	}
	s := New(opts)
	t.Cleanup(s.Close)
	return s
}

func ctxFor(t *testing.T) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

type response struct {
	status int
	header http.Header
	body   []byte
}

func (r response) json(t *testing.T, v any) {
	t.Helper()
	if err := json.Unmarshal(r.body, v); err != nil {
		t.Fatalf("decode %s: %v", r.body, err)
	}
}

func (r response) message(t *testing.T) string {
	t.Helper()
	var e struct{ Message string }
	r.json(t, &e)
	return e.Message
}

// call sends one request with "Authorization: <auth>" unless auth is empty.
func call(t *testing.T, method, url, auth string, body any) response {
	t.Helper()
	var rd io.Reader
	switch b := body.(type) {
	case nil:
	case string:
		rd = strings.NewReader(b)
	default:
		data, err := json.Marshal(b)
		if err != nil {
			t.Fatal(err)
		}
		rd = bytes.NewReader(data)
	}
	req, err := http.NewRequest(method, url, rd)
	if err != nil {
		t.Fatal(err)
	}
	if auth != "" {
		req.Header.Set("Authorization", auth)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return response{status: resp.StatusCode, header: resp.Header, body: data}
}

// registered is a runner registered through generate-jitconfig.
type registered struct {
	ID      int64
	Name    string
	Token   string // from .credentials
	Encoded string
	Files   map[string][]byte
}

// register creates a JIT runner at prefix ("/orgs/acme" or "/repos/o/r").
func register(t *testing.T, s *Server, prefix, name string, labels ...string) registered {
	t.Helper()
	r := call(t, "POST", s.URL()+prefix+"/actions/runners/generate-jitconfig", "Bearer "+testToken,
		map[string]any{"name": name, "runner_group_id": 1, "labels": labels, "work_folder": "_work"})
	if r.status != http.StatusCreated {
		t.Fatalf("generate-jitconfig %s: %d %s", name, r.status, r.body)
	}
	var out struct {
		Runner struct {
			ID   int64
			Name string
		}
		EncodedJITConfig string `json:"encoded_jit_config"`
	}
	r.json(t, &out)
	files := decodeJIT(t, out.EncodedJITConfig)
	var creds struct{ Data struct{ Token string } }
	if err := json.Unmarshal(files[".credentials"], &creds); err != nil {
		t.Fatalf(".credentials: %v", err)
	}
	return registered{ID: out.Runner.ID, Name: out.Runner.Name, Token: creds.Data.Token, Encoded: out.EncodedJITConfig, Files: files}
}

func decodeJIT(t *testing.T, encoded string) map[string][]byte {
	t.Helper()
	outer, err := base64.StdEncoding.DecodeString(encoded)
	if err != nil {
		t.Fatalf("encoded_jit_config is not base64: %v", err)
	}
	var m map[string]string
	if err := json.Unmarshal(outer, &m); err != nil {
		t.Fatalf("encoded_jit_config is not a JSON object: %v", err)
	}
	files := map[string][]byte{}
	for k, v := range m {
		data, err := base64.StdEncoding.DecodeString(v)
		if err != nil {
			t.Fatalf("%s is not base64: %v", k, err)
		}
		files[k] = data
	}
	return files
}

func poll(t *testing.T, s *Server, rn registered) (int, pollAnswer) {
	t.Helper()
	r := call(t, "POST", s.URL()+"/_fake/runner/"+itoa(rn.ID)+"/poll", "Bearer "+rn.Token, "{}")
	var a pollAnswer
	if r.status == http.StatusOK {
		r.json(t, &a)
	}
	return r.status, a
}

func done(t *testing.T, s *Server, rn registered, jobID int64, exit int) int {
	t.Helper()
	r := call(t, "POST", s.URL()+"/_fake/runner/"+itoa(rn.ID)+"/jobs/"+itoa(jobID)+"/done", "Bearer "+rn.Token,
		map[string]int{"exit_code": exit})
	return r.status
}

func itoa(n int64) string { return strconv.FormatInt(n, 10) }

// hook is a webhook receiver that records what it gets.
type hook struct {
	*httptest.Server
	mu   sync.Mutex
	got  []received
	code int
}

type received struct {
	header http.Header
	body   []byte
}

func newHook(t *testing.T) *hook {
	h := &hook{code: http.StatusAccepted}
	h.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		h.mu.Lock()
		h.got = append(h.got, received{header: r.Header.Clone(), body: body})
		code := h.code
		h.mu.Unlock()
		w.WriteHeader(code)
	}))
	t.Cleanup(h.Close)
	return h
}

func (h *hook) answer(code int) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.code = code
}

func (h *hook) received() []received {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]received(nil), h.got...)
}

var guidRE = regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$`)
