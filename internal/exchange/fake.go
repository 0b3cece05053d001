package exchange

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"
)

// Fake describes a fake provider API that a recording is compared with.
type Fake struct {
	// URL is the fake's base URL; recorded paths are appended to it.
	URL string
	// Authorize sets the fake's credentials on a request (the recorded
	// Authorization header is redacted).
	Authorize func(*http.Request)
	Shape     ShapeOptions
	// ShapeFor, when set, gives the options for one exchange's answer
	// (an object keyed by data in one answer is a record in another).
	ShapeFor func(e *Exchange) ShapeOptions
	// IDFields are the JSON field names whose values are ids the fake
	// issues on its own ("id", "new_contract", "instance_ids"): learnt
	// from each pair of answers (recorded value → fake value) and
	// replaced in the paths, queries and bodies of later requests.
	IDFields map[string]bool
	// State, when set, reads the state an answer reports ("loading",
	// "booting"): a GET whose fake answer is in another state than the
	// recorded one is asked again, up to StateWait, as a recording's
	// polls follow the host's life and the fake's hosts live faster or
	// slower.
	State     func(body []byte) string
	StateWait time.Duration
	Client    *http.Client
}

// CompareWithFake sends each recorded request to the fake, in order, and
// compares the fake's answer with the recorded one: the same status and a
// body of the same shape (CompareShapes). Exchanges that recorded no
// answer, a 429 or a 5xx are skipped: they depend on timing and luck, not
// on the API's contract. Fields blanked as secrets ("[REDACTED]") are left
// out of the request bodies sent to the fake. The differences name the
// exchange and the field.
func CompareWithFake(ctx context.Context, rec *Recording, f Fake) ([]string, error) {
	hc := f.Client
	if hc == nil {
		hc = &http.Client{Timeout: 30 * time.Second}
	}
	ids := map[string]string{}
	unreachable := map[string]bool{}
	seen, repeats := map[string]int{}, map[int]int{}
	var diffs []string
	for i := range rec.Exchanges {
		e := &rec.Exchanges[i]
		if e.Status == 0 || e.Status == http.StatusTooManyRequests || e.Status >= 500 {
			continue
		}
		at := fmt.Sprintf("exchange %d (%s %s)", e.Seq, e.Method, e.Path)
		status, body, err := sendToFake(ctx, hc, f, e, ids)
		if err != nil {
			return diffs, fmt.Errorf("%s: %w", at, err)
		}
		if f.State != nil && e.Method == http.MethodGet && len(e.RespBody) > 0 {
			want := f.State(e.RespBody)
			deadline := time.Now().Add(f.StateWait)
			for status == e.Status && f.State(body) != want && !unreachable[want] {
				if time.Now().After(deadline) {
					// A state the fake went past (or never has): a
					// recording polls it many times; wait for it once.
					unreachable[want] = true
					break
				}
				time.Sleep(20 * time.Millisecond)
				if status, body, err = sendToFake(ctx, hc, f, e, ids); err != nil {
					return diffs, fmt.Errorf("%s: %w", at, err)
				}
			}
		}
		if status != e.Status {
			diffs = append(diffs, fmt.Sprintf("%s: recorded status %d, fake %d (%s)", at, e.Status, status, clipText(body)))
			continue
		}
		shape := f.Shape
		if f.ShapeFor != nil {
			shape = f.ShapeFor(e)
		}
		for _, d := range CompareShapes(e.ResponseBytes(), body, shape) {
			// A recording polls the same answer many times: each field's
			// difference is told once, with how often it recurred.
			key := e.Method + " " + d
			if n, ok := seen[key]; ok {
				repeats[n]++
				continue
			}
			seen[key] = len(diffs)
			diffs = append(diffs, at+": "+d)
		}
		if rv, ok := decode(e.ResponseBytes()); ok {
			if fv, ok := decode(body); ok {
				learnIDs(rv, fv, f.IDFields, false, ids)
			}
		}
	}
	for i, n := range repeats {
		diffs[i] += fmt.Sprintf(" (and in %d later exchanges)", n)
	}
	return diffs, nil
}

func clipText(b []byte) string {
	s := strings.Join(strings.Fields(string(b)), " ")
	if len(s) > 200 {
		s = s[:200] + "…"
	}
	return s
}

func sendToFake(ctx context.Context, hc *http.Client, f Fake, e *Exchange, ids map[string]string) (int, []byte, error) {
	segs := strings.Split(e.Path, "/")
	for i, s := range segs {
		if m, ok := ids[s]; ok {
			segs[i] = url.PathEscape(m)
		}
	}
	u := strings.TrimSuffix(f.URL, "/") + strings.Join(segs, "/")
	if e.Query != "" {
		q, err := url.ParseQuery(e.Query)
		if err != nil {
			return 0, nil, err
		}
		for _, vs := range q {
			for i, v := range vs {
				if m, ok := ids[v]; ok {
					vs[i] = m
				}
			}
		}
		u += "?" + q.Encode()
	}
	var rd io.Reader
	if b := e.RequestBytes(); len(b) > 0 {
		if v, ok := decode(b); ok {
			v = mapIDs(dropRedacted(v), ids)
			if b, _ = json.Marshal(v); len(b) == 0 {
				return 0, nil, fmt.Errorf("re-encoding the request body")
			}
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, e.Method, u, rd)
	if err != nil {
		return 0, nil, err
	}
	for k, v := range e.ReqHeader {
		if k != "Authorization" {
			req.Header.Set(k, v)
		}
	}
	if f.Authorize != nil {
		f.Authorize(req)
	}
	resp, err := hc.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxBody))
	return resp.StatusCode, body, err
}

// dropRedacted leaves out the object fields whose value was blanked.
func dropRedacted(v any) any {
	switch x := v.(type) {
	case map[string]any:
		for k, val := range x {
			if s, ok := val.(string); ok && s == Redacted {
				delete(x, k)
				continue
			}
			x[k] = dropRedacted(val)
		}
	case []any:
		for i := range x {
			x[i] = dropRedacted(x[i])
		}
	}
	return v
}

// mapIDs replaces recorded ids with the fake's, in place.
func mapIDs(v any, ids map[string]string) any {
	switch x := v.(type) {
	case map[string]any:
		for k, val := range x {
			x[k] = mapIDs(val, ids)
		}
	case []any:
		for i := range x {
			x[i] = mapIDs(x[i], ids)
		}
	case string:
		if m, ok := ids[x]; ok {
			return m
		}
	case json.Number:
		if m, ok := ids[x.String()]; ok {
			return json.Number(m)
		}
	}
	return v
}

// learnIDs walks a recorded answer and the fake's side by side and notes
// recorded id → fake id for the id fields.
func learnIDs(r, f any, fields map[string]bool, isID bool, ids map[string]string) {
	switch rv := r.(type) {
	case map[string]any:
		fv, ok := f.(map[string]any)
		if !ok {
			return
		}
		for k, rc := range rv {
			if fc, ok := fv[k]; ok {
				learnIDs(rc, fc, fields, fields[k], ids)
			}
		}
	case []any:
		fv, ok := f.([]any)
		if !ok {
			return
		}
		for i := 0; i < len(rv) && i < len(fv); i++ {
			learnIDs(rv[i], fv[i], fields, isID, ids)
		}
	case string, json.Number:
		if !isID {
			return
		}
		rs, fs := fmt.Sprint(rv), fmt.Sprint(f)
		if _, seen := ids[rs]; !seen && rs != "" && fs != "" && kind(r) == kind(f) {
			ids[rs] = fs
		}
	}
}
