package exchange

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"testing"
	"time"
)

// The run's secrets: an API key, a GitHub token, a JIT config, a private
// key (multi-line PEM) and a state key.
var (
	apiKey     = "vast-key-9f8e7d6c5b4a39281706"
	ghToken    = "ghs_16C7e42F292c6912E7710c838347Ae178B4a"
	jitConfig  = "eyJydW5uZXIiOiJqaXQtY29uZmlnLXNlY3JldC12YWx1ZSJ9"
	privateKey = "-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAABG5vbmUAAAAEbm9uZQAAAAAAAAABAAAAMwAAAAtzc2gtZW\nQyNTUxOQAAACDhgLZ3ZXJ5LXNlY3JldC1wcml2YXRlLWtleS1ib2R5\n-----END OPENSSH PRIVATE KEY-----\n"
	stateKey   = "c3RhdGUta2V5LTMyLWJ5dGVzLXNlY3JldC12YWx1ZQ=="
	secrets    = []string{apiKey, ghToken, jitConfig, privateKey, stateKey}
)

// Values in the answers' secret-bearing fields that the run was not told
// about: they must be blanked all the same.
var unconfigured = []string{"unconfigured-private-key-material", "unconfigured-api-key", "unconfigured-jit", "unconfigured-encoded-jit", "unconfigured-jupyter"}

func secretBytes() [][]byte {
	var out [][]byte
	for _, s := range secrets {
		out = append(out, []byte(s))
	}
	return out
}

func TestRecordingRedactsEverySecret(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		switch {
		case r.URL.Path == "/json":
			// The secrets echoed in plain fields, nested, in an array and
			// in a header; the known secret fields with values no one
			// configured.
			w.Header().Set("Content-Type", "application/json")
			w.Header().Set("Location", "/x?token="+ghToken)
			json.NewEncoder(w).Encode(map[string]any{
				"msg":    "bad key " + apiKey + " for " + ghToken,
				"nested": map[string]any{"config": jitConfig, "list": []string{stateKey, privateKey}},
				"data": map[string]any{
					"private_key": unconfigured[0], "api_key": unconfigured[1],
					"jit_config": unconfigured[2], "encoded_jit_config": unconfigured[3],
				},
				"instances": []any{map[string]any{"id": 7, "jupyter_token": unconfigured[4], "jupyter_url": "https://j.example/?token=" + unconfigured[4]}},
			})
		case strings.HasPrefix(r.URL.Path, "/text/"):
			w.Header().Set("Content-Type", "text/plain")
			w.WriteHeader(http.StatusUnauthorized)
			// And a value first seen in a secret field of an earlier answer.
			io.WriteString(w, "key "+apiKey+" rejected; state "+stateKey+"\n"+privateKey+"\njupyter "+unconfigured[4])
		case r.URL.Path == "/hang":
			// Drop the connection: a transport error naming the URL.
			hj, _ := w.(http.Hijacker)
			c, _, _ := hj.Hijack()
			c.Close()
		}
	}))
	defer srv.Close()

	dir := t.TempDir()
	rec, err := New(Options{Dir: dir, Provider: "vast", Secrets: secretBytes(), Note: "run with " + apiKey})
	if err != nil {
		t.Fatal(err)
	}
	c := rec.Client(&http.Client{Timeout: 5 * time.Second})
	send := func(method, path string, body string) {
		t.Helper()
		req, _ := http.NewRequestWithContext(context.Background(), method, srv.URL+path, strings.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+apiKey)
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("X-Other", ghToken) // dropped: not a kept header
		resp, err := c.Do(req)
		if err != nil {
			return
		}
		// The caller still reads the whole answer.
		got, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if len(got) == 0 {
			t.Errorf("%s %s: the recorder swallowed the answer", method, path)
		}
	}
	reqBody, _ := json.Marshal(map[string]any{"user_data": "#cloud-config\nssh_keys: " + privateKey, "name": "x", "jit": jitConfig})
	send("POST", "/json?api_key="+apiKey, string(reqBody))
	send("PUT", "/text/"+ghToken, `not json `+stateKey)
	send("GET", "/hang?k="+apiKey, "")
	if err := rec.Close(); err != nil {
		t.Fatal(err)
	}

	data, err := os.ReadFile(rec.Path())
	if err != nil {
		t.Fatal(err)
	}
	if fi, _ := os.Stat(rec.Path()); fi.Mode().Perm() != 0o600 {
		t.Errorf("recording mode %v, want 0600", fi.Mode().Perm())
	}
	check := func(what, s string) {
		t.Helper()
		if bytes.Contains(data, []byte(s)) {
			t.Errorf("the recording contains %s %q", what, s)
		}
	}
	for _, s := range secrets {
		check("a secret", s)
		for _, line := range strings.Split(s, "\n") {
			if len(line) >= minLinePart {
				check("a line of a secret", line)
			}
		}
		js, _ := json.Marshal(s)
		check("a JSON-escaped secret", string(js[1:len(js)-1]))
	}
	for _, s := range unconfigured {
		check("an unconfigured secret field", s)
	}

	got, err := ReadFile(rec.Path())
	if err != nil {
		t.Fatal(err)
	}
	if got.Header.Provider != "vast" || got.Header.Source != SourceReal || got.Header.Format != FormatVersion {
		t.Errorf("header %+v", got.Header)
	}
	if len(got.Exchanges) != 3 {
		t.Fatalf("%d exchanges, want 3", len(got.Exchanges))
	}
	first := got.Exchanges[0]
	if first.ReqHeader["Authorization"] != Redacted || first.ReqHeader["X-Other"] != "" {
		t.Errorf("request headers %v", first.ReqHeader)
	}
	if first.Status != 200 || len(first.RespBody) == 0 || first.Query != "api_key="+Redacted {
		t.Errorf("first exchange: status %d, query %q, body %s", first.Status, first.Query, first.RespBody)
	}
	if got.Exchanges[1].Status != 401 || got.Exchanges[1].RespText == "" || got.Exchanges[1].Path != "/text/"+Redacted {
		t.Errorf("second exchange: %+v", got.Exchanges[1])
	}
	if e := got.Exchanges[2]; e.Status != 0 || e.Error == "" {
		t.Errorf("third exchange: want a transport error, got %+v", e)
	}
	for i, e := range got.Exchanges {
		if e.Seq != i+1 || e.Start.IsZero() || e.DurationMS < 0 {
			t.Errorf("exchange %d: seq %d, start %v, duration %v", i, e.Seq, e.Start, e.DurationMS)
		}
	}
}

