// Package apiurl checks the base URLs of the APIs crabbox-runner sends
// credentials to (GitHub, Vast, Lambda), the one way DESIGN.md §5 asks:
// https, or http on a loopback host (tests, local fakes); no user info,
// query or fragment; and no redirect off the host. Plain http elsewhere
// would send a key in clear text, and user info or a query would be a
// second, unexpected place for a secret.
package apiurl

import (
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"strings"
)

// Validate parses raw and checks it. example ("https://api.github.com")
// shows the expected form in the error. Errors never repeat the URL, which
// could be a secret pasted into the wrong variable.
func Validate(raw, example string) (*url.URL, error) {
	if strings.TrimSpace(raw) == "" {
		return nil, errors.New("API URL is empty")
	}
	u, err := url.Parse(strings.TrimSpace(raw))
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return nil, fmt.Errorf("API URL does not parse: %v", err)
	}
	switch {
	case u.Opaque != "" || u.Host == "":
		return nil, errors.New("API URL must be absolute, like " + example)
	case u.User != nil:
		return nil, errors.New("API URL must not carry user info; credentials come from the environment")
	case u.RawQuery != "" || u.ForceQuery:
		return nil, errors.New("API URL must not have a query")
	case u.Fragment != "" || strings.Contains(raw, "#"):
		return nil, errors.New("API URL must not have a fragment")
	}
	switch u.Scheme {
	case "https":
	case "http":
		if !IsLoopback(u.Hostname()) {
			return nil, fmt.Errorf("API URL must use https (http is allowed for loopback hosts only, not %q)", u.Hostname())
		}
	default:
		return nil, fmt.Errorf("API URL scheme must be https, not %q", u.Scheme)
	}
	return u, nil
}

// IsLoopback reports whether host is localhost, 127.0.0.0/8 or ::1.
func IsLoopback(host string) bool {
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// SameHostRedirects is an http.Client CheckRedirect that refuses any
// redirect off the base's scheme and host, so credentials never reach a
// server we were not pointed at. name prefixes its errors.
func SameHostRedirects(name string, base *url.URL, max int) func(*http.Request, []*http.Request) error {
	return func(req *http.Request, via []*http.Request) error {
		if len(via) >= max {
			return fmt.Errorf("%s: stopped after %d redirects", name, max)
		}
		if req.URL.Scheme != base.Scheme || !strings.EqualFold(req.URL.Host, base.Host) {
			return fmt.Errorf("%s: refusing redirect to another host (%s://%s)", name, req.URL.Scheme, req.URL.Host)
		}
		return nil
	}
}

// Key trims an API key and checks it can go into an Authorization header:
// present, and without whitespace or control characters (which would end
// up in a header, or mean the wrong value was pasted). The error names the
// variable, never the value.
func Key(provider, envVar, key string) (string, error) {
	key = strings.TrimSpace(key)
	if key == "" {
		return "", fmt.Errorf("%s: %s is not set", provider, envVar)
	}
	if strings.ContainsFunc(key, func(r rune) bool { return r <= ' ' || r == 0x7f }) {
		return "", fmt.Errorf("%s: %s contains whitespace or control characters", provider, envVar)
	}
	return key, nil
}
