package main

import (
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/crabbox/crabbox-runner/status"
)

// Closed by default (issue 15): the status page and /metrics are read with
// the status token, or without one only when serve listens on loopback
// alone; metrics_listen is the operator's own way to scrape.

// fetch GETs url with an Authorization header when given.
func fetch(t *testing.T, url, authorization string) (int, string) {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	if authorization != "" {
		req.Header.Set("Authorization", authorization)
	}
	resp, err := (&http.Client{Timeout: 10 * time.Second}).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// short is the start of a body, for a failure's message.
func short(s string) string {
	if len(s) > 200 {
		return s[:200] + "…"
	}
	return s
}

// anyInterface is serve's listen address on every IPv4 interface, at the
// port of the loopback address the test reaches it at.
func anyInterface(loopback string) string {
	_, port, _ := net.SplitHostPort(loopback)
	return "0.0.0.0:" + port
}

// Serve on every interface without a token: a job runs (signed deliveries
// are taken), yet / and /metrics answer 403 with how to open them and
// nothing of the lease, the job or the repository, whatever header is
// sent. The metrics listener serves /metrics, and only /metrics.
func TestServeClosedWithoutToken(t *testing.T) {
	metricsAddr := freeAddr(t)
	e := startServeWith(t, serveSetup{bootTimeout: "60s", listen: anyInterface,
		env: map[string]string{"CRABBOX_METRICS_LISTEN": metricsAddr}})
	id := e.queue("closed-page-job")
	e.waitJob(id)
	e.waitClean()
	l := e.waitReleased()
	accepted := 0
	for _, d := range e.gh.Deliveries() {
		if d.StatusCode == http.StatusAccepted {
			accepted++
		}
	}
	if accepted == 0 {
		t.Fatal("no signed delivery was accepted")
	}

	for _, path := range []string{"/", "/metrics"} {
		for _, auth := range []string{"", "Bearer " + testStatusToken, "Basic b3BlcmF0b3I6c2VjcmV0"} {
			code, body := fetch(t, e.url+path, auth)
			if code != http.StatusForbidden || body != status.ClosedMessage {
				t.Errorf("GET %s (%q): %d %q", path, auth, code, short(body))
			}
			for _, private := range []string{l.ID, "acme", "vision", "closed-page-job", "a100", "crabbox_"} {
				if strings.Contains(body, private) {
					t.Errorf("GET %s: the refusal shows %q", path, private)
				}
			}
		}
	}
	for _, path := range []string{"/healthz", "/readyz"} {
		if code, body := fetch(t, e.url+path, ""); code != 200 {
			t.Errorf("GET %s: %d %s", path, code, body)
		}
	}

	// The metrics listener: /metrics without a token, nothing else.
	code, body := fetch(t, "http://"+metricsAddr+"/metrics", "")
	if code != 200 || !strings.Contains(body, "crabbox_webhook_ack_seconds") {
		t.Fatalf("metrics listener /metrics: %d %s", code, tail(body, 5))
	}
	for _, path := range []string{"/", "/healthz", "/webhook"} {
		if code, body := fetch(t, "http://"+metricsAddr+path, ""); code != http.StatusNotFound || strings.Contains(body, l.ID) {
			t.Errorf("metrics listener %s: %d %q", path, code, short(body))
		}
	}
	if !strings.Contains(e.logs.String(), "are closed (403)") {
		t.Error("the start-up log does not say the page and /metrics are closed")
	}
	e.stop()
	if _, err := net.DialTimeout("tcp", metricsAddr, time.Second); err == nil {
		t.Error("the metrics listener is still open after serve stopped")
	}
}

// ":PORT" (every interface, both families) is not loopback either.
func TestServeClosedOnEveryInterface(t *testing.T) {
	e := startServeWith(t, serveSetup{bootTimeout: "60s", listen: func(loopback string) string {
		_, port, _ := net.SplitHostPort(loopback)
		return ":" + port
	}})
	for _, path := range []string{"/", "/metrics"} {
		if code, body := fetch(t, e.url+path, ""); code != http.StatusForbidden || body != status.ClosedMessage {
			t.Errorf("GET %s: %d %q", path, code, short(body))
		}
	}
}

// With a token, on every interface: / and /metrics need it.
func TestServeMetricsNeedTheToken(t *testing.T) {
	e := startServeWith(t, serveSetup{bootTimeout: "60s", listen: anyInterface,
		env: map[string]string{"CRABBOX_STATUS_TOKEN": testStatusToken}})
	for _, path := range []string{"/", "/metrics"} {
		for _, auth := range []string{"", "Bearer wrong-token-0123456789", "Bearer "} {
			if code, body := fetch(t, e.url+path, auth); code != http.StatusUnauthorized || strings.Contains(body, "crabbox_") {
				t.Errorf("GET %s (%q): %d %q", path, auth, code, short(body))
			}
		}
	}
	code, body := fetch(t, e.url+"/metrics", "Bearer "+testStatusToken)
	if code != 200 || !strings.Contains(body, "crabbox_webhook_ack_seconds") {
		t.Fatalf("/metrics with the token: %d %s", code, tail(body, 5))
	}
	if code, body := fetch(t, e.url+"/", "Bearer "+testStatusToken); code != 200 || !strings.Contains(body, "<html") {
		t.Fatalf("/ with the token: %d %s", code, tail(body, 5))
	}
	if !strings.Contains(e.logs.String(), "need the status token") {
		t.Error("the start-up log does not say the token guards the page and /metrics")
	}
	e.stop()
	if strings.Contains(e.logs.String(), testStatusToken) {
		t.Error("the status token is in serve's logs")
	}
}

// On loopback ("localhost" too) without a token, both stay open.
func TestServeOpenOnLoopback(t *testing.T) {
	e := startServeWith(t, serveSetup{bootTimeout: "60s", listen: func(loopback string) string {
		_, port, _ := net.SplitHostPort(loopback)
		return "localhost:" + port
	}})
	if code, body := fetch(t, e.url+"/metrics", ""); code != 200 || !strings.Contains(body, "crabbox_webhook_ack_seconds") {
		t.Fatalf("/metrics: %d", code)
	}
	if code, body := fetch(t, e.url+"/", ""); code != 200 || !strings.Contains(body, "<html") {
		t.Fatalf("/: %d", code)
	}
	if !strings.Contains(e.logs.String(), "open without a token: serve listens on loopback only") {
		t.Error("the start-up log does not say the page and /metrics are open")
	}
}
