package github

import (
	"net/url"

	"github.com/crabbox/crabbox-runner/internal/apiurl"
)

// ValidateBaseURL checks an API base URL the way DESIGN.md §5 asks (see
// package apiurl). The URL is returned parsed and otherwise unchanged.
func ValidateBaseURL(raw string) (*url.URL, error) {
	return apiurl.Validate(raw, DefaultAPIURL)
}
