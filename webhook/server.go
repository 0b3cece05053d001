package webhook

import (
	"net/http"
	"time"
)

// Server returns the http.Server serve runs the handler in. Its timeouts
// bound what a connection can hold before any handler runs: the headers
// within ReadHeaderTimeout (a sender dribbling headers holds no slot for
// long), the whole request within ReadTimeout for routes without a body
// deadline of their own (POST /webhook sets BodyTimeout), and at most
// MaxHeaderBytes of headers (GitHub's are well under 8 KB).
func Server(h http.Handler) *http.Server {
	return &http.Server{
		Handler:           h,
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       15 * time.Second,
		WriteTimeout:      15 * time.Second,
		IdleTimeout:       2 * time.Minute,
		MaxHeaderBytes:    64 << 10,
	}
}
