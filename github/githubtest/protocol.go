package githubtest

// The fake runner protocol. The real listener long-polls GitHub's Actions
// service with credentials from .credentials; the fake run.sh does the same
// with plain HTTP against this server:
//
//	POST /_fake/runner/{id}/poll                 -> {"action":"idle"|"job"|"exit", ...}
//	POST /_fake/runner/{id}/jobs/{job}/done      {"exit_code":N} -> 204
//	POST /_fake/runner/{id}/jobs/{job}/renew     -> 200 while the job runs (rerun.go)
//
// Both carry "Authorization: Bearer <token>", the token from .credentials.
// A poll marks the runner online. An unknown or deleted runner gets 404 and
// the runner exits; a runner that ran its job gets "exit".

import (
	"crypto/subtle"
	"encoding/json"
	"net/http"
	"strconv"
	"time"
)

func (s *Server) handlePoll(w http.ResponseWriter, r *http.Request) {
	id, _ := strconv.ParseInt(r.PathValue("id"), 10, 64)
	tok := credentials(r)
	s.mu.Lock()
	status, body := s.pollLocked(id, tok, time.Now())
	s.mu.Unlock()
	writeJSON(w, status, body)
}

func (s *Server) pollLocked(id int64, tok string, now time.Time) (int, any) {
	rn := s.runners[id]
	if rn == nil {
		if old := s.retired[id]; old != nil && sameToken(old.token, tok) {
			return http.StatusOK, pollAnswer{Action: "exit"}
		}
		return http.StatusNotFound, errorBody("Not Found")
	}
	if !sameToken(rn.token, tok) {
		return http.StatusUnauthorized, errorBody("Bad credentials")
	}
	rn.lastSeen = now
	if !rn.reportedOnline {
		rn.reportedOnline = true
		s.emitLocked(Event{Kind: EventRunnerOnline, RunnerID: rn.id, RunnerName: rn.name, Scope: rn.scope.String()})
	}
	defer s.notifyLocked()

	if rn.jobID != 0 {
		j := s.jobs[rn.jobID]
		if j.Status != StatusInProgress {
			// Cancelled under it: the runner's one job is over.
			s.retireLocked(rn, "its job was cancelled")
			return http.StatusOK, pollAnswer{Action: "exit"}
		}
		// Polling again with a job means our last answer was lost.
		return http.StatusOK, s.jobAnswer(j)
	}
	if j := s.assignLocked(rn, now); j != nil {
		return http.StatusOK, s.jobAnswer(j)
	}
	return http.StatusOK, pollAnswer{Action: "idle"}
}

func (s *Server) handleJobDone(w http.ResponseWriter, r *http.Request) {
	id, _ := strconv.ParseInt(r.PathValue("id"), 10, 64)
	jobID, _ := strconv.ParseInt(r.PathValue("job"), 10, 64)
	var body struct {
		ExitCode *int `json:"exit_code"`
	}
	if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, 1<<16)).Decode(&body); err != nil || body.ExitCode == nil {
		writeError(w, http.StatusBadRequest, "exit_code is required")
		return
	}
	tok := credentials(r)

	s.mu.Lock()
	defer s.mu.Unlock()
	rn := s.runners[id]
	if rn == nil {
		if old := s.retired[id]; old != nil && sameToken(old.token, tok) && old.jobID == jobID {
			w.WriteHeader(http.StatusNoContent) // a repeated report
			return
		}
		writeError(w, http.StatusNotFound, "Not Found")
		return
	}
	if !sameToken(rn.token, tok) {
		writeError(w, http.StatusUnauthorized, "Bad credentials")
		return
	}
	if rn.jobID != jobID || jobID == 0 {
		writeError(w, http.StatusNotFound, "Not Found")
		return
	}
	if j := s.jobs[jobID]; j.Status == StatusInProgress {
		conclusion := "success"
		if *body.ExitCode != 0 {
			conclusion = "failure"
		}
		s.completeLocked(j, conclusion)
	}
	// A JIT runner runs one job; GitHub then removes it.
	s.retireLocked(rn, "ran its one job")
	s.notifyLocked()
	w.WriteHeader(http.StatusNoContent)
}

// retireLocked removes a runner that is done; its polls then answer exit.
func (s *Server) retireLocked(rn *runner, why string) {
	delete(s.runners, rn.id)
	s.retired[rn.id] = rn
	s.emitLocked(Event{Kind: EventRunnerRemoved, RunnerID: rn.id, RunnerName: rn.name, Scope: rn.scope.String(), Detail: why})
}

func sameToken(want, got string) bool {
	return want != "" && subtle.ConstantTimeCompare([]byte(want), []byte(got)) == 1
}

func errorBody(msg string) map[string]string {
	return map[string]string{"message": msg, "documentation_url": "https://docs.github.com/rest"}
}
