// Command webhookflood measures what a flood of slow unsigned deliveries
// costs the webhook handler (issue #15, "Bounded before authenticated").
//
//	go run ./scripts/webhookflood -senders 1000 -body 1048576 -flood 30s -after 20s
//
// It starts itself again as a child process that serves webhook.New's
// handler in webhook.Server (serve's http.Server settings) on loopback, so
// the RSS it samples (/proc/PID/status VmRSS) is the server's own. Then
// -senders connections each POST a -body-byte body with a made-up
// signature, slowly (the whole body over -trickle), and start again when
// refused or cut off, for -flood. Meanwhile a signed workflow_job delivery
// is sent every -every and its answer time kept. RSS is sampled throughout
// and for -after once the flood stops. The child's event handler only
// counts: this measures the HTTP and webhook layers, not the store.
//
// -conns adds that many connections that send half a request line and
// nothing more, dialled again whenever closed: a connection flood, against
// serve's cap on open connections (webhook.LimitConns, which the child
// applies as serve does).
//
//	go run ./scripts/webhookflood -senders 0 -conns 6000 -flood 20s -after 5s
package main

import (
	"bufio"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/crabbox/crabbox-runner/provisioner"
	"github.com/crabbox/crabbox-runner/webhook"
)

// The secret is made up per run and passed to the child in its
// environment; it protects nothing.
const secretEnv = "WEBHOOKFLOOD_SECRET"

func main() {
	child := flag.Bool("child", false, "serve the handler (internal)")
	senders := flag.Int("senders", 1000, "concurrent slow unsigned senders")
	bodySize := flag.Int("body", 1<<20, "declared body size of each unsigned request")
	trickle := flag.Duration("trickle", 20*time.Second, "time a slow sender takes to send its body")
	flood := flag.Duration("flood", 30*time.Second, "how long the flood lasts")
	after := flag.Duration("after", 20*time.Second, "how long RSS is sampled after the flood")
	every := flag.Duration("every", 250*time.Millisecond, "interval of signed deliveries during the flood")
	conns := flag.Int("conns", 0, "connections that send half a request line and hold it")
	maxConns := flag.Int("maxconns", webhook.DefaultMaxConns, "the server's cap on open connections (0: none, for comparison)")
	flag.Parse()
	if *child {
		serveChild(*maxConns)
		return
	}
	secret := fmt.Sprintf("flood-%d-secret-not-a-real-one", time.Now().UnixNano())
	cmd := exec.Command(os.Args[0], "-child", "-maxconns", strconv.Itoa(*maxConns))
	cmd.Env = append(os.Environ(), secretEnv+"="+secret)
	cmd.Stderr = os.Stderr
	out, err := cmd.StdoutPipe()
	must(err)
	must(cmd.Start())
	defer cmd.Process.Kill()
	addr, err := bufio.NewReader(out).ReadString('\n')
	must(err)
	addr = strings.TrimSpace(addr)
	pid := cmd.Process.Pid

	time.Sleep(time.Second)
	base := rss(pid)
	fmt.Printf("server pid %d on %s, RSS before: %.1f MB\n", pid, addr, mb(base))

	var peak atomic.Int64
	stopSample := make(chan struct{})
	go func() {
		for {
			select {
			case <-stopSample:
				return
			case <-time.After(100 * time.Millisecond):
			}
			if r := rss(pid); r > peak.Load() {
				peak.Store(r)
			}
		}
	}()

	ctx, cancel := context.WithTimeout(context.Background(), *flood)
	defer cancel()
	var outcomes sync.Map // string → *atomic.Int64
	count := func(k string) {
		v, _ := outcomes.LoadOrStore(k, new(atomic.Int64))
		v.(*atomic.Int64).Add(1)
	}
	var wg sync.WaitGroup
	for range *senders {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil {
				count(slowUnsigned(ctx, addr, *bodySize, *trickle))
			}
		}()
	}

	for range *conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil {
				count(holdConn(ctx, addr))
			}
		}()
	}

	var lat []time.Duration
	codes := map[int]int{}
	failures := 0
	client := &http.Client{Timeout: 10 * time.Second}
	job := time.Now().UnixNano() / 1000
	time.Sleep(2 * time.Second) // let the flood fill the budget first
	for ctx.Err() == nil {
		job++
		body := []byte(fmt.Sprintf(`{"action":"queued","workflow_job":{"id":%d,"run_id":1,"run_attempt":1,"labels":["self-hosted","crabbox","a100"],"status":"queued","name":"train"},"repository":{"full_name":"acme/ml","private":true},"organization":{"login":"acme"},"installation":{"id":1}}`, job))
		req, _ := http.NewRequest(http.MethodPost, "http://"+addr+"/webhook", strings.NewReader(string(body)))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("X-GitHub-Event", "workflow_job")
		req.Header.Set("X-GitHub-Delivery", strconv.FormatInt(job, 10))
		req.Header.Set("X-Hub-Signature-256", sign([]byte(secret), body))
		start := time.Now()
		resp, err := client.Do(req)
		d := time.Since(start)
		if err != nil {
			failures++
		} else {
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			codes[resp.StatusCode]++
			lat = append(lat, d)
		}
		time.Sleep(*every)
	}
	floodPeak := peak.Load()
	atEnd := rss(pid)
	wg.Wait()
	time.Sleep(*after)
	close(stopSample)
	later := rss(pid)

	sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
	fmt.Printf("flood: %d senders × %d-byte bodies sent over %s, %d held connections, for %s\n", *senders, *bodySize, *trickle, *conns, *flood)
	fmt.Print("unsigned requests:")
	outcomes.Range(func(k, v any) bool { fmt.Printf(" %s=%d", k, v.(*atomic.Int64).Load()); return true })
	fmt.Println()
	fmt.Printf("signed deliveries during the flood: %d answered %v, %d failed", len(lat), codes, failures)
	if len(lat) > 0 {
		fmt.Printf("; answer time p50 %s p99 %s max %s", pct(lat, 50), pct(lat, 99), lat[len(lat)-1])
	}
	fmt.Println()
	fmt.Printf("RSS: before %.1f MB, peak during flood %.1f MB, at flood end %.1f MB, %s after %.1f MB\n",
		mb(base), mb(floodPeak), mb(atEnd), *after, mb(later))
}

