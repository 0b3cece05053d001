package githubtest

import (
	"bytes"
	"encoding/json"
	"slices"
	"strings"
	"testing"

	gh "github.com/google/go-github/v62/github"
)

// parseJobEvent decodes a workflow_job payload the way a receiver would.
func parseJobEvent(t *testing.T, body []byte) *gh.WorkflowJobEvent {
	t.Helper()
	ev, err := gh.ParseWebHook("workflow_job", body)
	if err != nil {
		t.Fatalf("ParseWebHook: %v", err)
	}
	return ev.(*gh.WorkflowJobEvent)
}

func TestSignatureMatchesGitHubTestVector(t *testing.T) {
	// docs: validating-webhook-deliveries (reference §1.4).
	got := Signature([]byte("It's a Secret to Everybody"), []byte("Hello, World!"))
	want := "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17"
	if got != want {
		t.Errorf("Signature = %s, want %s", got, want)
	}
}

func TestWebhookDeliveries(t *testing.T) {
	secret := []byte("It's a Secret to Everybody")
	s := newTestServer(t, Options{HookID: 77})
	h := newHook(t)
	s.SetWebhook(h.URL, secret)
	ctx := ctxFor(t)

	rn := register(t, s, "/orgs/acme", "gpu-7", "self-hosted", "gpu")
	id := s.QueueJob(JobSpec{Repo: "acme/app", Org: "acme", Labels: []string{"self-hosted", "gpu"}, Name: "train", WorkflowName: "GPU"})
	poll(t, s, rn)
	if code := done(t, s, rn, id, 0); code != 204 {
		t.Fatalf("done: %d", code)
	}
	ds, err := s.WaitDeliveries(ctx, 3)
	if err != nil {
		t.Fatal(err)
	}
	got := h.received()
	if len(got) != 3 {
		t.Fatalf("receiver got %d deliveries", len(got))
	}

	guids := map[string]bool{}
	for i, action := range []string{"queued", "in_progress", "completed"} {
		rec, d := got[i], ds[i]
		hd := rec.header
		if hd.Get("X-GitHub-Event") != "workflow_job" || hd.Get("X-GitHub-Hook-ID") != "77" ||
			!strings.HasPrefix(hd.Get("User-Agent"), "GitHub-Hookshot/") || hd.Get("Content-Type") != "application/json" {
			t.Errorf("%s: headers %v", action, hd)
		}
		guid := hd.Get("X-GitHub-Delivery")
		if !guidRE.MatchString(guid) || guids[guid] || guid != d.GUID {
			t.Errorf("%s: delivery GUID %q (recorded %q) must be a fresh GUID", action, guid, d.GUID)
		}
		guids[guid] = true
		if sig := hd.Get("X-Hub-Signature-256"); sig != Signature(secret, rec.body) {
			t.Errorf("%s: signature %q does not match the body", action, sig)
		}
		if !bytes.Equal(rec.body, d.Body) || d.StatusCode != 202 || d.Error != "" || d.Action != action || d.JobID != id {
			t.Errorf("%s: recorded delivery %+v", action, d)
		}

		ev := parseJobEvent(t, rec.body)
		wj := ev.GetWorkflowJob()
		if ev.GetAction() != action || wj.GetStatus() != action || wj.GetID() != id || wj.GetRunAttempt() != 1 || wj.GetRunID() == 0 {
			t.Errorf("%s: action %q status %q id %d attempt %d", action, ev.GetAction(), wj.GetStatus(), wj.GetID(), wj.GetRunAttempt())
		}
		if !slices.Equal(wj.Labels, []string{"self-hosted", "gpu"}) || wj.GetName() != "train" || wj.GetWorkflowName() != "GPU" ||
			wj.GetHeadBranch() != "main" || len(wj.GetHeadSHA()) != 40 || wj.GetHTMLURL() == "" || wj.CreatedAt == nil || wj.StartedAt == nil {
			t.Errorf("%s: workflow_job %s", action, rec.body)
		}
		if ev.GetRepo().GetFullName() != "acme/app" || ev.GetRepo().GetName() != "app" || ev.GetRepo().GetOwner().GetLogin() != "acme" ||
			ev.GetRepo().GetID() == 0 || ev.GetOrg().GetLogin() != "acme" || ev.GetSender().GetLogin() == "" {
			t.Errorf("%s: repository/organization/sender %s", action, rec.body)
		}
		if ev.Installation != nil {
			t.Errorf("%s: a token-mode hook has no installation", action)
		}
		switch action {
		case "queued":
			if wj.RunnerID != nil || wj.RunnerName != nil || wj.Conclusion != nil || wj.CompletedAt != nil {
				t.Errorf("queued: runner fields and conclusion must be null: %s", rec.body)
			}
		case "in_progress", "completed":
			if wj.GetRunnerID() != rn.ID || wj.GetRunnerName() != "gpu-7" || wj.GetRunnerGroupID() != 1 || wj.GetRunnerGroupName() != "Default" {
				t.Errorf("%s: runner fields %s", action, rec.body)
			}
		}
		if action == "completed" && (wj.GetConclusion() != "success" || wj.CompletedAt == nil) {
			t.Errorf("completed: %s", rec.body)
		}
	}
}

