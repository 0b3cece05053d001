package webhook_test

import (
	"bytes"
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"net/url"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/crabbox/crabbox-runner/provisioner"
	"github.com/crabbox/crabbox-runner/webhook"
)

type recorder struct {
	mu     sync.Mutex
	events []provisioner.JobEvent
	out    provisioner.Outcome
	err    error
}

func (r *recorder) HandleJobEvent(ctx context.Context, ev provisioner.JobEvent) (provisioner.Outcome, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.events = append(r.events, ev)
	return r.out, r.err
}

var secret = []byte("s3cret-for-tests")

const queued = `{"action":"queued","workflow_job":{"id":42,"run_id":7,"run_attempt":1,"labels":["self-hosted","A100"],
"status":"queued","conclusion":null,"runner_name":null,"name":"train","workflow_name":"ci"},
"repository":{"full_name":"acme/ml","name":"ml","owner":{"login":"acme"}},"organization":{"login":"acme"},"installation":{"id":99}}`

func post(t *testing.T, h http.Handler, event, body, sig string, hdr ...string) *httptest.ResponseRecorder {
	t.Helper()
	req := httptest.NewRequest(http.MethodPost, "/webhook", strings.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	if event != "" {
		req.Header.Set("X-GitHub-Event", event)
	}
	req.Header.Set("X-GitHub-Delivery", "d-1")
	if sig != "" {
		req.Header.Set("X-Hub-Signature-256", sig)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	return rec
}

func newHandler(t *testing.T, r *recorder) *webhook.Handler {
	t.Helper()
	h, err := webhook.New(webhook.Config{Secret: secret, Events: r, MaxBody: 4096})
	if err != nil {
		t.Fatal(err)
	}
	return h
}

func TestStatusCodes(t *testing.T) {
	big := `{"action":"queued","pad":"` + strings.Repeat("x", 5000) + `"}`
	malformed := `{"action":"queued","workflow_job":`
	noJob := `{"action":"queued","repository":{"full_name":"a/b"}}`
	cases := []struct {
		name    string
		event   string
		body    string
		sig     string
		outcome provisioner.Outcome
		want    int
		calls   int
	}{
		{"accepted", "workflow_job", queued, webhook.Sign(secret, []byte(queued)), provisioner.Accepted, 202, 1},
		{"duplicate is ignored", "workflow_job", queued, webhook.Sign(secret, []byte(queued)), provisioner.Duplicate, 200, 1},
		{"no class is ignored", "workflow_job", queued, webhook.Sign(secret, []byte(queued)), provisioner.Ignored, 200, 1},
		{"ping", "ping", `{"zen":"hi"}`, webhook.Sign(secret, []byte(`{"zen":"hi"}`)), 0, 200, 0},
		{"other event", "push", `{}`, webhook.Sign(secret, []byte(`{}`)), 0, 200, 0},
		{"missing signature", "workflow_job", queued, "", 0, 401, 0},
		{"wrong secret", "workflow_job", queued, webhook.Sign([]byte("other"), []byte(queued)), 0, 401, 0},
		{"sha1 only", "workflow_job", queued, "sha1=0123456789abcdef0123456789abcdef01234567", 0, 401, 0},
		{"signature of another body", "workflow_job", queued, webhook.Sign(secret, []byte(queued+" ")), 0, 401, 0},
		{"malformed json", "workflow_job", malformed, webhook.Sign(secret, []byte(malformed)), 0, 400, 0},
		{"no workflow_job", "workflow_job", noJob, webhook.Sign(secret, []byte(noJob)), 0, 400, 0},
		{"missing event header", "", queued, webhook.Sign(secret, []byte(queued)), 0, 400, 0},
		{"too large", "workflow_job", big, webhook.Sign(secret, []byte(big)), 0, 413, 0},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r := &recorder{out: tc.outcome}
			rec := post(t, newHandler(t, r), tc.event, tc.body, tc.sig)
			if rec.Code != tc.want {
				t.Fatalf("status %d, want %d (body %s)", rec.Code, tc.want, rec.Body)
			}
			if len(r.events) != tc.calls {
				t.Fatalf("handler called %d times, want %d", len(r.events), tc.calls)
			}
		})
	}
}

func TestHandlerErrorIs500(t *testing.T) {
	r := &recorder{err: errors.New("database is locked")}
	rec := post(t, newHandler(t, r), "workflow_job", queued, webhook.Sign(secret, []byte(queued)))
	if rec.Code != 500 {
		t.Fatalf("status %d, want 500", rec.Code)
	}
	if strings.Contains(rec.Body.String(), "locked") {
		t.Fatalf("internal error leaked to the response: %s", rec.Body)
	}
}

