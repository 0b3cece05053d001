package webhook

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"hash"
	"io"
	"net/http"
	"strings"
	"sync"
	"time"
)

// What a delivery may cost before it has proved it comes from GitHub.
//
// An unauthenticated sender can make us hold only what the budget allows:
// a request without a well-formed signature header is refused before its
// body is read; a Content-Length above the cap is refused unread; every
// other body is read under a deadline, through the HMAC as it streams, into
// memory reserved from a fixed byte budget before the first byte is read.
// Concurrency is bounded by that budget rather than by a request count:
// a request count times a 25 MB cap would be 25 MB a slot, while bytes
// reserved bound memory whatever the cap.
const (
	// GitHubMaxPayload is GitHub's cap on a webhook payload: "Payloads are
	// capped at 25 MB. If an event generates a larger payload, GitHub will
	// not deliver a payload for that webhook event." (docs.github.com,
	// "Webhook events and payloads", Payload cap). A larger cap here would
	// only let strangers make us buffer more.
	GitHubMaxPayload = 25 << 20

	// DefaultMaxBuffered is the default budget for bodies being read.
	DefaultMaxBuffered = 16 << 20

	// SmallBody is the size up to which a body (by its Content-Length)
	// draws on the small lane. workflow_job deliveries are a few KB, so a
	// flood of large bodies, signed or not, cannot take the memory GitHub's
	// own deliveries need.
	SmallBody = 64 << 10

	// DefaultBodyTimeout bounds the time to receive a body. GitHub gives up
	// on a delivery not answered in time (docs.github.com, "Best practices
	// for using webhooks", "Respond within 10 seconds": past it GitHub
	// terminates the connection and counts the delivery failed; GitHub
	// Enterprise Server's page says 30 seconds), so a body still arriving
	// after 10 s is no delivery github.com is waiting for.
	DefaultBodyTimeout = 10 * time.Second

	// DefaultQueueWait is how long a request waits for budget before it is
	// refused with 503 and Retry-After. Brief: a burst of GitHub's own
	// deliveries is absorbed, a flood is shed instead of queueing without
	// end (each waiter holds a connection and a goroutine).
	DefaultQueueWait = time.Second
)

// budget is a byte semaphore: bytes are reserved before a body is read and
// returned when the request ends.
type budget struct {
	mu      sync.Mutex
	free    int64
	changed chan struct{} // closed and replaced whenever bytes come back
}

func newBudget(n int64) *budget { return &budget{free: n, changed: make(chan struct{})} }

func (b *budget) acquire(ctx context.Context, n int64) bool {
	for {
		b.mu.Lock()
		if b.free >= n {
			b.free -= n
			b.mu.Unlock()
			return true
		}
		ch := b.changed
		b.mu.Unlock()
		select {
		case <-ch:
		case <-ctx.Done():
			return false
		}
	}
}

func (b *budget) release(n int64) {
	b.mu.Lock()
	b.free += n
	close(b.changed)
	b.changed = make(chan struct{})
	b.mu.Unlock()
}

// smallBufs holds buffers for small bodies. Only buffers no larger than
// SmallBody go back, so what the pool keeps is bounded by the small lane;
// large bodies get a buffer of their own that the collector takes back.
var smallBufs = sync.Pool{New: func() any { return new(bytes.Buffer) }}

// parseSignature returns the MAC an X-Hub-Signature-256 header carries, or
// false when the header is missing or not "sha256=" and 64 hex digits.
func parseSignature(header string) ([]byte, bool) {
	const prefix = "sha256="
	if len(header) != len(prefix)+sha256.Size*2 || !strings.HasPrefix(header, prefix) {
		return nil, false
	}
	got, err := hex.DecodeString(header[len(prefix):])
	return got, err == nil
}

var (
	errTooLarge = errors.New("body too large")
	errBusy     = errors.New("too many deliveries being read")
)

// body is a delivery's body, read and checked.
type body struct {
	buf     *bytes.Buffer
	release func()
}

func (b body) Bytes() []byte { return b.buf.Bytes() }

// readBody reserves memory for the body, streams it through the HMAC into
// that memory under the deadline, and reports whether the MAC matches. The
// caller must call release once done with the bytes.
func (h *Handler) readBody(w http.ResponseWriter, r *http.Request, want []byte) (body, bool, error) {
	n := r.ContentLength
	if n < 0 {
		// Chunked: the size is unknown until the end, so reserve the cap.
		n = h.cfg.MaxBody
	}
	lane := h.large
	if n <= SmallBody {
		lane = h.small
	}
	reserve := max(n, 1)
	ctx, cancel := context.WithTimeout(r.Context(), h.cfg.QueueWait)
	ok := lane.acquire(ctx, reserve)
	cancel()
	if !ok {
		return body{}, false, errBusy
	}
	// A deadline on the body only: a slow sender cannot hold its
	// reservation for longer than this. Errors mean the ResponseWriter
	// cannot set one (a test recorder); the server's ReadTimeout remains.
	_ = http.NewResponseController(w).SetReadDeadline(time.Now().Add(h.cfg.BodyTimeout))

	buf := smallBufs.Get().(*bytes.Buffer)
	buf.Reset()
	if r.ContentLength >= 0 {
		buf.Grow(int(n)) // reserved already; saves the copies of growing
	}
	release := func() {
		if buf.Cap() <= SmallBody {
			smallBufs.Put(buf)
		}
		lane.release(reserve)
	}
	mac := hmac.New(sha256.New, h.cfg.Secret)
	_, err := io.Copy(io.MultiWriter(buf, mac), &capped{r: r.Body, left: n})
	if err == nil && r.ContentLength >= 0 && int64(buf.Len()) != r.ContentLength {
		err = io.ErrUnexpectedEOF
	}
	if err != nil {
		release()
		return body{}, false, err
	}
	// The body is in, so the deadline has done its work; it is lifted so
	// that nothing reading the connection (net/http's background read)
	// trips over it while the delivery is recorded. WriteTimeout still
	// bounds the answer, and the server sets fresh deadlines for the next
	// request. (A failed read keeps it: it ends the connection the server
	// would otherwise try to drain.)
	_ = http.NewResponseController(w).SetReadDeadline(time.Time{})
	return body{buf: buf, release: release}, macEqual(mac, want), nil
}

func macEqual(mac hash.Hash, want []byte) bool { return hmac.Equal(mac.Sum(nil), want) }

// capped reads at most left bytes and fails with errTooLarge past them, so
// a chunked body past the cap never grows the buffer beyond what was
// reserved.
type capped struct {
	r    io.Reader
	left int64
}

func (c *capped) Read(p []byte) (int, error) {
	if c.left <= 0 {
		// One byte more tells a body that ends here from one that goes on.
		var one [1]byte
		n, err := c.r.Read(one[:])
		if n > 0 {
			return 0, errTooLarge
		}
		return 0, err
	}
	if int64(len(p)) > c.left {
		p = p[:c.left]
	}
	n, err := c.r.Read(p)
	c.left -= int64(n)
	return n, err
}
