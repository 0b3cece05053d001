package github

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"strings"
)

// ValidateBaseURL checks an API base URL the way DESIGN.md §5 asks: https,
// or http on a loopback host (tests, local fakes); no user info, query or
// fragment. Plain http anywhere else would send the token in clear text, and
// user info or a query would be a second, unexpected place for a secret.
// The URL is returned parsed and otherwise unchanged.
func ValidateBaseURL(raw string) (*url.URL, error) {
	if strings.TrimSpace(raw) == "" {
		return nil, errors.New("API URL is empty")
	}
	u, err := url.Parse(raw)
	if err != nil {
		// url.Error repeats the input, which might be a mistyped secret;
		// say only what is wrong.
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return nil, fmt.Errorf("API URL does not parse: %v", err)
	}
	if u.Opaque != "" || u.Host == "" {
		return nil, errors.New("API URL must be absolute, like https://api.github.com")
	}
	if u.User != nil {
		return nil, errors.New("API URL must not carry user info")
	}
	if u.RawQuery != "" || u.ForceQuery {
		return nil, errors.New("API URL must not have a query")
	}
	if u.Fragment != "" || strings.Contains(raw, "#") {
		return nil, errors.New("API URL must not have a fragment")
	}
	switch u.Scheme {
	case "https":
	case "http":
		if !isLoopback(u.Hostname()) {
			return nil, fmt.Errorf("API URL must use https (http is allowed for loopback hosts only, not %q)", u.Hostname())
		}
	default:
		return nil, fmt.Errorf("API URL scheme must be https, not %q", u.Scheme)
	}
	return u, nil
}

// isLoopback reports whether host is localhost, 127.0.0.0/8 or ::1.
func isLoopback(host string) bool {
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}
