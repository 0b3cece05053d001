package provisioner

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"slices"
	"strings"
)

// Policy: who may spend. A job fits a class only when its labels name the
// class (a label of the class that is not one of GitHub's default runner
// labels) and the class's policy admits its repository; a job refused is
// answered 2xx, recorded with its reason, and never leased.

// DefaultRunnerLabels are the labels GitHub gives every self-hosted runner
// (config.sh adds them; the API lists them as read-only): self-hosted, the
// OS and the architecture. Sources: docs "Using labels with self-hosted
// runners" (docs.github.com/actions/hosting-your-own-runners/managing-self-hosted-runners/using-labels-with-self-hosted-runners),
// reference/github-runners.md §4.4. They say nothing about a GPU, so they
// never choose a class on their own: `runs-on: self-hosted` rents nothing.
var DefaultRunnerLabels = []string{"self-hosted", "linux", "windows", "macos", "x64", "arm", "arm64"}

// IsDefaultLabel reports whether l is one of DefaultRunnerLabels, ignoring case.
func IsDefaultLabel(l string) bool {
	for _, d := range DefaultRunnerLabels {
		if strings.EqualFold(strings.TrimSpace(l), d) {
			return true
		}
	}
	return false
}

// UnservableKind says why a job gets no lease, in a small fixed set (the
// reason label of crabbox_jobs_refused_total). The empty kind is a job that
// may be served.
type UnservableKind string

// Why a job gets no lease.
const (
	// Refused by policy, when the delivery arrives.
	RefusedDefaultLabels UnservableKind = "default_labels_only"    // its labels name no class, only GitHub's defaults
	RefusedRepository    UnservableKind = "repository_not_allowed" // outside the class's repositories
	RefusedPublic        UnservableKind = "public_repository"      // public (or unknown) and the class does not allow public ones
	UnservableGroup      UnservableKind = "runner_group"           // the runner group cannot serve the repository
	UnservableGroupError UnservableKind = "runner_group_unknown"   // GitHub could not say; asked again by reconcile
	UnservableUnassigned UnservableKind = "never_assigned"         // two runners came online and GitHub gave neither the job
	UnservableBackoff    UnservableKind = "retry_backoff"          // one runner went unused; the second lease waits
)

// UnservableKinds lists every kind, for metrics and documentation.
var UnservableKinds = []UnservableKind{RefusedDefaultLabels, RefusedRepository, RefusedPublic, UnservableGroup,
	UnservableGroupError, UnservableUnassigned, UnservableBackoff}

// Refused reports whether the kind is a policy refusal: decided from the
// job's labels, repository and visibility alone, so the job is never asked
// about again until the configuration changes.
func (k UnservableKind) Refused() bool {
	return k == RefusedDefaultLabels || k == RefusedRepository || k == RefusedPublic
}

// fitsLabels reports whether every job label is one of the class labels,
// ignoring case.
func (c *Class) fitsLabels(jobLabels []string) bool {
	if len(jobLabels) == 0 {
		return false
	}
	for _, jl := range jobLabels {
		if !slices.ContainsFunc(c.Labels, func(cl string) bool { return strings.EqualFold(jl, cl) }) {
			return false
		}
	}
	return true
}

// namedBy reports whether one of the job's labels is a label of the class
// that is not a GitHub default label.
func (c *Class) namedBy(jobLabels []string) bool {
	for _, jl := range jobLabels {
		if IsDefaultLabel(jl) {
			continue
		}
		if slices.ContainsFunc(c.Labels, func(cl string) bool { return strings.EqualFold(jl, cl) }) {
			return true
		}
	}
	return false
}

