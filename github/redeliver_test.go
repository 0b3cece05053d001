package github_test

import (
	"net/http"
	"strings"
	"testing"

	"github.com/crabbox/crabbox-runner/github"
)

// Redeliver reads the answers apps/redeliver-webhook-delivery documents
// (202, 400, 422) and a 404 besides: 422 and 404 mean no such delivery, 400
// a malformed request, 202 success.
func TestRedeliverStatuses(t *testing.T) {
	_, pemBytes := testAppKey(t)
	for _, tc := range []struct {
		status int
		want   string // in the error; "" for success
	}{
		{http.StatusAccepted, ""},
		{http.StatusUnprocessableEntity, "no such delivery"},
		{http.StatusNotFound, "no such delivery"},
		{http.StatusBadRequest, "malformed"},
		{http.StatusInternalServerError, "500"},
	} {
		sent := make(chan string, 10)
		srv := newServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			sent <- r.Method + " " + r.URL.Path
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(tc.status)
			w.Write([]byte(`{"message":"x","documentation_url":"https://docs.github.com/rest"}`))
		}))
		c, err := github.New(github.Config{APIURL: srv.URL, AppID: appID, AppPrivateKey: pemBytes, JITPerMinute: -1})
		if err != nil {
			t.Fatal(err)
		}
		err = c.Redeliver(ctxFor(t), 77)
		if got := <-sent; got != "POST /app/hook/deliveries/77/attempts" {
			t.Fatalf("sent %q", got)
		}
		switch {
		case tc.want == "" && err != nil:
			t.Errorf("%d: %v, want success", tc.status, err)
		case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
			t.Errorf("%d: %v, want an error saying %q", tc.status, err, tc.want)
		}
	}
}
