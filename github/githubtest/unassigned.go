package githubtest

import "slices"

// Jobs no runner gets, whatever runner groups say (groups.go): what the
// no-lease-loop tests need of the fake.

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
