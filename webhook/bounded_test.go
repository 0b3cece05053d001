package webhook_test

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/crabbox/crabbox-runner/provisioner"
	"github.com/crabbox/crabbox-runner/webhook"
)

// countingReader counts what the handler takes from a body.
type countingReader struct {
	r    io.Reader
	read atomic.Int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.read.Add(int64(n))
	return n, err
}

// A sender that cannot have signed the body, or that declares a body over
// the cap, gets its answer without a byte of the body being read.
func TestUnsignedOrOversizedBodyIsNotRead(t *testing.T) {
	big := strings.Repeat("x", 1<<20)
	cases := []struct {
		name, sig string
		length    int64
		want      int
	}{
		{"no signature", "", int64(len(big)), 401},
		{"not hex", "sha256=" + strings.Repeat("z", 64), int64(len(big)), 401},
		{"sha1", "sha1=0123456789abcdef0123456789abcdef01234567", int64(len(big)), 401},
		{"no signature, chunked", "", -1, 401},
		{"declared over the cap", webhook.Sign(secret, []byte(big)), int64(len(big)), 413},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r := &recorder{out: provisioner.Accepted}
			body := &countingReader{r: strings.NewReader(big)}
			req := httptest.NewRequest(http.MethodPost, "/webhook", body)
			req.ContentLength = tc.length
			req.Header.Set("X-GitHub-Event", "workflow_job")
			if tc.sig != "" {
				req.Header.Set("X-Hub-Signature-256", tc.sig)
			}
			rec := httptest.NewRecorder()
			newHandler(t, r).ServeHTTP(rec, req)
			if rec.Code != tc.want {
				t.Fatalf("status %d, want %d", rec.Code, tc.want)
			}
			if n := body.read.Load(); n != 0 {
				t.Fatalf("%d bytes of the body were read before refusing it", n)
			}
		})
	}
}

// A chunked body (no Content-Length) is cut at the cap: no more than the
// cap and one byte is read, and the answer is 413.
func TestChunkedBodyCutAtCap(t *testing.T) {
	body := &countingReader{r: strings.NewReader(strings.Repeat("x", 1<<20))}
	req := httptest.NewRequest(http.MethodPost, "/webhook", body)
	req.ContentLength = -1
	req.Header.Set("X-GitHub-Event", "workflow_job")
	req.Header.Set("X-Hub-Signature-256", webhook.Sign(secret, []byte("whatever")))
	rec := httptest.NewRecorder()
	newHandler(t, &recorder{}).ServeHTTP(rec, req)
	if rec.Code != 413 {
		t.Fatalf("status %d, want 413", rec.Code)
	}
	if n := body.read.Load(); n > 4096+512 {
		t.Fatalf("read %d bytes of a chunked body with a 4096-byte cap", n)
	}
}

func TestCapAboveGitHubsRefused(t *testing.T) {
	_, err := webhook.New(webhook.Config{Secret: secret, Events: &recorder{}, MaxBody: webhook.GitHubMaxPayload + 1})
	if err == nil {
		t.Fatal("New accepted a body cap above GitHub's 25 MB")
	}
	if _, err := webhook.New(webhook.Config{Secret: secret, Events: &recorder{}, MaxBody: 1 << 20, MaxBuffered: 1 << 19}); err == nil {
		t.Fatal("New accepted a read budget smaller than one body")
	}
}

// slowPost opens a connection and sends a POST whose body is declared at n
// bytes with a made-up signature, and only the first part of the body: a
// stranger holding what the server has reserved for it.
func slowPost(t *testing.T, addr string, n int) net.Conn {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	fmt.Fprintf(c, "POST /webhook HTTP/1.1\r\nHost: x\r\nX-GitHub-Event: workflow_job\r\nX-Hub-Signature-256: sha256=%s\r\n"+
		"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n%s", strings.Repeat("ab", 32), n, strings.Repeat("x", 1024))
	return c
}

func answer(t *testing.T, c net.Conn, within time.Duration) (*http.Response, time.Duration) {
	t.Helper()
	start := time.Now()
	c.SetReadDeadline(start.Add(within))
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatalf("no answer within %s: %v", within, err)
	}
	resp.Body.Close()
	return resp, time.Since(start)
}

