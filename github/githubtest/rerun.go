package githubtest

// Jobs lost with their runner, and re-running a job.
//
// A runner that has a job renews the job's lock with GitHub while it runs
// (actions/runner src/Runner.Listener/JobDispatcher.cs, RenewJobRequestAsync:
// "renew again after 60 sec delay"; on errors it keeps retrying until the
// lock's LockedUntil plus 5 minutes). A runner whose host died stops
// renewing; GitHub then fails the job with conclusion failure and the
// annotation LostRunnerMessage, and sends the completed webhook. The delay
// is not documented; Options.LostRunnerTimeout holds it (10 minutes by
// default, what users of self-hosted runners report) and tests scale it
// down. The fake runner renews through /_fake/runner/{id}/jobs/{job}/renew
// at the interval its job answer names.
//
// POST /repos/{owner}/{repo}/actions/jobs/{job_id}/rerun is GitHub's
// actions/re-run-job-for-workflow-run (@octokit/openapi api.github.com.json:
// optional body {"enable_debug_logging", "enable_debugger"}, 201 with an
// empty object, 403 basic-error). It creates the run's next attempt, in
// which the job is queued again under a new job id (reference
// github-runners.md §open questions 7: believed new per attempt; clients
// key on (job id, run_attempt) anyway), with its queued webhook. Any job of
// a completed run may be re-run, not only a failed one, for 30 days
// (github/docs content/actions/managing-workflow-runs/
// re-running-workflows-and-jobs.md: "specific jobs in a workflow run up to
// 30 days after its initial run"); the stricter reading of what is refused
// while the run runs is kept (refused until the whole run completed). The
// endpoint also re-runs the job's dependent jobs; the fake's runs have no
// `needs:`, so there are none to re-run.

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// LostRunnerMessage is the error GitHub shows on a job whose runner stopped
// answering, with the runner's name for %s (quoted word for word in
// actions/runner#2624, #2040, open-telemetry/opentelemetry-collector-contrib#34000).
const LostRunnerMessage = "The self-hosted runner: %s lost communication with the server. " +
	"Verify the machine is running and has a healthy network connection. Anything in your workflow " +
	"that terminates the runner process, starves it for CPU/Memory, or blocks its network access can cause this error."

// DefaultLostRunnerTimeout is how long a job's runner may go without
// renewing before the fake fails the job.
const DefaultLostRunnerTimeout = 10 * time.Minute

// realRenewInterval is the real runner's renewal period (JobDispatcher.cs).
const realRenewInterval = 60 * time.Second

// renewInterval is how often the fake runner renews its job: the real
// runner's 60 s, or often enough to renew four times within a scaled-down
// LostRunnerTimeout.
func (s *Server) renewInterval() time.Duration {
	return min(realRenewInterval, s.opts.LostRunnerTimeout/4)
}

// Messages of GitHub's 403 answers to a re-run it refuses.
const (
	// The run still has jobs queued or running (NVIDIA-NeMo/RL#1193 quotes
	// the answer to this very endpoint: 403 with this message).
	MsgRunStillRunning = "The workflow run containing this job is already running"
	// An attempt that is not the run's latest, or a run over a month old
	// (cli/cli#9989: "Unable to retry this workflow run because it was
	// created over a month ago"; metabase/metabase#70916 lists "This
	// workflow run cannot be retried" among the 403s of re-runs).
	MsgRunCannotRetry = "This workflow run cannot be retried"
	MsgRunTooOld      = "Unable to retry this workflow run because it was created over a month ago"
)

// handleRenew: POST /_fake/runner/{id}/jobs/{job}/renew, the fake runner's
// renewal of its job's lock. A job that is no longer running answers 404
// (the real runner stops renewing on TaskAgentJobNotFoundException).
func (s *Server) handleRenew(w http.ResponseWriter, r *http.Request) {
	id, _ := strconv.ParseInt(r.PathValue("id"), 10, 64)
	jobID, _ := strconv.ParseInt(r.PathValue("job"), 10, 64)
	tok := credentials(r)
	s.mu.Lock()
	defer s.mu.Unlock()
	rn := s.runners[id]
	if rn == nil || !sameToken(rn.token, tok) || rn.jobID != jobID || jobID == 0 {
		writeError(w, http.StatusNotFound, "Not Found")
		return
	}
	j := s.jobs[jobID]
	if j.Status != StatusInProgress {
		writeError(w, http.StatusNotFound, "Not Found")
		return
	}
	now := time.Now()
	j.renewedAt = now
	rn.lastSeen = now
	writeJSON(w, http.StatusOK, map[string]string{"locked_until": now.Add(s.opts.LostRunnerTimeout).UTC().Format(time.RFC3339)})
}

// failLostLocked fails the running jobs whose runner has not renewed within
// LostRunnerTimeout, as GitHub does, and lets their runners go (GitHub
// removes a just-in-time runner once its one job is over).
func (s *Server) failLostLocked(now time.Time) bool {
	changed := false
	for _, id := range sortedKeys(s.jobs) {
		j := s.jobs[id]
		if j.Status != StatusInProgress || now.Sub(j.renewedAt) <= s.opts.LostRunnerTimeout {
			continue
		}
		j.Annotation = fmt.Sprintf(LostRunnerMessage, j.RunnerName)
		s.completeLocked(j, "failure")
		if rn := s.runners[j.RunnerID]; rn != nil && rn.jobID == j.ID {
			s.retireLocked(rn, "lost communication with the server")
		}
		changed = true
	}
	return changed
}

