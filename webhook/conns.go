package webhook

import (
	"context"
	"net"
	"net/http"
	"sync"
	"time"
)

// DefaultMaxConns bounds the connections serve holds open at once. Each
// costs a goroutine and its buffers (about 15-20 KB measured, see
// docs/benchmarks.md) whatever it sends, and the timeouts of Server bound
// how long a connection lives, not how many there are: without a count a
// stranger opening connections is stopped only by the file descriptor
// limit, which Go raises to the hard limit (often hundreds of thousands).
// 4096 is far above what GitHub's deliveries need (one short request each)
// and above the 1,000-request flood of docs/benchmarks.md, where the byte
// budget of bounded.go is what answers.
const DefaultMaxConns = 4096

// LimitConns makes srv hold at most max connections from l open, and
// returns the listener to serve srv on. At the limit a new connection
// takes the place of the one that has waited longest without a request in
// progress: silent, dribbling its headers, or idle between requests. A
// request whose headers have arrived (a GitHub delivery, within
// milliseconds) is not cut; it is bounded by the body budget and deadlines
// instead. Only when every connection is inside a request is the new one
// closed unread, at once rather than left waiting in Accept
// (netutil.LimitListener's way): a delivery meeting that fails fast, GitHub
// records it, and the reconcile pass redelivers it. shed, when set, is
// called for every connection closed to make room or refused.
//
// It wraps srv.Handler and sets srv.ConnContext: call it last, just before
// Serve.
func LimitConns(srv *http.Server, l net.Listener, max int, shed func()) net.Listener {
	if max <= 0 {
		max = DefaultMaxConns
	}
	cl := &connLimit{Listener: l, max: max, shed: shed, waiting: map[*limitConn]time.Time{}}
	next := srv.Handler
	srv.ConnContext = func(ctx context.Context, c net.Conn) context.Context {
		if lc, ok := c.(*limitConn); ok {
			return context.WithValue(ctx, connKey{}, lc)
		}
		return ctx
	}
	srv.Handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if lc, ok := r.Context().Value(connKey{}).(*limitConn); ok {
			cl.busy(lc, true)
		}
		next.ServeHTTP(w, r)
	})
	// Back among the waiting once the answer is written and the
	// connection idles, not when the handler returns: the answer is not
	// cut on its way out.
	prev := srv.ConnState
	srv.ConnState = func(c net.Conn, s http.ConnState) {
		if lc, ok := c.(*limitConn); ok && s == http.StateIdle {
			cl.busy(lc, false)
		}
		if prev != nil {
			prev(c, s)
		}
	}
	return cl
}

type connKey struct{}

type connLimit struct {
	net.Listener
	max  int
	shed func()

	mu   sync.Mutex
	open int
	// waiting holds the open connections with no request in a handler,
	// since when.
	waiting map[*limitConn]time.Time
}

type limitConn struct {
	net.Conn
	cl *connLimit
	// counted is whether the connection holds a slot; guarded by cl.mu.
	counted bool
}

func (c *limitConn) Close() error {
	err := c.Conn.Close()
	c.cl.release(c)
	return err
}

func (cl *connLimit) Accept() (net.Conn, error) {
	for {
		c, err := cl.Listener.Accept()
		if err != nil {
			return nil, err
		}
		lc := &limitConn{Conn: c, cl: cl}
		cl.mu.Lock()
		var victim *limitConn
		if cl.open >= cl.max {
			var since time.Time
			for w, t := range cl.waiting {
				if victim == nil || t.Before(since) {
					victim, since = w, t
				}
			}
			if victim != nil {
				cl.drop(victim)
			}
		}
		admitted := cl.open < cl.max
		if admitted {
			lc.counted = true
			cl.open++
			cl.waiting[lc] = time.Now()
		}
		cl.mu.Unlock()
		if victim != nil {
			victim.Conn.Close()
			cl.shedOne()
		}
		if admitted {
			return lc, nil
		}
		c.Close()
		cl.shedOne()
	}
}

func (cl *connLimit) shedOne() {
	if cl.shed != nil {
		cl.shed()
	}
}

// drop frees c's slot; cl.mu is held.
func (cl *connLimit) drop(c *limitConn) {
	if c.counted {
		c.counted = false
		cl.open--
		delete(cl.waiting, c)
	}
}

func (cl *connLimit) release(c *limitConn) {
	cl.mu.Lock()
	cl.drop(c)
	cl.mu.Unlock()
}

// busy marks c as inside a handler (not to be cut) or out of it again.
func (cl *connLimit) busy(c *limitConn, in bool) {
	cl.mu.Lock()
	defer cl.mu.Unlock()
	if !c.counted {
		return
	}
	if in {
		delete(cl.waiting, c)
	} else {
		cl.waiting[c] = time.Now()
	}
}
