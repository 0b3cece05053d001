package vasttest

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"net/http"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"
)

const createBodyJSON = `{"client_id": "me", "image": "nvidia/cuda:12.4.1-devel-ubuntu22.04", "disk": 40, "label": "l", "runtype": "ssh_proxy"}`

// TestPerEndpointLimits: each endpoint has its own interval (a create does
// not hold back a listing), a call under it is answered 429 with Vast's
// text naming the threshold (every third as JSON), and only calls let
// through count, so waiting the interval gets in.
func TestPerEndpointLimits(t *testing.T) {
	s := newServer(t, Options{RateLimits: DocumentedLimits(0.1)})
	if got := DocumentedLimits(1)[OpCreate]; got != 4500*time.Millisecond {
		t.Fatalf("create's documented interval %s", got)
	}
	if st, _ := do(t, s, "PUT", "/api/v0/asks/5000201/", createBodyJSON, true); st != 200 {
		t.Fatalf("first create: %d", st)
	}
	if st, _ := do(t, s, "GET", "/api/v1/instances/", "", true); st != 200 {
		t.Fatalf("a listing right after a create: %d", st)
	}
	var bodies []string
	for range 3 {
		st, body := do(t, s, "PUT", "/api/v0/asks/5000202/", createBodyJSON, true)
		if st != 429 {
			t.Fatalf("a create 0 s after a create: %d", st)
		}
		bodies = append(bodies, body)
	}
	if bodies[0] != "API requests too frequent endpoint threshold=0.45" || !strings.Contains(bodies[2], `"error":"rate_limit_exceeded"`) {
		t.Fatalf("429 bodies %q", bodies)
	}
	time.Sleep(450 * time.Millisecond)
	if st, body := do(t, s, "PUT", "/api/v0/asks/5000202/", createBodyJSON, true); st != 200 {
		t.Fatalf("a create after the interval: %d %s", st, body)
	}
}

// TestAttachRefusedUntilRunning: a key is refused (400) while the
// container loads and accepted once it runs.
func TestAttachRefusedUntilRunning(t *testing.T) {
	s := newServer(t, Options{LoadingAfter: 200 * time.Millisecond, RunningAfter: 200 * time.Millisecond})
	if st, _ := do(t, s, "PUT", "/api/v0/asks/5000201/", createBodyJSON, true); st != 200 {
		t.Fatal(st)
	}
	key := `{"ssh_key": "` + testPublicKey(t) + `"}`
	st, body := do(t, s, "POST", "/api/v0/instances/20000001/ssh/", key, true)
	if st != 400 || !strings.Contains(body, "not running") {
		t.Fatalf("attach while loading: %d %s", st, body)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		in, _ := s.Instance(20000001)
		if in.Status == "running" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("never ran")
		}
		time.Sleep(20 * time.Millisecond)
	}
	if st, body := do(t, s, "POST", "/api/v0/instances/20000001/ssh/", key, true); st != 200 {
		t.Fatalf("attach once running: %d %s", st, body)
	}
}

// TestSlowAndLostCreates: a slow create has taken effect before it
// answers; a lost one takes effect and hangs until the client gives up.
func TestSlowAndLostCreates(t *testing.T) {
	s := newServer(t, Options{
		CreateDelay: func(int) time.Duration { return 300 * time.Millisecond },
		LoseCreate:  func(n int) bool { return n == 2 },
	})
	start := time.Now()
	if st, _ := do(t, s, "PUT", "/api/v0/asks/5000201/", createBodyJSON, true); st != 200 || time.Since(start) < 300*time.Millisecond {
		t.Fatalf("slow create: %d after %s", st, time.Since(start))
	}
	ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, "PUT", s.URL()+"/api/v0/asks/5000202/", strings.NewReader(createBodyJSON))
	req.Header.Set("Authorization", "Bearer "+s.APIKey())
	if resp, err := http.DefaultClient.Do(req); err == nil {
		resp.Body.Close()
		t.Fatalf("lost create answered %d", resp.StatusCode)
	}
	if live := s.Live(); len(live) != 2 || live[1].OfferID != 5000202 {
		t.Fatalf("live %+v: the lost create took effect", live)
	}
}

func testPublicKey(t *testing.T) string {
	t.Helper()
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	signer, err := ssh.NewSignerFromKey(priv)
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(string(ssh.MarshalAuthorizedKey(signer.PublicKey())))
}
