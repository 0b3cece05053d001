// Package exchange records and replays the HTTP exchanges between
// crabbox-runner's provider clients and the clouds they call, so that a
// run against the real Vast.ai or Lambda API (crabbox-runner smoke
// --record DIR) leaves evidence the tests can hold the clients and the
// fakes to.
//
// A recording is one JSON Lines file: a Header line, then one Exchange
// line per HTTP attempt, in the order they were sent (docs/live-smoke.md,
// "Recordings"). Everything written is redacted first (redact.go): the
// Authorization header, every secret value the run was given, wherever it
// appears, and the JSON fields known to carry secrets.
//
// The replay side (replay.go, shape.go) answers a client with a
// recording's responses in order, and compares the shape of two JSON
// answers (a recorded one and the fake's) field by field, naming the path
// of each field where they disagree.
package exchange

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"time"
)

// FormatVersion is the version of the file format written here.
const FormatVersion = 1

// Sources of a recording.
const (
	SourceReal = "real" // the provider's real API
	SourceFake = "fake" // one of our fakes (vasttest, lambdatest)
)

// Header is the first line of a recording.
type Header struct {
	Type     string    `json:"type"` // "header"
	Format   int       `json:"format"`
	Provider string    `json:"provider"` // "vast", "lambda"
	Tool     string    `json:"tool"`     // "crabbox-runner <version>"
	Recorded time.Time `json:"recorded"`
	Source   string    `json:"source"` // SourceReal or SourceFake
	Note     string    `json:"note,omitempty"`
}

// Exchange is one HTTP attempt: the request as sent and the response as
// received (or the transport error when none came). Bodies that are JSON
// are kept as JSON (RequestBody, ResponseBody); other bodies as text.
type Exchange struct {
	Type       string            `json:"type"` // "exchange"
	Seq        int               `json:"seq"`  // from 1
	Start      time.Time         `json:"start"`
	DurationMS float64           `json:"duration_ms"`
	Method     string            `json:"method"`
	Path       string            `json:"path"`
	Query      string            `json:"query,omitempty"`
	ReqHeader  map[string]string `json:"request_headers,omitempty"`
	ReqBody    json.RawMessage   `json:"request_body,omitempty"`
	ReqText    string            `json:"request_text,omitempty"`
	Status     int               `json:"status"` // 0 when no answer came
	RespHeader map[string]string `json:"response_headers,omitempty"`
	RespBody   json.RawMessage   `json:"response_body,omitempty"`
	RespText   string            `json:"response_text,omitempty"`
	// Error is the transport error when no answer came.
	Error string `json:"error,omitempty"`
}

// RequestBytes is the request body as sent (JSON or text).
func (e *Exchange) RequestBytes() []byte {
	if len(e.ReqBody) > 0 {
		return e.ReqBody
	}
	return []byte(e.ReqText)
}

// ResponseBytes is the response body as received (JSON or text).
func (e *Exchange) ResponseBytes() []byte {
	if len(e.RespBody) > 0 {
		return e.RespBody
	}
	return []byte(e.RespText)
}

// Recording is a parsed recording file.
type Recording struct {
	Header    Header
	Exchanges []Exchange
}

// maxLine bounds one line of a recording (an offer search answer runs to
// a few hundred KB).
const maxLine = 32 << 20

// ReadFile parses a recording.
func ReadFile(path string) (*Recording, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	rec, err := Read(f)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return rec, nil
}

// Read parses a recording: a header line, then exchange lines. Blank lines
// are skipped; unknown fields are ignored, so later formats stay readable.
func Read(r io.Reader) (*Recording, error) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 64<<10), maxLine)
	rec := &Recording{}
	line, sawHeader := 0, false
	for sc.Scan() {
		line++
		b := bytes.TrimSpace(sc.Bytes())
		if len(b) == 0 {
			continue
		}
		var kind struct {
			Type string `json:"type"`
		}
		if err := json.Unmarshal(b, &kind); err != nil {
			return nil, fmt.Errorf("line %d: %w", line, err)
		}
		switch kind.Type {
		case "header":
			if sawHeader {
				return nil, fmt.Errorf("line %d: a second header", line)
			}
			if err := json.Unmarshal(b, &rec.Header); err != nil {
				return nil, fmt.Errorf("line %d: %w", line, err)
			}
			sawHeader = true
		case "exchange":
			if !sawHeader {
				return nil, fmt.Errorf("line %d: an exchange before the header", line)
			}
			var e Exchange
			if err := json.Unmarshal(b, &e); err != nil {
				return nil, fmt.Errorf("line %d: %w", line, err)
			}
			rec.Exchanges = append(rec.Exchanges, e)
		default:
			return nil, fmt.Errorf("line %d: unknown record type %q", line, kind.Type)
		}
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	if !sawHeader {
		return nil, errors.New("no header line")
	}
	if rec.Header.Format > FormatVersion {
		return nil, fmt.Errorf("format %d is newer than this build reads (%d)", rec.Header.Format, FormatVersion)
	}
	return rec, nil
}
