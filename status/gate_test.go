package status_test

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/crabbox/crabbox-runner/status"
)

// The gate's three ways: the token, open on loopback, closed elsewhere;
// a closed gate opens for no header at all, and says how to open it.
func TestGate(t *testing.T) {
	secretData := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.Write([]byte("acme/private-repo")) })
	bearer := func(tok string) func(*http.Request) {
		return func(r *http.Request) { r.Header.Set("Authorization", "Bearer "+tok) }
	}
	cases := []struct {
		name     string
		gate     *status.Gate
		access   status.Access
		req      func(*http.Request)
		want     int
		bodyHave string
	}{
		{"token, none given", status.NewGate(testToken, false), status.TokenOnly, nil, 401, "status token"},
		{"token, given", status.NewGate(testToken, false), status.TokenOnly, bearer(testToken), 200, "private-repo"},
		{"token on loopback, none given", status.NewGate(testToken, true), status.TokenOnly, nil, 401, "status token"},
		{"loopback, no token", status.NewGate("", true), status.Open, nil, 200, "private-repo"},
		{"closed", status.NewGate("", false), status.Closed, nil, 403, "CRABBOX_STATUS_TOKEN"},
		{"closed, a bearer given", status.NewGate("", false), status.Closed, bearer("anything-at-all"), 403, "metrics_listen"},
		{"closed, an empty bearer", status.NewGate("", false), status.Closed, bearer(""), 403, "loopback"},
	}
	for _, tc := range cases {
		if got := tc.gate.Access(); got != tc.access {
			t.Errorf("%s: access %s, want %s", tc.name, got, tc.access)
		}
		req := httptest.NewRequest(http.MethodGet, "/metrics", nil)
		if tc.req != nil {
			tc.req(req)
		}
		rec := httptest.NewRecorder()
		tc.gate.Wrap(secretData).ServeHTTP(rec, req)
		body := rec.Body.String()
		if rec.Code != tc.want || !strings.Contains(body, tc.bodyHave) {
			t.Errorf("%s: %d %q, want %d with %q", tc.name, rec.Code, body, tc.want, tc.bodyHave)
		}
		if tc.want != 200 && (strings.Contains(body, "private-repo") || rec.Header().Get("Content-Type") != "text/plain; charset=utf-8") {
			t.Errorf("%s: refused with %q (%s)", tc.name, body, rec.Header().Get("Content-Type"))
		}
	}
}

// The page takes serve's gate: a closed one keeps it closed.
func TestPageBehindAClosedGate(t *testing.T) {
	s := seedStore(t)
	h, err := status.New(status.Config{Store: s.st, Gate: status.NewGate("", false)})
	if err != nil {
		t.Fatal(err)
	}
	resp, body := get(t, h, nil)
	if resp.StatusCode != 403 || strings.Contains(body, "l-busy") || body != status.ClosedMessage {
		t.Fatalf("%d %q", resp.StatusCode, body)
	}
}
