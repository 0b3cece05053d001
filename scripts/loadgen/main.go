// Command loadgen sends signed workflow_job deliveries to a crabbox-runner
// serve at a chosen rate and concurrency, and reports acknowledgement
// latency percentiles and the end-to-end counts serve's /metrics shows.
//
//	CRABBOX_WEBHOOK_SECRET=… go run ./scripts/loadgen -url http://127.0.0.1:8080 -rate 2000 -duration 30s
//
// The secret is read from the environment, never from a flag, so it stays
// out of process listings. Each delivery is a new queued job (the costly
// kind: it creates a lease and enqueues its work) unless -mix is set, in
// which case a share of deliveries repeat an earlier one (duplicates) or are
// in_progress/completed events for jobs of other runners.
package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"os"
	"os/signal"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

func main() {
	url := flag.String("url", "http://127.0.0.1:8080", "serve's base URL")
	rate := flag.Float64("rate", 1000, "deliveries per second (0: as fast as the workers go)")
	conc := flag.Int("concurrency", 32, "concurrent senders")
	dur := flag.Duration("duration", 10*time.Second, "how long to send")
	n := flag.Int("n", 0, "send exactly this many deliveries instead of for -duration")
	labels := flag.String("labels", "self-hosted,crabbox,a100", "runs-on labels of the jobs")
	org := flag.String("org", "acme", "organization of the jobs")
	mix := flag.Bool("mix", false, "mix in duplicates and in_progress/completed events")
	startID := flag.Int64("start-id", time.Now().UnixNano()/1000, "first job id")
	flag.Parse()
	secret := os.Getenv("CRABBOX_WEBHOOK_SECRET")
	if secret == "" {
		fmt.Fprintln(os.Stderr, "loadgen: set CRABBOX_WEBHOOK_SECRET")
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()

	g := &gen{url: strings.TrimRight(*url, "/") + "/webhook", secret: []byte(secret), labels: strings.Split(*labels, ","),
		org: *org, mix: *mix, next: *startID,
		client: &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: *conc}}}
	// Each delivery carries the time it was due. Its latency counts from
	// then, not from when a sender got to it: a server that falls behind
	// shows in the percentiles instead of slowing the senders down
	// unnoticed (coordinated omission).
	work := make(chan time.Time, *conc)
	var wg sync.WaitGroup
	for range *conc {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for due := range work {
				g.send(ctx, due)
			}
		}()
	}

	start := time.Now()
	var interval time.Duration
	if *rate > 0 {
		interval = time.Duration(float64(time.Second) / *rate)
	}
	next := start
	for i := 0; ; i++ {
		if *n > 0 && i >= *n || *n == 0 && time.Since(start) >= *dur || ctx.Err() != nil {
			break
		}
		due := time.Now()
		if interval > 0 {
			next = next.Add(interval)
			if d := time.Until(next); d > 0 {
				time.Sleep(d)
			}
			due = next
		}
		select {
		case work <- due:
		case <-ctx.Done():
		}
	}
	close(work)
	wg.Wait()
	elapsed := time.Since(start)
	g.report(os.Stdout, elapsed)
	metricsReport(os.Stdout, strings.TrimRight(*url, "/")+"/metrics")
}

type gen struct {
	url    string
	secret []byte
	labels []string
	org    string
	mix    bool
	client *http.Client

	next   int64 // job ids
	sent   atomic.Int64
	mu     sync.Mutex
	lat    []time.Duration
	codes  map[int]int
	errors int
	recent []string // bodies to repeat as duplicates
}

func (g *gen) body() (string, []byte) {
	action, job := "queued", atomic.AddInt64(&g.next, 1)
	runner := "null"
	if g.mix {
		switch x := rand.Float64(); {
		case x < 0.1:
			g.mu.Lock()
			defer g.mu.Unlock()
			if len(g.recent) > 0 {
				b := g.recent[rand.IntN(len(g.recent))]
				return strings.SplitN(b, "\x00", 2)[0], []byte(strings.SplitN(b, "\x00", 2)[1])
			}
		case x < 0.2:
			action, runner = "in_progress", `"some-other-runner"`
		case x < 0.3:
			action, runner = "completed", `"some-other-runner"`
		}
	}
	lbl := `"` + strings.Join(g.labels, `","`) + `"`
	b := fmt.Sprintf(`{"action":%q,"workflow_job":{"id":%d,"run_id":%d,"run_attempt":1,"labels":[%s],"status":%q,`+
		`"runner_name":%s,"name":"load","workflow_name":"load"},"repository":{"full_name":"%s/load","name":"load","owner":{"login":%q}},`+
		`"organization":{"login":%q}}`, action, job, job, lbl, action, runner, g.org, g.org, g.org)
	guid := fmt.Sprintf("load-%d-%s", job, action)
	if g.mix {
		g.mu.Lock()
		if len(g.recent) < 1000 {
			g.recent = append(g.recent, guid+"\x00"+b)
		}
		g.mu.Unlock()
	}
	return guid, []byte(b)
}

func (g *gen) send(ctx context.Context, due time.Time) {
	guid, body := g.body()
	m := hmac.New(sha256.New, g.secret)
	m.Write(body)
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, g.url, bytes.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("X-GitHub-Event", "workflow_job")
	req.Header.Set("X-GitHub-Delivery", guid)
	req.Header.Set("X-Hub-Signature-256", "sha256="+hex.EncodeToString(m.Sum(nil)))
	resp, err := g.client.Do(req)
	d := time.Since(due)
	g.sent.Add(1)
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.codes == nil {
		g.codes = map[int]int{}
	}
	if err != nil {
		g.errors++
		return
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	g.codes[resp.StatusCode]++
	g.lat = append(g.lat, d)
}

func (g *gen) report(w io.Writer, elapsed time.Duration) {
	g.mu.Lock()
	defer g.mu.Unlock()
	sort.Slice(g.lat, func(i, j int) bool { return g.lat[i] < g.lat[j] })
	pct := func(p float64) time.Duration {
		if len(g.lat) == 0 {
			return 0
		}
		return g.lat[min(int(float64(len(g.lat))*p), len(g.lat)-1)]
	}
	fmt.Fprintf(w, "sent %d in %s: %.0f deliveries/s; errors %d; answers %v\n",
		g.sent.Load(), elapsed.Round(time.Millisecond), float64(g.sent.Load())/elapsed.Seconds(), g.errors, g.codes)
	fmt.Fprintf(w, "ack latency: p50 %s  p90 %s  p99 %s  max %s\n",
		pct(0.50).Round(10*time.Microsecond), pct(0.90).Round(10*time.Microsecond),
		pct(0.99).Round(10*time.Microsecond), pct(1).Round(10*time.Microsecond))
}

// metricsReport prints what serve counted, for the end-to-end picture:
// deliveries by result and leases by state.
func metricsReport(w io.Writer, url string) {
	resp, err := http.Get(url)
	if err != nil {
		fmt.Fprintf(w, "metrics: %v\n", err)
		return
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	fmt.Fprintln(w, "serve's counts:")
	for sc.Scan() {
		line := sc.Text()
		if strings.HasPrefix(line, "crabbox_webhook_deliveries_total{") || strings.HasPrefix(line, "crabbox_leases{") ||
			strings.HasPrefix(line, "process_resident_memory_bytes") {
			fmt.Fprintln(w, "  "+line)
		}
	}
}
