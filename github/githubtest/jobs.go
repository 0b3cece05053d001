package githubtest

import (
	"context"
	"crypto/sha1"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Workflow job statuses, as GitHub spells them.
const (
	StatusQueued     = "queued"
	StatusInProgress = "in_progress"
	StatusCompleted  = "completed"
)

// JobSpec describes a workflow job to queue.
type JobSpec struct {
	Repo   string   // "owner/name", required
	Org    string   // the org that owns Repo; empty for a user's repo
	Labels []string // the job's runs-on labels, at least one
	Name   string   // job name; "build" when empty
	// WorkflowName is the workflow's name; "CI" when empty.
	WorkflowName string
	// WorkflowPath is the workflow file; ".github/workflows/ci.yml" when
	// empty. It matters to runner groups restricted to workflows.
	WorkflowPath string
	// Script is the bash script the runner runs; a short echo when empty.
	Script string
	// InstallationID goes into the webhook's installation.id. When zero in
	// App mode it is looked up in Options.Installations (repo, then owner).
	InstallationID int64
	// RunID puts the job into that workflow run of the same repository
	// (see QueueRun); zero starts a run of its own.
	RunID int64
}

// Job is a workflow job as the fake sees it.
type Job struct {
	ID, RunID, RunAttempt int64

	Repo, Org          string
	Name, WorkflowName string
	WorkflowPath       string
	Labels             []string
	Script             string
	InstallationID     int64
	HeadBranch         string
	HeadSHA            string

	Status     string // StatusQueued, StatusInProgress or StatusCompleted
	Conclusion string // success, failure or cancelled once completed

	// The runner that took the job; zero while queued, and for a job
	// cancelled before any runner took it.
	RunnerID        int64
	RunnerName      string
	RunnerGroupID   int64
	RunnerGroupName string

	CreatedAt, StartedAt, CompletedAt time.Time

	// Annotation is the error GitHub shows on the job's page, set when the
	// job failed because its runner stopped answering (LostRunnerMessage).
	Annotation string
	// RerunOf is the job this one re-runs (rerun.go); zero for a first run.
	RerunOf int64

	renewedAt time.Time // the runner's last renewal of the job (rerun.go)
}

func (j *Job) clone() Job {
	c := *j
	c.Labels = slices.Clone(j.Labels)
	return c
}

// QueueJob creates a queued workflow job (run attempt 1) and sends its
// queued webhook. The next online, idle runner in scope whose labels cover
// the job's takes it when it polls. QueueJob panics on a spec without an
// owner/name repo or without labels: that is a mistake in the test.
func (s *Server) QueueJob(spec JobSpec) int64 {
	owner, name, ok := strings.Cut(spec.Repo, "/")
	if !ok || owner == "" || name == "" || strings.Contains(name, "/") {
		panic(fmt.Sprintf("githubtest: QueueJob: repo %q is not owner/name", spec.Repo))
	}
	if len(spec.Labels) == 0 {
		panic("githubtest: QueueJob: a job needs at least one runs-on label")
	}
	if spec.Name == "" {
		spec.Name = "build"
	}
	if spec.WorkflowName == "" {
		spec.WorkflowName = "CI"
	}
	if spec.WorkflowPath == "" {
		spec.WorkflowPath = ".github/workflows/ci.yml"
	}
	if spec.Script == "" {
		spec.Script = `echo "hello from $RUNNER_NAME"`
	}

	s.mu.Lock()
	defer s.mu.Unlock()
	inst := spec.InstallationID
	if inst == 0 && s.opts.AppID != 0 {
		if id, ok := s.opts.Installations[strings.ToLower(spec.Repo)]; ok {
			inst = id
		} else {
			inst = s.opts.Installations[strings.ToLower(owner)]
		}
	}
	now := time.Now().UTC().Truncate(time.Second)
	j := &Job{
		ID:             s.nextJobID,
		RunID:          s.runIDLocked(spec),
		RunAttempt:     1,
		Repo:           spec.Repo,
		Org:            spec.Org,
		Name:           spec.Name,
		WorkflowName:   spec.WorkflowName,
		WorkflowPath:   spec.WorkflowPath,
		Labels:         slices.Clone(spec.Labels),
		Script:         spec.Script,
		InstallationID: inst,
		HeadBranch:     "main",
		Status:         StatusQueued,
		CreatedAt:      now,
		// GitHub already sets started_at on queued (reference §1.2).
		StartedAt: now,
	}
	sum := sha1.Sum([]byte("crabbox-fake-run-" + strconv.FormatInt(j.RunID, 10)))
	j.HeadSHA = hex.EncodeToString(sum[:])
	s.nextJobID++
	s.jobs[j.ID] = j
	s.queue = append(s.queue, j.ID)
	s.emitLocked(Event{Kind: EventJobQueued, JobID: j.ID, Scope: "repo:" + j.Repo, Detail: "labels " + strings.Join(j.Labels, ",")})
	s.webhookLocked(j, "queued")
	s.notifyLocked()
	return j.ID
}

// CancelJob cancels a job that has not completed: it becomes completed
// with conclusion cancelled and a completed webhook is sent. A queued job
// keeps null runner fields. A running job's runner is retired when it
// reports back or polls next.
func (s *Server) CancelJob(id int64) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	j := s.jobs[id]
	if j == nil {
		return fmt.Errorf("githubtest: no job %d", id)
	}
	if j.Status == StatusCompleted {
		return fmt.Errorf("githubtest: job %d already completed (%s)", id, j.Conclusion)
	}
	if j.Status == StatusQueued {
		s.queue = slices.DeleteFunc(s.queue, func(q int64) bool { return q == id })
	}
	s.completeLocked(j, "cancelled")
	s.notifyLocked()
	return nil
}

