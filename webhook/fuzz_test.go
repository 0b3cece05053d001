package webhook_test

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/crabbox/crabbox-runner/provisioner"
	"github.com/crabbox/crabbox-runner/webhook"
)

// FuzzWebhook throws arbitrary deliveries at the handler. Whatever comes,
// it must not panic, must answer one of the contract's codes, must refuse
// anything not signed with the secret, and must hand the provisioner only
// events that decoded cleanly. Seeds are in testdata/fuzz/FuzzWebhook.
func FuzzWebhook(f *testing.F) {
	f.Add("workflow_job", []byte(queued), true, "application/json")
	f.Add("workflow_job", []byte(`{"action":"completed","workflow_job":{"id":1,"runner_name":"x","labels":[]},"repository":{"full_name":"a/b"}}`), true, "application/json")
	f.Add("ping", []byte(`{"zen":"Keep it logically awesome."}`), true, "application/json")
	f.Add("workflow_job", []byte("payload=%7B%7D"), true, "application/x-www-form-urlencoded")
	f.Add("workflow_job", []byte(queued), false, "application/json")
	f.Add("", []byte(``), true, "")
	f.Fuzz(func(t *testing.T, event string, body []byte, sign bool, contentType string) {
		r := &recorder{out: provisioner.Accepted}
		h, err := webhook.New(webhook.Config{Secret: secret, Events: r, MaxBody: 64 << 10, Logger: discardLogger()})
		if err != nil {
			t.Fatal(err)
		}
		req := httptest.NewRequest(http.MethodPost, "/webhook", strings.NewReader(string(body)))
		req.Header.Set("X-GitHub-Event", event)
		req.Header.Set("Content-Type", contentType)
		if sign {
			req.Header.Set("X-Hub-Signature-256", webhook.Sign(secret, body))
		}
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		switch rec.Code {
		case 200, 202, 400, 401, 413:
		default:
			t.Fatalf("status %d", rec.Code)
		}
		if !sign && rec.Code != 401 && rec.Code != 413 {
			t.Fatalf("unsigned delivery answered %d", rec.Code)
		}
		for _, ev := range r.events {
			if ev.JobID <= 0 || ev.Action == "" || !strings.Contains(ev.Repo, "/") {
				t.Fatalf("handler got an event that should not have decoded: %+v", ev)
			}
		}
	})
}
