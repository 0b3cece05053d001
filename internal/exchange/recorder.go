package exchange

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"runtime/debug"
	"sync"
	"time"
)

// maxBody bounds how much of one body is recorded; the client still reads
// all of it.
const maxBody = 16 << 20

// Options configure a Recorder beyond NewRecorder's arguments.
type Options struct {
	Dir      string
	Provider string
	// Secrets are replaced wherever they appear (see redact.go).
	Secrets [][]byte
	// Source is SourceReal when empty.
	Source string
	// Tool names the program; "crabbox-runner" and its module version when
	// empty.
	Tool string
	Note string
	// File is the file name under Dir; "<provider>-<UTC time>.jsonl" when
	// empty. An existing file is not overwritten.
	File string
	// Now is the clock (tests); time.Now when nil.
	Now func() time.Time
}

// Recorder writes every exchange of the clients it wraps to one JSON Lines
// file, redacted. Each line is written as its exchange ends, so a run that
// is killed keeps what it did. It is safe for concurrent use.
type Recorder struct {
	red  *redactor
	now  func() time.Time
	path string

	mu     sync.Mutex
	f      *os.File
	seq    int
	closed bool
	err    error // the first write error, returned by Close
}

// NewRecorder starts a recording of a run against the real provider in
// dir (created 0700 when missing), in a new file 0600.
func NewRecorder(dir, provider string, secrets [][]byte) (*Recorder, error) {
	return New(Options{Dir: dir, Provider: provider, Secrets: secrets})
}

// New starts a recording as the options say and writes its header.
func New(o Options) (*Recorder, error) {
	if o.Dir == "" || o.Provider == "" {
		return nil, errors.New("exchange: a recording needs a directory and a provider")
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Source == "" {
		o.Source = SourceReal
	}
	if o.Source != SourceReal && o.Source != SourceFake {
		return nil, fmt.Errorf("exchange: source %q: want %q or %q", o.Source, SourceReal, SourceFake)
	}
	if o.Tool == "" {
		o.Tool = "crabbox-runner " + moduleVersion()
	}
	now := o.Now().UTC()
	if o.File == "" {
		o.File = fmt.Sprintf("%s-%s.jsonl", o.Provider, now.Format("20060102T150405.000Z"))
	}
	if err := os.MkdirAll(o.Dir, 0o700); err != nil {
		return nil, fmt.Errorf("exchange: %w", err)
	}
	path := filepath.Join(o.Dir, o.File)
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return nil, fmt.Errorf("exchange: %w", err)
	}
	r := &Recorder{red: newRedactor(o.Secrets), now: o.Now, path: path, f: f}
	h := Header{Type: "header", Format: FormatVersion, Provider: o.Provider, Tool: o.Tool, Recorded: now, Source: o.Source, Note: r.red.string(o.Note)}
	if err := r.writeLine(h); err != nil {
		f.Close()
		return nil, err
	}
	return r, nil
}

func moduleVersion() string {
	if info, ok := debug.ReadBuildInfo(); ok && info.Main.Version != "" {
		return info.Main.Version
	}
	return "dev"
}

// Path is the recording's file.
func (r *Recorder) Path() string { return r.path }

// Client returns a client whose requests are recorded: base's transport
// (http.DefaultTransport when base or its transport is nil) wrapped, its
// timeout, redirect policy and cookie jar kept.
func (r *Recorder) Client(base *http.Client) *http.Client {
	c := &http.Client{}
	if base != nil {
		*c = *base
	}
	next := c.Transport
	if next == nil {
		next = http.DefaultTransport
	}
	c.Transport = &transport{r: r, next: next}
	return c
}

// Close ends the recording and reports the first write error, if any.
func (r *Recorder) Close() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return r.err
	}
	r.closed = true
	if err := r.f.Close(); err != nil && r.err == nil {
		r.err = fmt.Errorf("exchange: %w", err)
	}
	return r.err
}

func (r *Recorder) writeLine(v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("exchange: encoding: %w", err)
	}
	b = append(r.red.bytes(b), '\n') // a net under the per-field redaction
	if _, err := r.f.Write(b); err != nil {
		return fmt.Errorf("exchange: writing %s: %w", r.path, err)
	}
	return nil
}

// Learn adds a secret the run made after the recording began (a lease's
// SSH private key, a JIT config): it is redacted from every exchange
// recorded after this call.
func (r *Recorder) Learn(secret string) { r.red.learn([][]byte{[]byte(secret)}) }

// record redacts and appends one exchange.
func (r *Recorder) record(e *Exchange) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return
	}
	r.seq++
	e.Type, e.Seq = "exchange", r.seq
	if err := r.writeLine(e); err != nil && r.err == nil {
		r.err = err
	}
}

type transport struct {
	r    *Recorder
	next http.RoundTripper
}

func (t *transport) RoundTrip(req *http.Request) (*http.Response, error) {
	red := t.r.red
	e := &Exchange{
		Start:     t.r.now().UTC(),
		Method:    req.Method,
		Path:      red.string(req.URL.EscapedPath()),
		Query:     red.string(req.URL.RawQuery),
		ReqHeader: red.headers(req.Header),
	}
	if req.Body != nil && req.Body != http.NoBody {
		// Read the body and hand the transport a copy; GetBody (used on
		// redirects) is kept as the caller set it.
		data, err := io.ReadAll(req.Body)
		req.Body.Close()
		if err != nil {
			return nil, err
		}
		clone := req.Clone(req.Context())
		clone.Body = io.NopCloser(bytes.NewReader(data))
		req = clone
		e.ReqBody, e.ReqText = red.body(clip(data))
	}
	start := time.Now()
	resp, err := t.next.RoundTrip(req)
	if err != nil {
		e.DurationMS = ms(time.Since(start))
		e.Error = red.string(err.Error())
		t.r.record(e)
		return nil, err
	}
	data, rerr := io.ReadAll(io.LimitReader(resp.Body, maxBody+1))
	e.DurationMS = ms(time.Since(start))
	e.Status = resp.StatusCode
	e.RespHeader = red.headers(resp.Header)
	e.RespBody, e.RespText = red.body(clip(data))
	if rerr != nil {
		e.Error = red.string("reading the answer: " + rerr.Error())
	}
	t.r.record(e)
	// The caller reads what was read here, then the rest (past maxBody)
	// and any read error from the original body.
	resp.Body = &replayBody{Reader: io.MultiReader(bytes.NewReader(data), errReader{rerr}, resp.Body), c: resp.Body}
	return resp, nil
}

func clip(b []byte) []byte {
	if len(b) > maxBody {
		return b[:maxBody]
	}
	return b
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

type replayBody struct {
	io.Reader
	c io.Closer
}

func (b *replayBody) Close() error { return b.c.Close() }

// errReader returns its error, or EOF when it has none.
type errReader struct{ err error }

func (e errReader) Read([]byte) (int, error) {
	if e.err != nil {
		return 0, e.err
	}
	return 0, io.EOF
}
