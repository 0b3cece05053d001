package provisioner

import (
	"context"
	"strings"
)

// Repository visibilities, as GitHub names them (repository.visibility).
const (
	VisibilityPublic   = "public"
	VisibilityPrivate  = "private"
	VisibilityInternal = "internal"
)

// RepoVisibility reads a repository's visibility from what GitHub sent:
// the visibility field when it names one GitHub knows, else the private
// flag, else "" (unknown). Webhook payloads always carry private and
// usually visibility (@octokit/openapi-webhooks repository-webhooks); REST
// repository objects carry both (@octokit/openapi repository).
func RepoVisibility(visibility string, private *bool) string {
	switch v := strings.ToLower(strings.TrimSpace(visibility)); v {
	case VisibilityPublic, VisibilityPrivate, VisibilityInternal:
		return v
	}
	switch {
	case private == nil:
		return ""
	case *private:
		return VisibilityPrivate
	default:
		return VisibilityPublic
	}
}

// RunnerGroups tells whether the runner group that this deployment's
// runners join in a scope may take jobs from a repository. On GitHub a
// runner group serves only private repositories unless it allows public
// ones, and a "selected" group only its selected repositories
// (reference/github-runners.md §3.3); a runner it registers for a job it
// cannot serve never gets the job, and the host bills until a deadline.
type RunnerGroups interface {
	// GroupServes reports whether the scope's runner group serves repo
	// (owner/name) of the given visibility. ok=false comes with a reason a
	// person can act on. An error means GitHub could not say; the caller
	// then rents nothing for the job (the safe default) and asks again
	// later.
	GroupServes(ctx context.Context, scope Scope, repo, visibility string) (ok bool, reason string, err error)
}