// slowUnsigned sends one request with a made-up signature and its body in
// pieces spread over trickle, and says how it ended.
func slowUnsigned(ctx context.Context, addr string, size int, trickle time.Duration) string {
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		time.Sleep(100 * time.Millisecond)
		return "dial_error"
	}
	defer c.Close()
	fmt.Fprintf(c, "POST /webhook HTTP/1.1\r\nHost: %s\r\nX-GitHub-Event: workflow_job\r\nX-Hub-Signature-256: sha256=%s\r\n"+
		"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n", addr, strings.Repeat("0f", 32), size)
	answered := make(chan string, 1)
	go func() {
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		if err != nil {
			answered <- "cut"
			return
		}
		resp.Body.Close()
		answered <- strconv.Itoa(resp.StatusCode)
	}()
	const piece = 16 << 10
	pause := trickle / time.Duration(max(size/piece, 1))
	chunk := make([]byte, piece)
	for sent := 0; sent < size; sent += piece {
		select {
		case r := <-answered:
			return r
		case <-ctx.Done():
			return "flood_over"
		case <-time.After(pause):
		}
		c.SetWriteDeadline(time.Now().Add(5 * time.Second))
		if _, err := c.Write(chunk[:min(piece, size-sent)]); err != nil {
			break
		}
	}
	select {
	case r := <-answered:
		return r
	case <-ctx.Done():
		return "flood_over"
	}
}

// holdConn opens a connection, sends half a request line and waits until
// the server closes it or the flood ends.
func holdConn(ctx context.Context, addr string) string {
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		time.Sleep(100 * time.Millisecond)
		return "held_dial_error"
	}
	defer c.Close()
	start := time.Now()
	c.Write([]byte("GET /heal"))
	closed := make(chan struct{})
	go func() {
		io.Copy(io.Discard, c)
		close(closed)
	}()
	select {
	case <-closed:
		if time.Since(start) < time.Second {
			return "held_closed_at_once"
		}
		return "held_timed_out"
	case <-ctx.Done():
		return "held_flood_over"
	}
}

type counter struct{ n atomic.Int64 }

func (c *counter) HandleJobEvent(context.Context, provisioner.JobEvent) (provisioner.Outcome, error) {
	c.n.Add(1)
	return provisioner.Accepted, nil
}

func serveChild(maxConns int) {
	h, err := webhook.New(webhook.Config{Secret: []byte(os.Getenv(secretEnv)), Events: &counter{},
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	must(err)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	must(err)
	fmt.Println(l.Addr().String())
	srv := webhook.Server(h)
	if maxConns > 0 {
		l = webhook.LimitConns(srv, l, maxConns, nil)
	}
	must(srv.Serve(l))
}

func rss(pid int) int64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if f := strings.Fields(line); len(f) >= 2 && f[0] == "VmRSS:" {
			kb, _ := strconv.ParseInt(f[1], 10, 64)
			return kb << 10
		}
	}
	return 0
}

func sign(secret, body []byte) string {
	m := hmac.New(sha256.New, secret)
	m.Write(body)
	return "sha256=" + hex.EncodeToString(m.Sum(nil))
}

func pct(s []time.Duration, p int) time.Duration { return s[(len(s)-1)*p/100] }

func mb(b int64) float64 { return float64(b) / (1 << 20) }

func must(err error) {
	if err != nil {
		fmt.Fprintln(os.Stderr, "webhookflood:", err)
		os.Exit(1)
	}
}
