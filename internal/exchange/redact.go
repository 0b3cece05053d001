package exchange

import (
	"bytes"
	"encoding/json"
	"net/http"
	"net/url"
	"sort"
	"strings"
	"sync"
)

// Redacted replaces every secret in a recording.
const Redacted = "[REDACTED]"

// secretFields are JSON field names whose string values are blanked
// wherever they appear, configured or not: what the providers' APIs are
// known to answer with (Lambda's generated ssh key private_key, Vast's
// api_key and an instance's jupyter_token), GitHub's JIT configuration,
// and the scripts that carry a host's private key or a runner's
// configuration to it (Vast onstart, Lambda user_data).
var secretFields = map[string]bool{
	"private_key": true, "ssh_private_key": true, "api_key": true, "apikey": true,
	"jit_config": true, "encoded_jit_config": true, "jupyter_token": true,
	"token": true, "access_token": true, "refresh_token": true, "password": true,
	"secret": true, "client_secret": true, "authorization": true,
	"onstart": true, "user_data": true,
}

func secretField(name string) bool {
	n := strings.ToLower(name)
	return secretFields[n] || strings.HasSuffix(n, "_secret") || strings.HasSuffix(n, "_password") ||
		strings.HasSuffix(n, "_private_key") || strings.HasSuffix(n, "_api_key")
}

// keptHeaders are the headers a recording keeps; all others are dropped.
// Authorization is kept only to show it was sent: its value is replaced.
var keptHeaders = []string{"Authorization", "Content-Type", "Accept", "User-Agent", "Retry-After", "Location"}

// redactor replaces the run's secrets, in every form they can take in a
// request or an answer.
type redactor struct {
	mu      sync.Mutex
	needles [][]byte // longest first
	seen    map[string]bool
}

// minLinePart is how long one line of a multi-line secret (a PEM key)
// must be to be searched for on its own.
const minLinePart = 16

func newRedactor(secrets [][]byte) *redactor {
	r := &redactor{seen: map[string]bool{}}
	r.learn(secrets)
	return r
}

// learn adds secrets to search for: the configured ones, and values found
// in secret fields of answers (a token echoed elsewhere, say in a URL, in
// the same answer or a later one).
func (r *redactor) learn(secrets [][]byte) {
	r.mu.Lock()
	defer r.mu.Unlock()
	add := func(s string) {
		if strings.TrimSpace(s) == "" || r.seen[s] {
			return
		}
		r.seen[s] = true
		r.needles = append(r.needles, []byte(s))
	}
	for _, sec := range secrets {
		s := string(sec)
		forms := []string{s, strings.TrimSpace(s)}
		for _, line := range strings.Split(s, "\n") {
			if line = strings.TrimSpace(line); len(line) >= minLinePart {
				forms = append(forms, line)
			}
		}
		for _, f := range forms {
			add(f)
			add(url.QueryEscape(f))
			add(url.PathEscape(f))
			if js, err := json.Marshal(f); err == nil {
				add(string(js[1 : len(js)-1]))
			}
		}
	}
	sort.Slice(r.needles, func(i, j int) bool { return len(r.needles[i]) > len(r.needles[j]) })
}

func (r *redactor) bytes(b []byte) []byte {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, n := range r.needles {
		if bytes.Contains(b, n) {
			b = bytes.ReplaceAll(b, n, []byte(Redacted))
		}
	}
	return b
}

func (r *redactor) string(s string) string { return string(r.bytes([]byte(s))) }

// headers keeps the recorded headers, redacted.
func (r *redactor) headers(h http.Header) map[string]string {
	out := map[string]string{}
	for _, k := range keptHeaders {
		v := h.Get(k)
		if v == "" {
			continue
		}
		if k == "Authorization" {
			v = Redacted
		}
		out[k] = r.string(v)
	}
	if len(out) == 0 {
		return nil
	}
	return out
}

// body redacts a body: as JSON (secret fields blanked, then secret values
// replaced) when it is JSON, as text otherwise.
func (r *redactor) body(b []byte) (json.RawMessage, string) {
	if len(bytes.TrimSpace(b)) == 0 {
		return nil, ""
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err == nil && !dec.More() {
		var found [][]byte
		blank(v, &found)
		r.learn(found)
		if out, err := json.Marshal(v); err == nil {
			out = r.bytes(out)
			if json.Valid(out) {
				return out, ""
			}
		}
	}
	return nil, r.string(string(b))
}

// learnable reports whether a secret field's value is searched for
// elsewhere too: not a short or all-digit one, which would blank
// unrelated text and numbers.
func learnable(s string) bool {
	return len(s) >= 8 && s != Redacted && strings.ContainsFunc(s, func(r rune) bool { return r < '0' || r > '9' })
}

// blank replaces the string values of secret fields, recursively, and
// collects them.
func blank(v any, found *[][]byte) {
	switch x := v.(type) {
	case map[string]any:
		for k, val := range x {
			if s, ok := val.(string); ok && secretField(k) && s != "" {
				x[k] = Redacted
				if learnable(s) {
					*found = append(*found, []byte(s))
				}
				continue
			}
			blank(val, found)
		}
	case []any:
		for _, e := range x {
			blank(e, found)
		}
	}
}
