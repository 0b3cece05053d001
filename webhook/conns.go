package webhook

import (
	"net"
	"sync"
)

// DefaultMaxConns bounds the connections serve holds open at once. Each
// costs a goroutine and its buffers (tens of KB) whatever it sends, and the
// timeouts of Server bound how long a connection lives, not how many there
// are: without a count a stranger opening connections is stopped only by
// the file descriptor limit, which Go raises to the hard limit (often
// hundreds of thousands). 4096 is far above what GitHub's deliveries need
// (one short request each) and above the 1,000-connection flood of
// docs/benchmarks.md, where the byte budget of bounded.go is what answers.
const DefaultMaxConns = 4096

// LimitConns lets l hold at most max connections open. One past the limit
// is closed at once, unread, rather than left waiting in Accept
// (golang.org/x/net/netutil.LimitListener's way): a delivery that meets a
// full server fails fast, GitHub records the failure and the reconcile
// pass redelivers it, whereas a waiting one would wait as long as the
// flood lasts. shed, when set, is called for each connection closed so.
func LimitConns(l net.Listener, max int, shed func()) net.Listener {
	if max <= 0 {
		max = DefaultMaxConns
	}
	return &limitListener{Listener: l, slots: make(chan struct{}, max), shed: shed}
}

type limitListener struct {
	net.Listener
	slots chan struct{}
	shed  func()
}

func (l *limitListener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		select {
		case l.slots <- struct{}{}:
			return &limitConn{Conn: c, free: func() { <-l.slots }}, nil
		default:
			c.Close()
			if l.shed != nil {
				l.shed()
			}
		}
	}
}

type limitConn struct {
	net.Conn
	once sync.Once
	free func()
}

func (c *limitConn) Close() error {
	err := c.Conn.Close()
	c.once.Do(c.free)
	return err
}