// Job returns a snapshot of a job.
func (s *Server) Job(id int64) (Job, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	j := s.jobs[id]
	if j == nil {
		return Job{}, false
	}
	return j.clone(), true
}

// WaitJob waits until the job has reached status (or gone past it, as
// queued < in_progress < completed) and returns its snapshot.
func (s *Server) WaitJob(ctx context.Context, id int64, status string) (Job, error) {
	want := statusRank(status)
	if want == 0 {
		return Job{}, fmt.Errorf("githubtest: WaitJob: unknown status %q", status)
	}
	for {
		s.mu.Lock()
		j := s.jobs[id]
		if j == nil {
			s.mu.Unlock()
			return Job{}, fmt.Errorf("githubtest: no job %d", id)
		}
		snap := j.clone()
		changed := s.changed
		s.mu.Unlock()
		if statusRank(snap.Status) >= want {
			return snap, nil
		}
		select {
		case <-changed:
		case <-ctx.Done():
			return snap, fmt.Errorf("githubtest: job %d is %s, still waiting for %s: %w", id, snap.Status, status, ctx.Err())
		}
	}
}

// WaitRunners waits until cond holds for the registered runners, checking
// after every change, and returns them.
func (s *Server) WaitRunners(ctx context.Context, cond func([]Runner) bool) ([]Runner, error) {
	for {
		s.mu.Lock()
		changed := s.changed
		s.mu.Unlock()
		rs := s.Runners()
		if cond(rs) {
			return rs, nil
		}
		select {
		case <-changed:
		case <-ctx.Done():
			return rs, fmt.Errorf("githubtest: runners never reached the wanted state: %w", ctx.Err())
		}
	}
}

func statusRank(status string) int {
	switch status {
	case StatusQueued:
		return 1
	case StatusInProgress:
		return 2
	case StatusCompleted:
		return 3
	}
	return 0
}

// assignLocked gives rn the oldest queued job it can serve, as GitHub
// routes a job to an idle runner whose labels are a superset of the job's.
func (s *Server) assignLocked(rn *runner, now time.Time) *Job {
	for i, id := range s.queue {
		j := s.jobs[id]
		if !s.servesLocked(rn, j) {
			continue
		}
		s.queue = slices.Delete(s.queue, i, i+1)
		j.Status = StatusInProgress
		j.StartedAt = now.UTC().Truncate(time.Second)
		j.renewedAt = now
		j.RunnerID = rn.id
		j.RunnerName = rn.name
		j.RunnerGroupID = rn.groupID
		j.RunnerGroupName = s.groupNameLocked(rn)
		rn.jobID = j.ID
		s.emitLocked(Event{Kind: EventJobAssigned, JobID: j.ID, RunnerID: rn.id, RunnerName: rn.name, Scope: rn.scope.String()})
		s.webhookLocked(j, "in_progress")
		return j
	}
	return nil
}

