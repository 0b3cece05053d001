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

// Past the limit a connection is closed at once, not kept waiting; a slot
// freed is taken again.
func TestLimitConns(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var shed atomic.Int64
	srv := webhook.Server(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") }))
	go srv.Serve(webhook.LimitConns(ln, 2, func() { shed.Add(1) }))
	defer srv.Close()
	addr := ln.Addr().String()

	// Two connections that send nothing hold both slots.
	var held []net.Conn
	for range 2 {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		held = append(held, c)
	}
	time.Sleep(100 * time.Millisecond) // both accepted
	client := &http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	start := time.Now()
	if resp, err := client.Get("http://" + addr + "/"); err == nil {
		resp.Body.Close()
		t.Fatalf("a third connection was served: %d", resp.StatusCode)
	}
	if d := time.Since(start); d > time.Second {
		t.Errorf("the refused connection waited %s", d)
	}
	if shed.Load() == 0 {
		t.Error("the refused connection was not counted")
	}

	held[0].Close()
	deadline := time.Now().Add(5 * time.Second)
	for {
		resp, err := client.Get("http://" + addr + "/")
		if err == nil {
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if string(b) != "ok" {
				t.Fatalf("answer %q", b)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("a freed slot was not taken again: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	held[1].Close()
}
