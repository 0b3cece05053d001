package main

import (
	"bufio"
	"fmt"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"
)

// Through serve: a stranger's request is answered from its headers alone.
// Without a signature, or with a declared body over webhook.max_body_bytes,
// serve answers before a byte of the body has been sent (before #15 it
// waited for the whole body, up to its read timeout of 15 s).
func TestServeAnswersStrangersWithoutReadingTheBody(t *testing.T) {
	e := startServe(t, "60s", nil)
	addr := strings.TrimPrefix(e.url, "http://")
	for _, tc := range []struct {
		name, sig string
		length    int
		want      int
	}{
		{"unsigned", "", 1 << 20, http.StatusUnauthorized},
		{"over the cap", "sha256=" + strings.Repeat("0f", 32), 2 << 20, http.StatusRequestEntityTooLarge},
	} {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		hdr := ""
		if tc.sig != "" {
			hdr = "X-Hub-Signature-256: " + tc.sig + "\r\n"
		}
		fmt.Fprintf(c, "POST /webhook HTTP/1.1\r\nHost: x\r\nX-GitHub-Event: workflow_job\r\n%sContent-Length: %d\r\n\r\n", hdr, tc.length)
		c.SetReadDeadline(time.Now().Add(3 * time.Second))
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		c.Close()
		if err != nil {
			t.Fatalf("%s: no answer before the body was sent: %v", tc.name, err)
		}
		resp.Body.Close()
		if resp.StatusCode != tc.want {
			t.Errorf("%s: %d, want %d", tc.name, resp.StatusCode, tc.want)
		}
	}
	e.stop()
}