// servesLocked reports whether the runner may take the job, as GitHub
// routes jobs: an org runner takes jobs of the org's repos that its runner
// group may serve (groups.go: visibility, selected repositories, public
// repositories, selected workflows), a repo runner jobs of its repo (runner
// groups are an organization and enterprise feature; docs "Managing access
// to self-hosted runners using groups"), and every job label must be one
// of the runner's, default labels included, ignoring case (reference §4.4).
func (s *Server) servesLocked(rn *runner, j *Job) bool {
	switch {
	case rn.scope.repo != "":
		if !strings.EqualFold(rn.scope.repo, j.Repo) {
			return false
		}
	case j.Org == "" || !strings.EqualFold(rn.scope.org, j.Org):
		return false
	default:
		g := s.groupLocked(rn.scope.org, rn.groupID)
		if g == nil {
			return false
		}
		if ok, _ := s.groupServesLocked(g, j.Repo, j.workflowRef()); !ok {
			return false
		}
	}
	have := rn.allLabels()
	for _, want := range j.Labels {
		if !slices.ContainsFunc(have, func(h string) bool { return strings.EqualFold(h, want) }) {
			return false
		}
	}
	return true
}

// workflowRef names the job's workflow as selected_workflows does:
// "owner/repo/.github/workflows/ci.yml@refs/heads/main".
func (j *Job) workflowRef() string {
	return j.Repo + "/" + j.WorkflowPath + "@refs/heads/" + j.HeadBranch
}

// completeLocked finishes a job and sends its completed webhook.
func (s *Server) completeLocked(j *Job, conclusion string) {
	j.Status = StatusCompleted
	j.Conclusion = conclusion
	j.CompletedAt = time.Now().UTC().Truncate(time.Second)
	detail := conclusion
	if j.RunnerID == 0 {
		detail += " (no runner took it)"
	}
	s.emitLocked(Event{Kind: EventJobCompleted, JobID: j.ID, RunnerID: j.RunnerID, RunnerName: j.RunnerName, Scope: "repo:" + j.Repo, Detail: detail})
	s.webhookLocked(j, "completed")
}

// pollAnswer is what a runner's poll gets, as one line of JSON so that the
// fake run.sh can read it with sed.
type pollAnswer struct {
	Action     string `json:"action"` // idle, job or exit
	JobID      int64  `json:"job_id,omitempty"`
	RunID      int64  `json:"run_id,omitempty"`
	Repository string `json:"repository,omitempty"`
	JobName    string `json:"job_name,omitempty"`
	Script     string `json:"script,omitempty"` // base64
	// RenewInterval is how often, in seconds, the runner renews the job
	// while it runs (rerun.go).
	RenewInterval string `json:"renew_interval,omitempty"`
}

func (s *Server) jobAnswer(j *Job) pollAnswer {
	return pollAnswer{
		RenewInterval: strconv.FormatFloat(s.renewInterval().Seconds(), 'f', -1, 64),
		Action:        "job",
		JobID:         j.ID,
		RunID:         j.RunID,
		Repository:    j.Repo,
		JobName:       j.Name,
		Script:        base64.StdEncoding.EncodeToString([]byte(j.Script)),
	}
}

// handleGetJob: GET /repos/{owner}/{repo}/actions/jobs/{job_id}, the
// authoritative state of one job for reconciliation (reference §2.2).
func (s *Server) handleGetJob(w http.ResponseWriter, r *http.Request, sc scope) {
	id, err := strconv.ParseInt(r.PathValue("job_id"), 10, 64)
	s.mu.Lock()
	j := s.jobs[id]
	if err != nil || j == nil || !strings.EqualFold(j.Repo, sc.repo) {
		s.mu.Unlock()
		writeError(w, http.StatusNotFound, "Not Found")
		return
	}
	body := s.restJobLocked(j)
	s.mu.Unlock()
	writeJSON(w, http.StatusOK, body)
}

// restJobLocked is a job as the REST API shows it (OAS job).
func (s *Server) restJobLocked(j *Job) workflowJobJSON {
	out := s.workflowJobLocked(j)
	if s.opts.RESTOmitsRunAttempt {
		out.RunAttempt = nil
	}
	return out
}
