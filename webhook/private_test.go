package webhook_test

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/crabbox/crabbox-runner/webhook"
)

// Nothing a caller gets back repeats what went wrong inside: not the
// database's address on /readyz (anyone may call it), not the decoder's
// view of a payload, not the store's error (issue 15, closed by default).
func TestAnswersNameNothingPrivate(t *testing.T) {
	const private = "10.0.0.3:5432"
	h, err := webhook.New(webhook.Config{Secret: secret, Events: &recorder{err: errors.New("dial tcp " + private + ": connection refused")},
		Ready: func(context.Context) error {
			return errors.New("dial tcp " + private + ": connect: connection refused")
		},
		Logger: discardLogger()})
	if err != nil {
		t.Fatal(err)
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/readyz", nil))
	if rec.Code != 503 || strings.Contains(rec.Body.String(), private) || strings.Contains(rec.Body.String(), "dial") {
		t.Fatalf("/readyz: %d %s", rec.Code, rec.Body)
	}

	noJob := `{"action":"queued","repository":{"full_name":"secret-org/private-repo"}}`
	for name, body := range map[string]string{
		"decode error": noJob,
		"store error":  queued,
		"bad json":     `{"action":"queued","workflow_job":{"id":"secret-org/private-repo"}}`,
	} {
		rec := post(t, h, "workflow_job", body, webhook.Sign(secret, []byte(body)))
		if rec.Code < 400 {
			t.Fatalf("%s: %d", name, rec.Code)
		}
		for _, leak := range []string{private, "workflow_job", "private-repo", "json", "dial"} {
			if strings.Contains(rec.Body.String(), leak) {
				t.Errorf("%s: the answer %q repeats %q", name, rec.Body, leak)
			}
		}
	}
}
