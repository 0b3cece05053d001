package exchange

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"sort"
	"sync"
)

// Replayer is a test server that answers each request with the next
// recorded response, in order, after checking that the request is the
// recorded one: the same method and path, the same query keys, and a body
// of the same shape. Whatever does not match is a problem (Problems); the
// answer is the recorded one all the same, so one difference does not
// hide the next.
type Replayer struct {
	srv   *httptest.Server
	rec   *Recording
	shape ShapeOptions

	mu       sync.Mutex
	next     int
	problems []string
}

// NewReplayer starts a server replaying rec. Close it when done.
func NewReplayer(rec *Recording, o ShapeOptions) *Replayer {
	r := &Replayer{rec: rec, shape: o}
	r.srv = httptest.NewServer(http.HandlerFunc(r.serve))
	return r
}

// URL is the server's base URL.
func (r *Replayer) URL() string { return r.srv.URL }

// Close stops the server.
func (r *Replayer) Close() { r.srv.Close() }

// Next is the index of the exchange the next request is answered with.
func (r *Replayer) Next() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.next
}

// Problems are the differences seen so far between the requests and the
// recording.
func (r *Replayer) Problems() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.problems)
}

func (r *Replayer) serve(w http.ResponseWriter, req *http.Request) {
	body, _ := io.ReadAll(req.Body)
	r.mu.Lock()
	if r.next >= len(r.rec.Exchanges) {
		r.problems = append(r.problems, fmt.Sprintf("request %d %s %s: the recording has only %d exchanges", r.next+1, req.Method, req.URL.Path, len(r.rec.Exchanges)))
		r.next++
		r.mu.Unlock()
		http.Error(w, "beyond the recording", http.StatusTeapot)
		return
	}
	e := r.rec.Exchanges[r.next]
	r.next++
	r.problems = append(r.problems, requestDiffs(&e, req, body, r.shape)...)
	r.mu.Unlock()

	if e.Status == 0 {
		// No answer came: drop the connection.
		if hj, ok := w.(http.Hijacker); ok {
			if c, _, err := hj.Hijack(); err == nil {
				c.Close()
				return
			}
		}
		http.Error(w, "no answer recorded", http.StatusBadGateway)
		return
	}
	for k, v := range e.RespHeader {
		w.Header().Set(k, v)
	}
	w.WriteHeader(e.Status)
	w.Write(e.ResponseBytes())
}

// requestDiffs compares a request with the recorded one.
func requestDiffs(e *Exchange, req *http.Request, body []byte, o ShapeOptions) []string {
	at := fmt.Sprintf("exchange %d (%s %s)", e.Seq, e.Method, e.Path)
	var out []string
	if req.Method != e.Method || req.URL.EscapedPath() != e.Path {
		return []string{fmt.Sprintf("%s: the client sent %s %s", at, req.Method, req.URL.EscapedPath())}
	}
	rq, _ := url.ParseQuery(e.Query)
	if want, got := queryKeys(rq), queryKeys(req.URL.Query()); !slices.Equal(want, got) {
		out = append(out, fmt.Sprintf("%s: query keys %v, recorded %v", at, got, want))
	}
	for _, d := range CompareShapes(e.RequestBytes(), body, o) {
		out = append(out, fmt.Sprintf("%s: request %s", at, bytes.Replace([]byte(d), []byte("fake"), []byte("client"), 1)))
	}
	return out
}

func queryKeys(v url.Values) []string {
	var out []string
	for k := range v {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}
