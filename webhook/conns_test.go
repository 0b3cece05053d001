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

// limitedServer serves on loopback behind LimitConns with two slots.
// /hold signals held and waits for release before answering.
type limitedServer struct {
	addr    string
	shed    atomic.Int64
	held    chan struct{}
	release chan struct{}
	client  *http.Client
}

func newLimitedServer(t *testing.T) *limitedServer {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &limitedServer{
		addr:    ln.Addr().String(),
		held:    make(chan struct{}, 2),
		release: make(chan struct{}),
		client:  &http.Client{Timeout: 3 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}},
	}
	srv := webhook.Server(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/hold" {
			s.held <- struct{}{}
			<-s.release
		}
		io.WriteString(w, "ok")
	}))
	go srv.Serve(webhook.LimitConns(srv, ln, 2, func() { s.shed.Add(1) }))
	t.Cleanup(func() { srv.Close() })
	return s
}

func (s *limitedServer) get(path string) (string, error) {
	resp, err := s.client.Get("http://" + s.addr + path)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return string(b), err
}

// waitHeld waits for one request to be inside the handler, however slow
// the machine.
func (s *limitedServer) waitHeld(t *testing.T) {
	t.Helper()
	select {
	case <-s.held:
	case <-time.After(10 * time.Second):
		t.Fatal("a held request never reached the handler")
	}
}

// At the limit, a new connection takes the place of the one that has
// waited longest without a request.
func TestLimitConnsDisplacesTheOldestSilent(t *testing.T) {
	s := newLimitedServer(t)
	// Two connections that send half a request line hold both slots;
	// a request still gets through, in the place of the oldest.
	var silent []net.Conn
	for range 2 {
		c, err := net.Dial("tcp", s.addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		c.Write([]byte("GET /he"))
		silent = append(silent, c)
		time.Sleep(50 * time.Millisecond)
	}
	if body, err := s.get("/"); err != nil || body != "ok" {
		t.Fatalf("a request behind two silent connections: %q %v", body, err)
	}
	silent[0].SetReadDeadline(time.Now().Add(2 * time.Second))
	if _, err := silent[0].Read(make([]byte, 1)); err == nil || isTimeout(err) {
		t.Errorf("the oldest silent connection was not closed: %v", err)
	}
	if s.shed.Load() == 0 {
		t.Error("the connection closed to make room was not counted")
	}
}

// When every connection is inside a request, a new one is closed at
// once, not kept waiting, and served once a slot frees. Each phase waits
// for the server to reach its state rather than for time: the server
// frees a slot a moment after the client has read its answer, and a
// request just accepted is (rightly) displaceable until its handler runs.
func TestLimitConnsRefusesWhenEverySlotIsInARequest(t *testing.T) {
	s := newLimitedServer(t)
	done := make(chan error, 2)
	for range 2 {
		go func() { _, err := s.get("/hold"); done <- err }()
		s.waitHeld(t)
	}
	start := time.Now()
	if body, err := s.get("/"); err == nil {
		t.Fatalf("a third connection was served while both slots held requests: %q", body)
	}
	if d := time.Since(start); d > time.Second {
		t.Errorf("the refused connection waited %s", d)
	}
	if s.shed.Load() == 0 {
		t.Error("the refused connection was not counted")
	}
	close(s.release)
	for range 2 {
		if err := <-done; err != nil {
			t.Errorf("a held request was cut: %v", err)
		}
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		body, err := s.get("/")
		if err == nil && body == "ok" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after the slots freed: %q %v", body, err)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func isTimeout(err error) bool {
	ne, ok := err.(net.Error)
	return ok && ne.Timeout()
}
