package main

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/crabbox/crabbox-runner/status"
)

const testStatusToken = "e2e-status-token-never-logged-0001"

// getStatus fetches the status page, with the token as Basic password when
// given, and returns the status code and body.
func (e *e2e) getStatus(token string) (int, string) {
	e.t.Helper()
	req, err := http.NewRequest(http.MethodGet, e.url+"/", nil)
	if err != nil {
		e.t.Fatal(err)
	}
	if token != "" {
		req.SetBasicAuth("operator", token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// The status page of a running serve: open without a token on loopback,
// guarded with one, showing a job's lease, its link and today's spend; the other
// endpoints unchanged.
func TestServeStatusPage(t *testing.T) {
	e := startServe(t, "60s", nil)
	id := e.queue("status <b>page</b>")
	e.waitJob(id)
	e.waitClean()
	l := e.waitReleased()

	code, body := e.getStatus("")
	if code != 200 {
		t.Fatalf("open status page: %d\n%s", code, body)
	}
	for _, want := range []string{
		`id="lease-` + l.ID + `"`,
		"/acme/vision/actions/runs/",
		fmt.Sprintf("/job/%d", id),
		"status &lt;b&gt;page&lt;/b&gt;",
		`<tr class="spend-row"><td>a100</td><td>local</td>`,
	} {
		if !strings.Contains(body, want) {
			t.Errorf("status page lacks %s", want)
		}
	}
	if strings.Contains(body, "<b>page") {
		t.Error("the job name is not escaped")
	}
	for _, path := range []string{"/healthz", "/readyz", "/metrics"} {
		e.get(path)
	}
	if resp, err := http.Get(e.url + "/nope"); err != nil || resp.StatusCode != 404 {
		t.Fatalf("GET /nope: %v %v", resp, err)
	} else {
		resp.Body.Close()
	}
	e.stop()

	// Again with a token, on the same database.
	env := map[string]string{"CRABBOX_STATUS_TOKEN": testStatusToken}
	for k, v := range e.env {
		env[k] = v
	}
	addr := freeAddr(t)
	e.url = "http://" + addr
	e.runServe(addr, env)
	if code, body := e.getStatus(""); code != 401 || strings.Contains(body, l.ID) {
		t.Fatalf("no token: %d %q", code, body)
	}
	if code, _ := e.getStatus("wrong-token-0123456789"); code != 401 {
		t.Fatalf("wrong token: %d", code)
	}
	code, body = e.getStatus(testStatusToken)
	if code != 200 || !strings.Contains(body, `id="lease-`+l.ID+`"`) {
		t.Fatalf("with the token: %d", code)
	}
	if code := e.getStatusCode("Bearer " + testStatusToken); code != 200 {
		t.Fatalf("bearer: %d", code)
	}
	e.stop()
	if strings.Contains(e.logs.String(), testStatusToken) {
		t.Error("the status token is in serve's logs")
	}
}

func (e *e2e) getStatusCode(authorization string) int {
	e.t.Helper()
	req, _ := http.NewRequest(http.MethodGet, e.url+"/", nil)
	req.Header.Set("Authorization", authorization)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

// What the page keeps of the log has passed the redactor.
func TestServeStatusLogIsRedacted(t *testing.T) {
	const secret = "a-secret-the-redactor-knows"
	var out bytes.Buffer
	recent := status.NewRecent(5)
	log := withRecent(newLogger(&out, "info", "json", secret), recent)
	log.With("lease_id", "l-"+secret).Warn("leaked "+secret, "error", fmt.Errorf("wrapped: %s", secret))
	rs := recent.Records()
	if len(rs) != 1 {
		t.Fatalf("%d records", len(rs))
	}
	r := rs[0]
	if r.Message != "leaked [REDACTED]" || r.Attr("error") != "wrapped: [REDACTED]" || r.Attr("lease_id") != "l-[REDACTED]" {
		t.Fatalf("kept %+v", r)
	}
	if strings.Contains(out.String(), secret) || !strings.Contains(out.String(), "leaked [REDACTED]") {
		t.Fatalf("log %s", out.String())
	}
	// Without secrets to redact, the ring still sits in the chain.
	recent = status.NewRecent(5)
	withRecent(newLogger(io.Discard, "error", "text"), recent).Warn("kept though the log shows errors only")
	if len(recent.Records()) != 1 {
		t.Fatal("the warning was not kept")
	}
}
