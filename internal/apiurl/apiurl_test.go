package apiurl_test

import (
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/crabbox/crabbox-runner/internal/apiurl"
)

func TestValidate(t *testing.T) {
	for _, tc := range []struct {
		raw  string
		want string // "" = valid
	}{
		{"https://api.github.com", ""},
		{"https://ghes.example.com/api/v3/", ""},
		{"http://127.0.0.1:8080", ""},
		{"http://[::1]:9000", ""},
		{"http://localhost", ""},
		{"http://api.example.com", "must use https"},
		{"ftp://api.example.com", "scheme must be https"},
		{"https://user:secret@api.example.com", "user info"},
		{"https://api.example.com/?key=secret", "query"},
		{"https://api.example.com/#frag", "fragment"},
		{"api.example.com", "absolute"},
		{"", "empty"},
		{"https://%zz", "does not parse"},
	} {
		_, err := apiurl.Validate(tc.raw, "https://api.example.com")
		switch {
		case tc.want == "" && err != nil:
			t.Errorf("%q: %v", tc.raw, err)
		case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
			t.Errorf("%q: %v, want %q", tc.raw, err, tc.want)
		case err != nil && strings.Contains(err.Error(), "secret"):
			t.Errorf("%q: the error repeats the URL: %v", tc.raw, err)
		}
	}
}

func TestSameHostRedirects(t *testing.T) {
	base, _ := url.Parse("https://api.example.com")
	check := apiurl.SameHostRedirects("x", base, 2)
	req := func(u string) *http.Request { r, _ := http.NewRequest("GET", u, nil); return r }
	if err := check(req("https://API.example.com/next"), nil); err != nil {
		t.Errorf("same host: %v", err)
	}
	if err := check(req("https://evil.example.com/"), nil); err == nil {
		t.Error("another host was allowed")
	}
	if err := check(req("http://api.example.com/"), nil); err == nil {
		t.Error("a downgrade to http was allowed")
	}
	if err := check(req("https://api.example.com/"), make([]*http.Request, 2)); err == nil {
		t.Error("no limit on redirects")
	}
}