func signedQueued(t *testing.T, url string) int {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, url+"/webhook", strings.NewReader(queued))
	req.Header.Set("X-GitHub-Event", "workflow_job")
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("X-Hub-Signature-256", webhook.Sign(secret, []byte(queued)))
	resp, err := (&http.Client{Timeout: 2 * time.Second}).Do(req)
	if err != nil {
		t.Fatalf("signed delivery: %v", err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

// Through a real server on loopback: slow senders of large bodies hold at
// most the read budget; one more waits QueueWait and gets 503 with
// Retry-After; a signed delivery is still answered at once; and a slow
// sender is cut off at BodyTimeout, giving its reservation back.
func TestReadBudgetAndBodyDeadline(t *testing.T) {
	const body = 256 << 10
	h, err := webhook.New(webhook.Config{Secret: secret, Events: &recorder{out: provisioner.Accepted},
		MaxBody: body, MaxBuffered: 2 * body, QueueWait: 200 * time.Millisecond, BodyTimeout: time.Second,
		Logger: discardLogger()})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewUnstartedServer(h)
	srv.Config = webhook.Server(h)
	srv.Start()
	t.Cleanup(srv.Close)
	addr := srv.Listener.Addr().String()

	// The large lane holds 2×256 KiB − 128 KiB (a quarter kept for small
	// bodies): one large body at a time.
	holder := slowPost(t, addr, body)
	time.Sleep(100 * time.Millisecond)
	refused := slowPost(t, addr, body)
	resp, took := answer(t, refused, 3*time.Second)
	if resp.StatusCode != http.StatusServiceUnavailable || resp.Header.Get("Retry-After") == "" {
		t.Fatalf("over the budget: %d (Retry-After %q), want 503 with Retry-After", resp.StatusCode, resp.Header.Get("Retry-After"))
	}
	if took > time.Second {
		t.Fatalf("503 took %s; the queue wait is 200ms", took)
	}
	if code := signedQueued(t, srv.URL); code != http.StatusAccepted {
		t.Fatalf("signed delivery while the large lane is full: %d, want 202", code)
	}

	// The holder never finishes its body: it is cut at the body deadline.
	if _, err := answerOrClosed(holder, 4*time.Second); err != nil {
		t.Fatalf("slow sender not cut off: %v", err)
	}
	// Its reservation is back: a large body is read again (and refused
	// for its signature, after being read).
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	fmt.Fprintf(c, "POST /webhook HTTP/1.1\r\nHost: x\r\nX-GitHub-Event: workflow_job\r\nX-Hub-Signature-256: sha256=%s\r\nContent-Length: %d\r\n\r\n%s",
		strings.Repeat("ab", 32), body, strings.Repeat("x", body))
	if resp, _ := answer(t, c, 3*time.Second); resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("after the slow sender was cut: %d, want 401", resp.StatusCode)
	}
}

// answerOrClosed waits for the server to answer or close the connection.
func answerOrClosed(c net.Conn, within time.Duration) (time.Duration, error) {
	start := time.Now()
	c.SetReadDeadline(start.Add(within))
	_, err := io.Copy(io.Discard, c)
	if ne, ok := err.(net.Error); ok && ne.Timeout() {
		return 0, fmt.Errorf("connection still open after %s", within)
	}
	return time.Since(start), nil
}

// slowRecorder takes longer than the body deadline to record a delivery
// and fails if the request's context ends meanwhile.
type slowRecorder struct{ took time.Duration }

func (s slowRecorder) HandleJobEvent(ctx context.Context, ev provisioner.JobEvent) (provisioner.Outcome, error) {
	select {
	case <-time.After(s.took):
		return provisioner.Accepted, nil
	case <-ctx.Done():
		return 0, ctx.Err()
	}
}

// The body deadline bounds the body only: recording a delivery that
// arrived in time is not cut short by it. (A guard: on Go 1.26 this also
// passes with the deadline left in place.)
func TestBodyDeadlineSparesTheRecording(t *testing.T) {
	h, err := webhook.New(webhook.Config{Secret: secret, Events: slowRecorder{took: 700 * time.Millisecond},
		BodyTimeout: 200 * time.Millisecond, Logger: discardLogger()})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewUnstartedServer(h)
	srv.Config = webhook.Server(h)
	srv.Start()
	t.Cleanup(srv.Close)
	if code := signedQueued(t, srv.URL); code != http.StatusAccepted {
		t.Fatalf("delivery recorded past the body deadline: %d, want 202", code)
	}
}