// Admits reports whether the class's policy lets a job of repo (owner/name)
// with the given visibility spend on it; when not, which rule refuses and
// a reason a person can act on. An unknown visibility ("") is taken as
// public, the stricter reading.
func (c *Class) Admits(repo, visibility string) (UnservableKind, string) {
	if len(c.Repositories) > 0 && !slices.ContainsFunc(c.Repositories, func(p string) bool { return RepoMatches(p, repo) }) {
		return RefusedRepository, fmt.Sprintf("repository %s is not in class %s's repositories (%s)", repo, c.Name, strings.Join(c.Repositories, ", "))
	}
	if !c.PublicRepositories && (visibility == VisibilityPublic || visibility == "") {
		what := "public"
		if visibility == "" {
			what = "of unknown visibility (taken as public)"
		}
		return RefusedPublic, fmt.Sprintf("repository %s is %s and class %s does not set public_repositories: true", repo, what, c.Name)
	}
	return "", ""
}

// RepoMatches reports whether repo (owner/name) matches a pattern,
// "owner/name" or "owner/*", ignoring case as GitHub does for names.
func RepoMatches(pattern, repo string) bool {
	po, pn, ok := strings.Cut(pattern, "/")
	ro, rn, ok2 := strings.Cut(repo, "/")
	if !ok || !ok2 || !strings.EqualFold(po, ro) {
		return false
	}
	return pn == "*" || strings.EqualFold(pn, rn)
}

// CheckRepoPattern tells what is wrong with a repositories pattern, or nil.
func CheckRepoPattern(p string) error {
	owner, name, ok := strings.Cut(p, "/")
	switch {
	case !ok || strings.Contains(name, "/"):
		return fmt.Errorf("%q must be owner/name or owner/*", p)
	case !validName(owner) || strings.Contains(owner, "*"):
		return fmt.Errorf("%q: owner %q is not a GitHub login (no wildcards in the owner)", p, owner)
	case name != "*" && !validName(name):
		return fmt.Errorf("%q: name %q is not a repository name (a whole name, or * alone)", p, name)
	}
	return nil
}

func validName(s string) bool {
	if s == "" || len(s) > 100 {
		return false
	}
	for _, r := range s {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_' || r == '.') {
			return false
		}
	}
	return true
}

// Refusal says why a job that would fit a class by its labels gets none.
type Refusal struct {
	Kind   UnservableKind
	Class  string // the first class whose labels fit; "" when none was named
	Reason string
}

// MatchJob chooses the class for a job: the first class, in configuration
// order, whose labels fit and name it and whose policy admits the job's
// repository. A class whose policy refuses the job does not end the search:
// a later class with the same labels may admit it (say, a public class with
// a tighter cap listed after a private one). When the labels fit classes but
// every one refuses, the refusal of the first is returned; when they fit no
// class at all, both are nil (the job is for some other runner).
func MatchJob(classes []Class, labels []string, repo, visibility string) (*Class, *Refusal) {
	var refusal *Refusal
	for i := range classes {
		c := &classes[i]
		if !c.fitsLabels(labels) {
			continue
		}
		if !c.namedBy(labels) {
			if refusal == nil {
				refusal = &Refusal{Kind: RefusedDefaultLabels,
					Reason: fmt.Sprintf("runs-on %s names only GitHub's default runner labels; add a class label such as %s",
						strings.Join(labels, ", "), firstOwnLabel(c))}
			}
			continue
		}
		kind, reason := c.Admits(repo, visibility)
		if kind == "" {
			return c, nil
		}
		if refusal == nil || refusal.Kind == RefusedDefaultLabels {
			refusal = &Refusal{Kind: kind, Class: c.Name, Reason: reason}
		}
	}
	return nil, refusal
}

func firstOwnLabel(c *Class) string {
	for _, l := range c.Labels {
		if !IsDefaultLabel(l) {
			return l
		}
	}
	return "(none)"
}

// PolicyHash is a short digest of what decides whether a job is served:
// each class's name, labels, repositories and public_repositories, in
// order. A job marked unservable remembers it; at start a mark made under
// another policy is cleared, so a configuration change is a change that
// gives the job another chance.
func PolicyHash(classes []Class) string {
	h := sha256.New()
	for _, c := range classes {
		fmt.Fprintf(h, "%q %q %q %t\n", c.Name, c.Labels, c.Repositories, c.PublicRepositories)
	}
	return hex.EncodeToString(h.Sum(nil))[:16]
}