func TestRecorderKeepsTimeoutAndRefusesOverwrite(t *testing.T) {
	dir := t.TempDir()
	now := func() time.Time { return time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC) }
	rec, err := New(Options{Dir: dir, Provider: "lambda", Source: SourceFake, Now: now})
	if err != nil {
		t.Fatal(err)
	}
	defer rec.Close()
	c := rec.Client(&http.Client{Timeout: 42 * time.Second})
	if c.Timeout != 42*time.Second {
		t.Errorf("timeout %v", c.Timeout)
	}
	if rec.Client(nil).Transport == nil {
		t.Error("nil base: no transport")
	}
	if _, err := New(Options{Dir: dir, Provider: "lambda", Now: now}); err == nil {
		t.Error("a second recording with the same name overwrote the first")
	}
	if _, err := New(Options{Dir: dir, Provider: "lambda", Source: "made-up"}); err == nil {
		t.Error("unknown source accepted")
	}
}

func TestReadRejectsBadFiles(t *testing.T) {
	for name, in := range map[string]string{
		"empty":           "",
		"no header":       `{"type":"exchange","seq":1}`,
		"two headers":     `{"type":"header","format":1}` + "\n" + `{"type":"header","format":1}`,
		"unknown type":    `{"type":"header","format":1}` + "\n" + `{"type":"bogus"}`,
		"newer format":    `{"type":"header","format":99}`,
		"not json at all": `hello`,
	} {
		if _, err := Read(strings.NewReader(in)); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}
