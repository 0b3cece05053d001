package github

import (
	"context"
	"errors"
	"fmt"

	gh "github.com/google/go-github/v62/github"
)

// ErrNeedsApp is wrapped by the errors of calls that only a GitHub App can
// make: they use the App's JWT (reference §4.1), which a token is not.
var ErrNeedsApp = errors.New("this needs a GitHub App (CRABBOX_GITHUB_APP_ID with CRABBOX_GITHUB_APP_PRIVATE_KEY), not a token")

// perPage is the page size of every listing: GitHub's maximum, to keep
// the number of requests (and the rate limit spent, §4.3) down.
const perPage = 100

// maxPages stops a listing that never ends, say behind a proxy that
// ignores the page parameter; 100,000 items is far beyond any real one.
const maxPages = 1000

// Installation is one installation of the GitHub App.
type Installation struct {
	ID          int64
	Account     string // the org or user login
	AccountType string // "Organization" or "User"
}

// Installations lists the App's installations, with the App's JWT
// (GET /app/installations). Suspended installations are left out: every
// call on their behalf would fail. A token client gets ErrNeedsApp.
func (c *Client) Installations(ctx context.Context) ([]Installation, error) {
	if c.appClient == nil {
		return nil, fmt.Errorf("github: list the App's installations: %w", ErrNeedsApp)
	}
	var out []Installation
	err := eachPage(func(page int) (int, *gh.Response, error) {
		list, resp, err := c.appClient.Apps.ListInstallations(ctx, &gh.ListOptions{PerPage: perPage, Page: page})
		for _, in := range list {
			if in.SuspendedAt != nil {
				continue
			}
			out = append(out, Installation{
				ID:          in.GetID(),
				Account:     in.GetAccount().GetLogin(),
				AccountType: in.GetAccount().GetType(),
			})
		}
		return len(list), resp, err
	})
	if err != nil {
		return nil, fmt.Errorf("github: list the App's installations: %w", err)
	}
	return out, nil
}

// eachPage calls fetch for pages 1, 2, … until one is the last; fetch
// returns how many items its page had.
func eachPage(fetch func(page int) (int, *gh.Response, error)) error {
	for page := 1; ; page++ {
		if page > maxPages {
			return fmt.Errorf("gave up after %d pages", maxPages)
		}
		n, resp, err := fetch(page)
		if err != nil {
			return fmt.Errorf("page %d: %w", page, err)
		}
		if !morePages(resp, n) {
			return nil
		}
	}
}

// morePages reports whether a page of n items has a successor. A short
// page is the last, which saves the request for an empty one. A full page
// is the last when the Link header has no next; without a Link header
// (some proxies drop it) only asking tells.
func morePages(resp *gh.Response, n int) bool {
	if n < perPage {
		return false
	}
	if resp != nil && resp.Header.Get("Link") != "" {
		return resp.NextPage != 0
	}
	return true
}