func TestDecode(t *testing.T) {
	r := &recorder{out: provisioner.Accepted}
	rec := post(t, newHandler(t, r), "workflow_job", queued, webhook.Sign(secret, []byte(queued)))
	if rec.Code != 202 {
		t.Fatalf("status %d", rec.Code)
	}
	ev := r.events[0]
	if ev.ReceivedAt.IsZero() {
		t.Fatal("no ReceivedAt")
	}
	ev.ReceivedAt = time.Time{}
	want := provisioner.JobEvent{DeliveryID: "d-1", Action: "queued", Status: "queued", JobID: 42, RunID: 7, RunAttempt: 1,
		Name: "train", Workflow: "ci", Repo: "acme/ml", Org: "acme", InstallationID: 99}
	ev.Labels = nil
	if !reflect.DeepEqual(ev, want) {
		t.Fatalf("decoded %+v\nwant    %+v", ev, want)
	}
	if got := r.events[0].Labels; len(got) != 2 || got[1] != "A100" {
		t.Fatalf("labels %v", got)
	}
}

func TestFormEncodedDelivery(t *testing.T) {
	body := "payload=" + url.QueryEscape(queued)
	r := &recorder{out: provisioner.Accepted}
	req := httptest.NewRequest(http.MethodPost, "/webhook", bytes.NewBufferString(body))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("X-GitHub-Event", "workflow_job")
	req.Header.Set("X-Hub-Signature-256", webhook.Sign(secret, []byte(body)))
	rec := httptest.NewRecorder()
	newHandler(t, r).ServeHTTP(rec, req)
	if rec.Code != 202 || len(r.events) != 1 || r.events[0].JobID != 42 {
		t.Fatalf("status %d, events %v", rec.Code, r.events)
	}
}

// GitHub's documented test vector (reference/github-runners.md §1.4).
func TestSignatureVector(t *testing.T) {
	const want = "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17"
	if got := webhook.Sign([]byte("It's a Secret to Everybody"), []byte("Hello, World!")); got != want {
		t.Fatalf("Sign = %s", got)
	}
	if !webhook.Verify([]byte("It's a Secret to Everybody"), []byte("Hello, World!"), want) {
		t.Fatal("Verify refused the documented vector")
	}
	if webhook.Verify([]byte("It's a Secret to Everybody"), []byte("Hello, World!"), strings.ToUpper(want[:7])+want[7:]) {
		t.Fatal("Verify accepted a wrong prefix")
	}
}

func TestEmptySecretRefused(t *testing.T) {
	if _, err := webhook.New(webhook.Config{Events: &recorder{}}); err == nil {
		t.Fatal("New accepted an empty secret")
	}
}

func TestHealthAndReady(t *testing.T) {
	ready := errors.New("db down")
	h, _ := webhook.New(webhook.Config{Secret: secret, Events: &recorder{}, Ready: func(context.Context) error { return ready }})
	for path, want := range map[string]int{"/healthz": 200, "/readyz": 503} {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, path, nil))
		if rec.Code != want {
			t.Fatalf("%s: %d, want %d", path, rec.Code, want)
		}
	}
	ready = nil
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/readyz", nil))
	if rec.Code != 200 {
		t.Fatalf("/readyz: %d", rec.Code)
	}
}

// The webhook schema requires run_attempt, but a payload without it (or
// with 0) is still the run's first attempt, as the REST decoders read it.
func TestDecodeRunAttemptMissingMeansFirst(t *testing.T) {
	for _, body := range []string{
		`{"action":"queued","workflow_job":{"id":5,"run_id":7,"status":"queued","labels":["gpu"]},"repository":{"full_name":"acme/ml","private":true}}`,
		`{"action":"queued","workflow_job":{"id":5,"run_id":7,"run_attempt":0,"status":"queued","labels":["gpu"]},"repository":{"full_name":"acme/ml","private":true}}`,
	} {
		ev, err := webhook.Decode([]byte(body))
		if err != nil || ev.RunAttempt != 1 {
			t.Errorf("Decode(%s) = attempt %d, %v; want 1", body, ev.RunAttempt, err)
		}
	}
	ev, err := webhook.Decode([]byte(`{"action":"queued","workflow_job":{"id":5,"run_id":7,"run_attempt":3,"status":"queued"},"repository":{"full_name":"acme/ml"}}`))
	if err != nil || ev.RunAttempt != 3 {
		t.Errorf("Decode(run_attempt 3) = %d, %v", ev.RunAttempt, err)
	}
}