func TestWebhookWithoutSecretIsUnsigned(t *testing.T) {
	s := newTestServer(t, Options{})
	h := newHook(t)
	s.SetWebhook(h.URL, nil)
	s.QueueJob(JobSpec{Repo: "alice/app", Labels: []string{"x"}})
	if _, err := s.WaitDeliveries(ctxFor(t), 1); err != nil {
		t.Fatal(err)
	}
	got := h.received()[0]
	if _, ok := got.header["X-Hub-Signature-256"]; ok {
		t.Error("a hook without a secret sends no signature")
	}
	ev := parseJobEvent(t, got.body)
	if ev.Org != nil {
		t.Error("a user's repo has no organization")
	}
}

func TestHoldReorderDuplicateDrop(t *testing.T) {
	s := newTestServer(t, Options{})
	h := newHook(t)
	s.SetWebhook(h.URL, []byte("k"))
	ctx := ctxFor(t)

	s.HoldDeliveries(true)
	a := s.QueueJob(JobSpec{Repo: "acme/app", Org: "acme", Labels: []string{"x"}})
	b := s.QueueJob(JobSpec{Repo: "acme/app", Org: "acme", Labels: []string{"x"}})
	c := s.QueueJob(JobSpec{Repo: "acme/app", Org: "acme", Labels: []string{"x"}})
	if n := len(s.Deliveries()); n != 0 {
		t.Fatalf("%d deliveries sent while held", n)
	}
	var heldIDs []int64
	s.ReleaseDeliveries(func(held []Delivery) []Delivery {
		for _, d := range held {
			heldIDs = append(heldIDs, d.JobID)
		}
		// c twice, then a; b is dropped.
		return []Delivery{held[2], held[2], held[0]}
	})
	if !slices.Equal(heldIDs, []int64{a, b, c}) {
		t.Errorf("held = %v, want %v", heldIDs, []int64{a, b, c})
	}
	ds, err := s.WaitDeliveries(ctx, 3)
	if err != nil {
		t.Fatal(err)
	}
	var order []int64
	for _, d := range ds {
		order = append(order, d.JobID)
	}
	if !slices.Equal(order, []int64{c, c, a}) || ds[0].GUID != ds[1].GUID {
		t.Errorf("sent %v (GUIDs %s %s), want c, c (same GUID), a", order, ds[0].GUID, ds[1].GUID)
	}

	// Still held: a new event waits until holding ends.
	d := s.QueueJob(JobSpec{Repo: "acme/app", Org: "acme", Labels: []string{"x"}})
	s.HoldDeliveries(false)
	ds, err = s.WaitDeliveries(ctx, 4)
	if err != nil {
		t.Fatal(err)
	}
	if ds[3].JobID != d {
		t.Errorf("after HoldDeliveries(false) sent job %d, want %d", ds[3].JobID, d)
	}

	// Redelivery: same GUID and body, marked as such.
	if err := s.Redeliver(ds[2].GUID); err != nil {
		t.Fatal(err)
	}
	if err := s.Redeliver("nope"); err == nil {
		t.Error("redelivering an unknown GUID should fail")
	}
	ds, err = s.WaitDeliveries(ctx, 5)
	if err != nil {
		t.Fatal(err)
	}
	if r := ds[4]; !r.Redelivery || r.GUID != ds[2].GUID || !bytes.Equal(r.Body, ds[2].Body) {
		t.Errorf("redelivery = %+v", r)
	}
	got := h.received()
	if got[4].header.Get("X-GitHub-Delivery") != ds[2].GUID {
		t.Error("the redelivery must carry the original GUID")
	}
}

func TestPingAndFailedDeliveries(t *testing.T) {
	s := newTestServer(t, Options{})
	ctx := ctxFor(t)

	s.Ping() // no URL yet: recorded as failed
	h := newHook(t)
	h.answer(500)
	s.SetWebhook(h.URL, []byte("k"))
	s.Ping()
	ds, err := s.WaitDeliveries(ctx, 2)
	if err != nil {
		t.Fatal(err)
	}
	if ds[0].Error == "" || ds[0].StatusCode != 0 {
		t.Errorf("delivery without a URL = %+v", ds[0])
	}
	if ds[1].Event != "ping" || ds[1].StatusCode != 500 {
		t.Errorf("ping = %+v", ds[1])
	}
	var body struct {
		Zen    string `json:"zen"`
		HookID int64  `json:"hook_id"`
	}
	if err := json.Unmarshal(ds[1].Body, &body); err != nil || body.Zen == "" || body.HookID != 1 {
		t.Errorf("ping body %s (%v)", ds[1].Body, err)
	}
	if got := h.received()[0].header.Get("X-GitHub-Event"); got != "ping" {
		t.Errorf("X-GitHub-Event = %q", got)
	}
}
