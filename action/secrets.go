package action

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"sort"
	"strings"
	"sync"

	"github.com/sethvargo/go-githubactions"

	"github.com/crabbox/crabbox-runner/provisioner"
)

// minMaskLen: the runner replaces every occurrence of a masked value in
// the log, so masking a short fragment would garble ordinary text. Real
// secrets and the lines of a PEM key are far longer.
const minMaskLen = 8

// secrets masks values twice over: it tells the runner with ::add-mask::,
// so the runner hides them in everything the job prints later (other steps
// included), and it redacts them from everything this process writes, so
// they are hidden even where the runner's masking does not reach (the step
// summary, outputs, a local run).
type secrets struct {
	mask *githubactions.Action // writes ::add-mask:: to the raw stdout

	mu       sync.Mutex
	known    map[string]bool
	replacer *strings.Replacer
}

func newSecrets(rawStdout io.Writer) *secrets {
	return &secrets{mask: githubactions.New(githubactions.WithWriter(rawStdout)), known: map[string]bool{}}
}

// Add masks a secret. Multi-line values (PEM keys) are masked line by line
// as well as whole: the runner matches masks within one log line.
func (s *secrets) Add(v string) {
	v = strings.TrimSpace(v)
	if v == "" {
		return
	}
	parts := []string{v}
	if strings.ContainsAny(v, "\r\n") {
		parts = nil
		for _, line := range strings.FieldsFunc(v, func(r rune) bool { return r == '\n' || r == '\r' }) {
			line = strings.TrimSpace(line)
			// PEM framing lines are the same in every key.
			if strings.HasPrefix(line, "-----") {
				continue
			}
			parts = append(parts, line)
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	changed := false
	for _, p := range parts {
		if len(p) < minMaskLen || s.known[p] {
			continue
		}
		s.known[p] = true
		changed = true
		s.mask.AddMask(p)
	}
	if changed {
		vals := make([]string, 0, len(s.known))
		for k := range s.known {
			vals = append(vals, k)
		}
		// Longest first, so a secret that contains another is replaced whole.
		sort.Slice(vals, func(i, j int) bool { return len(vals[i]) > len(vals[j]) })
		pairs := make([]string, 0, 2*len(vals))
		for _, k := range vals {
			pairs = append(pairs, k, "***")
		}
		s.replacer = strings.NewReplacer(pairs...)
	}
}

// Redact replaces every known secret in text with ***.
func (s *secrets) Redact(text string) string {
	s.mu.Lock()
	r := s.replacer
	s.mu.Unlock()
	if r == nil {
		return text
	}
	return r.Replace(text)
}

// Writer returns a writer that redacts what passes through it. Each Write
// is redacted on its own; every writer here (slog handlers, workflow
// commands) writes whole lines.
func (s *secrets) Writer(w io.Writer) io.Writer { return &redactWriter{s: s, w: w} }

type redactWriter struct {
	s  *secrets
	mu sync.Mutex
	w  io.Writer
}

func (r *redactWriter) Write(p []byte) (int, error) {
	out := r.s.Redact(string(p))
	r.mu.Lock()
	defer r.mu.Unlock()
	if _, err := io.WriteString(r.w, out); err != nil {
		return 0, err
	}
	return len(p), nil
}

// maskingGitHub masks each JIT config as GitHub hands it out: the runner's
// credentials.
type maskingGitHub struct {
	provisioner.GitHub
	s *secrets
}

func (g maskingGitHub) GenerateJITConfig(ctx context.Context, scope provisioner.Scope, name string, labels []string) (*provisioner.JITConfig, error) {
	j, err := g.GitHub.GenerateJITConfig(ctx, scope, name, labels)
	if err == nil {
		g.s.Add(j.Encoded)
	}
	return j, err
}

// maskingBootstrapper masks each lease's private keys as they are made.
type maskingBootstrapper struct {
	provisioner.Bootstrapper
	s *secrets
}

func (b maskingBootstrapper) NewCredentials(seed []byte, withHostKey bool) (*provisioner.Credentials, error) {
	c, err := b.Bootstrapper.NewCredentials(seed, withHostKey)
	if err == nil {
		b.s.Add(string(c.ClientPrivatePEM))
		if c.HostKey != nil {
			b.s.Add(string(c.HostKey.PrivatePEM))
		}
	}
	return c, err
}

// maskingTransport masks the credentials GitHub App auth makes on the way:
// the App's JWTs and the installation tokens GitHub returns for them.
type maskingTransport struct {
	base http.RoundTripper
	s    *secrets
}

func (t *maskingTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	if auth := req.Header.Get("Authorization"); auth != "" {
		if _, cred, ok := strings.Cut(auth, " "); ok {
			t.s.Add(cred)
		}
	}
	resp, err := t.base.RoundTrip(req)
	if err != nil || req.Method != http.MethodPost || !strings.HasSuffix(req.URL.Path, "/access_tokens") || resp.StatusCode != http.StatusCreated {
		return resp, err
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	resp.Body.Close()
	if err != nil {
		return nil, err
	}
	var tok struct {
		Token string `json:"token"`
	}
	if json.Unmarshal(body, &tok) == nil {
		t.s.Add(tok.Token)
	}
	resp.Body = io.NopCloser(bytes.NewReader(body))
	return resp, nil
}
