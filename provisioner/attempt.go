package provisioner

// RunAttempt normalises a workflow run attempt as GitHub reports it. The
// REST job object (OAS job.run_attempt) and the webhook's workflow_job both
// describe the field as optional, and a run that was never re-run is
// attempt 1: a missing or zero attempt is that first attempt. Every decoder
// of a job passes its value through here, so that attempts read from a
// webhook and from the REST API compare equal.
func RunAttempt(n int64) int64 {
	if n < 1 {
		return 1
	}
	return n
}
