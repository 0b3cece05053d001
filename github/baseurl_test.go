package github

import (
	"strings"
	"testing"
)

func TestValidateBaseURL(t *testing.T) {
	tests := []struct {
		raw     string
		wantErr string // empty: valid
	}{
		{"https://api.github.com", ""},
		{"https://api.github.com/", ""},
		{"https://ghe.example.com/api/v3", ""},
		{"https://ghe.example.com:8443/api/v3/", ""},
		{"http://127.0.0.1:8080", ""},
		{"http://127.1.2.3", ""},
		{"http://[::1]:9000/api", ""},
		{"http://localhost:1234", ""},
		{"http://LOCALHOST", ""},
		{"", "empty"},
		{"   ", "empty"},
		{"api.github.com", "absolute"},
		{"/api/v3", "absolute"},
		{"https://", "absolute"},
		{"mailto:x@example.com", "absolute"},
		{"http://api.github.com", "https"},
		{"http://10.0.0.1", "https"},
		{"http://localhost.example.com", "https"},
		{"http://128.0.0.1", "https"},
		{"ftp://api.github.com", "scheme"},
		{"https://user:secret@api.github.com", "user info"},
		{"https://user@api.github.com", "user info"},
		{"https://api.github.com/?x=1", "query"},
		{"https://api.github.com/?", "query"},
		{"https://api.github.com/#top", "fragment"},
		{"https://api.github.com/#", "fragment"},
		{"https://api.github.com:port", "parse"},
	}
	for _, tt := range tests {
		t.Run(tt.raw, func(t *testing.T) {
			u, err := ValidateBaseURL(tt.raw)
			if tt.wantErr == "" {
				if err != nil {
					t.Fatalf("ValidateBaseURL(%q): %v", tt.raw, err)
				}
				if u.String() != tt.raw {
					t.Errorf("URL changed: %q -> %q", tt.raw, u)
				}
				return
			}
			if err == nil {
				t.Fatalf("ValidateBaseURL(%q) = %v, want an error about %s", tt.raw, u, tt.wantErr)
			}
			if !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("error %q does not mention %q", err, tt.wantErr)
			}
			if strings.Contains(err.Error(), "secret") {
				t.Errorf("error %q repeats user info", err)
			}
		})
	}
}
