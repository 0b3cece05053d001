package main

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/crabbox/crabbox-runner/github/githubtest"
	"github.com/crabbox/crabbox-runner/provisioner"
	"github.com/crabbox/crabbox-runner/webhook"
)

// Issue #15: signed in_progress + completed deliveries from another org
// naming our runner destroyed our host. A delivery signed with our secret
// is what any org that installs the App sends (GitHub signs every
// installation's deliveries with the App's one secret); runner names are
// public in job logs. The stranger's deliveries are answered "ignored" and
// our host keeps running its job.
func TestServeIgnoresForeignEventsNamingOurRunner(t *testing.T) {
	e := startServe(t, "60s", nil)
	id := e.gh.QueueJob(githubtest.JobSpec{Repo: "acme/vision", Org: "acme", Labels: []string{"self-hosted", "crabbox", "A100"},
		Name: "train", Script: `sleep 6; echo trained`})
	var ours *provisioner.Lease
	e.waitFor("our lease busy with the job", 60*time.Second, func() bool {
		ls := e.leases()
		if len(ls) == 1 && ls[0].State == provisioner.StateBusy {
			ours = ls[0]
			return true
		}
		return false
	})
	for i, action := range []string{"in_progress", "completed"} {
		code, body := e.foreignDelivery(t, i, action, ours.RunnerName)
		if code != http.StatusOK || !strings.Contains(body, "ignored") {
			t.Errorf("mallory's %s: %d %q, want 200 ignored", action, code, body)
		}
	}
	time.Sleep(500 * time.Millisecond) // a release would be under way by now
	ls := e.leases()
	if len(ls) != 1 || ls[0].State != provisioner.StateBusy || ls[0].ReleaseReason != "" || ls[0].BoundJobID != id {
		t.Fatalf("our lease after mallory's deliveries: %+v, want busy with job %d", ls[0], id)
	}
	if n := len(e.hosts.Live()); n != 1 {
		t.Fatalf("%d hosts live after mallory's deliveries, want ours", n)
	}
	if job := e.waitJob(id); job.Conclusion != "success" {
		t.Fatalf("our job: %q, want success", job.Conclusion)
	}
	e.waitClean()
	if !strings.Contains(e.logs.String(), "does not match its lease") {
		t.Errorf("the ignored deliveries were not logged")
	}
	metrics := e.get("/metrics")
	for _, action := range []string{"in_progress", "completed"} {
		want := `crabbox_webhook_deliveries_total{action="` + action + `",event="workflow_job",result="ignored"} 1`
		if !strings.Contains(metrics, want) {
			t.Errorf("/metrics lacks %s", want)
		}
		// mallory's repositories are not of the org our lease was made for.
		want = `crabbox_foreign_events_total{action="` + action + `",field="org"} 1`
		if !strings.Contains(metrics, want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
	e.stop()
}

// foreignDelivery posts a workflow_job delivery from mallory-org's own
// installation, with the fields GitHub's workflow_job payload carries
// (docs "Webhook events and payloads" → workflow_job), signed with our
// secret as GitHub signs every installation's deliveries.
func (e *e2e) foreignDelivery(t *testing.T, seq int, action, runnerName string) (int, string) {
	t.Helper()
	payload := map[string]any{
		"action": action,
		"workflow_job": map[string]any{
			"id": 990001, "run_id": 880001, "run_attempt": 1, "status": action, "name": "steal",
			"labels": []string{"self-hosted", "crabbox", "A100"}, "runner_name": runnerName,
			"conclusion": map[bool]any{true: "success", false: nil}[action == "completed"],
		},
		"repository":   map[string]any{"full_name": "mallory-org/ml", "private": true, "visibility": "private"},
		"organization": map[string]any{"login": "mallory-org"},
		"installation": map[string]any{"id": 66601},
	}
	body, err := json.Marshal(payload)
	if err != nil {
		t.Fatal(err)
	}
	req, _ := http.NewRequest(http.MethodPost, e.url+"/webhook", bytes.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("X-GitHub-Event", "workflow_job")
	req.Header.Set("X-GitHub-Delivery", "mallory-"+action+"-"+string(rune('a'+seq)))
	req.Header.Set("X-Hub-Signature-256", webhook.Sign([]byte(e.secret), body))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}
