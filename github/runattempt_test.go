package github_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"testing"

	"github.com/crabbox/crabbox-runner/github"
	"github.com/crabbox/crabbox-runner/github/githubtest"
	"github.com/crabbox/crabbox-runner/provisioner"
)

// A REST job may come without run_attempt (the OAS job schema does not
// require it): both decoders read it as attempt 1, the attempt its webhook
// names, so the reconcile does not skip the job forever.
func TestRunAttemptMissingMeansFirst(t *testing.T) {
	fake := githubtest.New(githubtest.Options{Tokens: []string{testToken}, RESTOmitsRunAttempt: true, Logf: t.Logf})
	t.Cleanup(fake.Close)
	c, err := github.New(github.Config{APIURL: fake.URL(), Token: testToken, JITPerMinute: -1})
	if err != nil {
		t.Fatal(err)
	}
	ctx := ctxFor(t)
	id := fake.QueueJob(githubtest.JobSpec{Repo: "acme/app", Org: "acme", Labels: []string{"gpu"}})

	// The fake really leaves the field out, else this test proves nothing.
	req, _ := http.NewRequestWithContext(ctx, "GET", fmt.Sprintf("%s/repos/acme/app/actions/jobs/%d", fake.URL(), id), nil)
	req.Header.Set("Authorization", "Bearer "+testToken)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	var raw map[string]any
	err = json.NewDecoder(resp.Body).Decode(&raw)
	resp.Body.Close()
	if _, has := raw["run_attempt"]; err != nil || has || raw["id"] == nil {
		t.Fatalf("fake job = %v, %v; want one without run_attempt", raw, err)
	}

	ev, err := c.JobStatus(ctx, provisioner.Scope{Org: "acme"}, "acme/app", id)
	if err != nil || ev.RunAttempt != 1 {
		t.Fatalf("JobStatus = %+v, %v; want RunAttempt 1", ev, err)
	}
	for _, scope := range []provisioner.Scope{{Org: "acme"}, {Repo: "acme/app"}} {
		evs, err := c.QueuedJobs(ctx, scope)
		if err != nil || len(evs) != 1 || evs[0].JobID != id || evs[0].RunAttempt != 1 {
			t.Fatalf("QueuedJobs(%s) = %+v, %v; want job %d with RunAttempt 1", scope, evs, err, id)
		}
	}
}
