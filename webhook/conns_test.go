package webhook_test

import (
	"io"
	"net"
	"net/http"
	"sync/atomic"
	"testing"
	"time"

	"github.com/crabbox/crabbox-runner/webhook"
)

// At the limit, a new connection takes the place of the one that has
// waited longest without a request; when every connection is inside a
// request, it is closed at once, not kept waiting.
func TestLimitConns(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var shed atomic.Int64
	release := make(chan struct{})
	held := make(chan struct{}, 2)
	srv := webhook.Server(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/hold" {
			held <- struct{}{}
			<-release
		}
		io.WriteString(w, "ok")
	}))
	go srv.Serve(webhook.LimitConns(srv, ln, 2, func() { shed.Add(1) }))
	defer srv.Close()
	addr := ln.Addr().String()
	client := &http.Client{Timeout: 3 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	get := func(path string) (string, error) {
		resp, err := client.Get("http://" + addr + path)
		if err != nil {
			return "", err
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		return string(b), err
	}

	// Two connections that send half a request line hold both slots;
	// a request still gets through, in the place of the oldest.
	var silent []net.Conn
	for range 2 {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		c.Write([]byte("GET /he"))
		silent = append(silent, c)
		time.Sleep(50 * time.Millisecond)
	}
	if body, err := get("/"); err != nil || body != "ok" {
		t.Fatalf("a request behind two silent connections: %q %v", body, err)
	}
	silent[0].SetReadDeadline(time.Now().Add(2 * time.Second))
	if _, err := silent[0].Read(make([]byte, 1)); err == nil || isTimeout(err) {
		t.Errorf("the oldest silent connection was not closed: %v", err)
	}
	if shed.Load() == 0 {
		t.Error("the connection closed to make room was not counted")
	}

	// Two requests inside the handler: a third connection is closed at
	// once, then served once a slot frees.
	done := make(chan error, 2)
	for range 2 {
		go func() { _, err := get("/hold"); done <- err }()
	}
	// Both requests inside the handler, however slow the machine.
	for range 2 {
		select {
		case <-held:
		case <-time.After(10 * time.Second):
			t.Fatal("the held requests never reached the handler")
		}
	}
	start := time.Now()
	if body, err := get("/"); err == nil {
		t.Fatalf("a third connection was served while both slots held requests: %q", body)
	}
	if d := time.Since(start); d > time.Second {
		t.Errorf("the refused connection waited %s", d)
	}
	close(release)
	for range 2 {
		if err := <-done; err != nil {
			t.Errorf("a held request was cut: %v", err)
		}
	}
	if body, err := get("/"); err != nil || body != "ok" {
		t.Fatalf("after the slots freed: %q %v", body, err)
	}
}

func isTimeout(err error) bool {
	ne, ok := err.(net.Error)
	return ok && ne.Timeout()
}