// handleRerunJob: POST /repos/{owner}/{repo}/actions/jobs/{job_id}/rerun.
func (s *Server) handleRerunJob(w http.ResponseWriter, r *http.Request, sc scope) {
	id, err := strconv.ParseInt(r.PathValue("job_id"), 10, 64)
	if err != nil {
		writeError(w, http.StatusNotFound, "Not Found")
		return
	}
	// The body is optional and nullable; when present it is an object.
	raw, _ := io.ReadAll(http.MaxBytesReader(w, r.Body, 1<<16))
	if len(strings.TrimSpace(string(raw))) > 0 {
		var body *struct {
			EnableDebugLogging *bool `json:"enable_debug_logging"`
			EnableDebugger     *bool `json:"enable_debugger"`
		}
		if err := json.Unmarshal(raw, &body); err != nil {
			writeError(w, http.StatusBadRequest, "Problems parsing JSON")
			return
		}
	}

	s.mu.Lock()
	defer s.mu.Unlock()
	j := s.jobs[id]
	if j == nil || !strings.EqualFold(j.Repo, sc.repo) {
		writeError(w, http.StatusNotFound, "Not Found")
		return
	}
	if _, err := s.rerunLocked(j); err != nil {
		writeError(w, http.StatusForbidden, err.Error())
		return
	}
	s.notifyLocked()
	writeJSON(w, http.StatusCreated, map[string]any{})
}

// RerunJob re-runs a job as the API does (for tests acting as a person
// pressing "Re-run job"), returning the new attempt's job id.
func (s *Server) RerunJob(id int64) (int64, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	j := s.jobs[id]
	if j == nil {
		return 0, fmt.Errorf("githubtest: no job %d", id)
	}
	nid, err := s.rerunLocked(j)
	if err == nil {
		s.notifyLocked()
	}
	return nid, err
}

// Jobs returns a snapshot of every job, in id order.
func (s *Server) Jobs() []Job {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]Job, 0, len(s.jobs))
	for _, id := range sortedKeys(s.jobs) {
		out = append(out, s.jobs[id].clone())
	}
	return out
}

// Reruns returns, in order, the ids of the jobs that were re-run.
func (s *Server) Reruns() []int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []int64
	for _, id := range sortedKeys(s.jobs) {
		if of := s.jobs[id].RerunOf; of != 0 {
			out = append(out, of)
		}
	}
	return out
}

func (s *Server) rerunLocked(j *Job) (int64, error) {
	current := s.runJobsLocked(j.RunID)
	latest := false
	for _, c := range current {
		if c.ID == j.ID {
			latest = true
		}
	}
	switch {
	case !latest:
		return 0, errors.New(MsgRunCannotRetry)
	case run{id: j.RunID, jobs: current}.status() != StatusCompleted:
		return 0, errors.New(MsgRunStillRunning)
	case time.Since(j.CreatedAt) > 30*24*time.Hour:
		return 0, errors.New(MsgRunTooOld)
	}
	attempt := int64(0)
	for _, c := range current {
		attempt = max(attempt, c.RunAttempt)
	}
	now := time.Now().UTC().Truncate(time.Second)
	n := &Job{
		ID: s.nextJobID, RunID: j.RunID, RunAttempt: attempt + 1,
		Repo: j.Repo, Org: j.Org, Name: j.Name, WorkflowName: j.WorkflowName, WorkflowPath: j.WorkflowPath,
		Labels: append([]string(nil), j.Labels...), Script: j.Script, InstallationID: j.InstallationID,
		HeadBranch: j.HeadBranch, HeadSHA: j.HeadSHA,
		Status: StatusQueued, CreatedAt: now, StartedAt: now,
		RerunOf: j.ID,
	}
	s.nextJobID++
	s.jobs[n.ID] = n
	s.queue = append(s.queue, n.ID)
	s.emitLocked(Event{Kind: EventJobQueued, JobID: n.ID, Scope: "repo:" + n.Repo,
		Detail: fmt.Sprintf("re-run of job %d (attempt %d), labels %s", j.ID, n.RunAttempt, strings.Join(n.Labels, ","))})
	s.webhookLocked(n, "queued")
	return n.ID, nil
}

// runJobsLocked is a run's latest attempt: its jobs that no re-run
// replaced (a re-run's attempt carries the jobs it did not re-run over).
func (s *Server) runJobsLocked(runID int64) []*Job {
	replaced := map[int64]bool{}
	for _, j := range s.jobs {
		if j.RunID == runID && j.RerunOf != 0 {
			replaced[j.RerunOf] = true
		}
	}
	var out []*Job
	for _, id := range sortedKeys(s.jobs) {
		if j := s.jobs[id]; j.RunID == runID && !replaced[j.ID] {
			out = append(out, j)
		}
	}
	return out
}
