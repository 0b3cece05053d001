package action

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

func TestSecretsMaskAndRedact(t *testing.T) {
	pemKey := "-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAABG5vbmUAAAAEbm9uZQ\nQyNTUxOQAAACDVFZVHJ5drJqdhJC4\nAAA=\n-----END OPENSSH PRIVATE KEY-----\n"
	tests := []struct {
		name      string
		add       []string
		wantMasks []string
		text      string
		wantText  string
	}{
		{"one token", []string{"ghp_0123456789abcdef"}, []string{"ghp_0123456789abcdef"},
			"Authorization: token ghp_0123456789abcdef", "Authorization: token ***"},
		{"a PEM key, line by line, framing and short lines left", []string{pemKey},
			[]string{"b3BlbnNzaC1rZXktdjEAAAAABG5vbmUAAAAEbm9uZQ", "QyNTUxOQAAACDVFZVHJ5drJqdhJC4"},
			"key line QyNTUxOQAAACDVFZVHJ5drJqdhJC4 here", "key line *** here"},
		{"empty and short values are not masked", []string{"", "  ", "short"}, nil, "a short word", "a short word"},
		{"the same secret twice, one mask", []string{"secret-value-1", "secret-value-1"}, []string{"secret-value-1"},
			"secret-value-1 secret-value-1", "*** ***"},
		{"a secret inside another is replaced whole", []string{"abcdefgh", "xxabcdefghyy"}, []string{"abcdefgh", "xxabcdefghyy"},
			"xxabcdefghyy abcdefgh", "*** ***"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var raw bytes.Buffer
			s := newSecrets(&raw)
			for _, v := range tt.add {
				s.Add(v)
			}
			var masks []string
			for _, line := range strings.Split(strings.TrimSpace(raw.String()), "\n") {
				if m, ok := strings.CutPrefix(line, "::add-mask::"); ok {
					masks = append(masks, m)
				} else if line != "" {
					t.Errorf("unexpected line %q", line)
				}
			}
			if fmt.Sprint(masks) != fmt.Sprint(tt.wantMasks) {
				t.Errorf("masks %q, want %q", masks, tt.wantMasks)
			}
			if got := s.Redact(tt.text); got != tt.wantText {
				t.Errorf("Redact = %q, want %q", got, tt.wantText)
			}
			var out bytes.Buffer
			fmt.Fprint(s.Writer(&out), tt.text)
			if out.String() != tt.wantText {
				t.Errorf("Writer wrote %q, want %q", out.String(), tt.wantText)
			}
		})
	}
}

// TestMaskingTransport: the App's JWT and the installation token GitHub
// returns are masked as they pass, and the response still reads whole.
func TestMaskingTransport(t *testing.T) {
	const jwt, instToken = "eyJhbGciOiJSUzI1NiJ9.eyJpc3MiOiI3In0.c2lnbmF0dXJl", "ghs_installationTokenValue0123456789"
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodPost && strings.HasSuffix(r.URL.Path, "/access_tokens") {
			w.WriteHeader(http.StatusCreated)
			fmt.Fprintf(w, `{"token":%q,"expires_at":"2030-01-01T00:00:00Z"}`, instToken)
			return
		}
		io.WriteString(w, `{"token":"not-a-token-response"}`)
	}))
	defer srv.Close()
	var raw bytes.Buffer
	s := newSecrets(&raw)
	c := &http.Client{Transport: &maskingTransport{base: http.DefaultTransport, s: s}}

	req, _ := http.NewRequest(http.MethodPost, srv.URL+"/app/installations/9/access_tokens", nil)
	req.Header.Set("Authorization", "Bearer "+jwt)
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if !strings.Contains(string(body), instToken) {
		t.Errorf("the body was not passed on: %s", body)
	}
	resp, err = c.Get(srv.URL + "/repos/a/b/actions/runners")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if got, want := raw.String(), "::add-mask::"+jwt+"\n::add-mask::"+instToken+"\n"; got != want {
		t.Errorf("masked:\n%s\nwant:\n%s", got, want)
	}
}
