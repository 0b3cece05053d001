package main

import (
	"context"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

var demoPageURL = regexp.MustCompile(`status page (http://127\.0\.0\.1:[0-9]+)/ `)

// demo --serve: after its jobs the server stays up on loopback with the
// status page drawing the demo's leases, open without a token; cancelling
// (what Ctrl-C does) ends it cleanly, hosts gone and its files removed.
func TestDemoServe(t *testing.T) {
	if err := demoPrereqs(); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal(err)
		}
		t.Skip(err)
	}
	tmp := t.TempDir()
	t.Setenv("TMPDIR", tmp) // the demo's directory is made here: see it go
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var out syncBuffer
	done := make(chan error, 1)
	go func() {
		done <- runDemo(ctx, &out, io.Discard, demoOptions{jobs: 2, timeout: 2 * time.Minute, serve: true, listen: "127.0.0.1:0"})
	}()

	var base string
	deadline := time.After(3 * time.Minute)
	for base == "" {
		select {
		case err := <-done:
			t.Fatalf("the demo ended before serving: %v\n%s", err, out.String())
		case <-deadline:
			t.Fatalf("no status page URL printed:\n%s", out.String())
		case <-time.After(100 * time.Millisecond):
		}
		if m := demoPageURL.FindStringSubmatch(out.String()); m != nil {
			base = m[1]
		}
	}
	if !strings.Contains(out.String(), "2 jobs ran on 2 leased hosts") {
		t.Fatalf("the demo's summary is not before the URL:\n%s", out.String())
	}

	resp, err := http.Get(base + "/")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	page := string(body)
	if resp.StatusCode != 200 {
		t.Fatalf("GET / without a token: %d\n%s", resp.StatusCode, page)
	}
	rows := regexp.MustCompile(`<tr class="tl-row" id="tl-([^"]+)"`).FindAllStringSubmatch(page, -1)
	if len(rows) != 2 {
		t.Fatalf("the timeline draws %d leases, want the demo's 2", len(rows))
	}
	for _, r := range rows {
		if !strings.Contains(out.String(), "lease "+r[1]) {
			t.Errorf("timeline row %s is not a lease of the demo", r[1])
		}
	}
	for _, phase := range []string{"queued", "create", "boot", "bootstrap", "job", "release"} {
		if !strings.Contains(page, `data-phase="`+phase+`"`) {
			t.Errorf("the timeline has no %s segment", phase)
		}
	}
	if !strings.Contains(page, `id="bars-a100"`) {
		t.Error("no per-class bars for the demo's class")
	}
	if resp, err := http.Get(base + "/metrics"); err != nil || resp.StatusCode != 200 {
		t.Errorf("GET /metrics: %v %v", resp, err)
	} else {
		resp.Body.Close()
	}

	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("the demo ended with %v\n%s", err, out.String())
		}
	case <-time.After(time.Minute):
		t.Fatal("the demo did not stop after its context was cancelled")
	}
	if _, err := http.Get(base + "/"); err == nil {
		t.Error("the server still answers after the demo ended")
	}
	left, _ := filepath.Glob(filepath.Join(tmp, "crabbox-demo-*"))
	if len(left) != 0 {
		t.Errorf("the demo left %v", left)
	}
}

func TestDemoRefusesANonLoopbackListen(t *testing.T) {
	if err := demoPrereqs(); err != nil {
		t.Skip(err)
	}
	err := runDemo(context.Background(), io.Discard, io.Discard, demoOptions{jobs: 1, timeout: time.Minute, serve: true, listen: "0.0.0.0:0"})
	if err == nil || !strings.Contains(err.Error(), "not a loopback address") {
		t.Fatalf("demo on 0.0.0.0: %v", err)
	}
}
