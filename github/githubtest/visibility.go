package githubtest

import (
	"slices"
	"strings"
)

// Repository visibility and jobs no runner gets: what issue 13's policy
// tests need of the fake (part C). Part D models runner groups, which
// decide assignment on their own; these two are the minimum until then.

// SetRepoVisibility sets a repository's visibility: "public", "private"
// (the default) or "internal". Webhook payloads then carry it as GitHub's
// do: repository.private (required) and repository.visibility
// (@octokit/openapi-webhooks, schema repository-webhooks; "internal" is
// not private=false: only public is).
func (s *Server) SetRepoVisibility(repo, visibility string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.repoVisibility == nil {
		s.repoVisibility = map[string]string{}
	}
	s.repoVisibility[strings.ToLower(repo)] = visibility
}

// visibilityLocked is a repository's visibility and its private flag.
func (s *Server) visibilityLocked(repo string) (string, bool) {
	v := s.repoVisibility[strings.ToLower(repo)]
	if v == "" {
		v = "private"
	}
	return v, v != "public"
}

// QueueUnassignedJob queues a job that no runner ever gets: it stays
// queued (webhook and REST say so) while runners with matching labels come
// online and poll. It models GitHub routing a job elsewhere though such a
// runner is online: runs-on naming a runner group the runner is not in
// (docs "Choosing the runner for a job", runs-on group), or a runner group
// that does not serve the repository (docs "Managing access to
// self-hosted runners using groups"); GitHub leaves the job queued until
// it is cancelled, after 24 hours (docs "Usage limits, billing, and
// administration": job queue time). Queue it while no idle runner could
// take it at once.
func (s *Server) QueueUnassignedJob(spec JobSpec) int64 {
	id := s.QueueJob(spec)
	s.mu.Lock()
	defer s.mu.Unlock()
	s.queue = slices.DeleteFunc(s.queue, func(q int64) bool { return q == id })
	return id
}
