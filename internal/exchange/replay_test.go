package exchange

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
)

const tinyRecording = `{"type":"header","format":1,"provider":"toy","tool":"t","recorded":"2026-01-01T00:00:00Z","source":"real"}
{"type":"exchange","seq":1,"method":"POST","path":"/things","request_body":{"name":"a","secret":"[REDACTED]"},"status":200,"response_headers":{"Content-Type":"application/json"},"response_body":{"id":"r-1","size":3}}
{"type":"exchange","seq":2,"method":"GET","path":"/things/r-1","status":200,"response_body":{"id":"r-1","size":3,"state":"ready"}}
{"type":"exchange","seq":3,"method":"DELETE","path":"/things/r-1","status":429,"response_text":"slow down"}
{"type":"exchange","seq":4,"method":"DELETE","path":"/things/r-1","status":200,"response_body":{}}
`

// toyFake issues its own ids ("f-1"), reaches "ready" on the second GET,
// and refuses a body holding a redacted field.
func toyFake(t *testing.T, sizeAsText bool) (*httptest.Server, *[]string) {
	var mu sync.Mutex
	var seen []string
	gets := 0
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		mu.Lock()
		seen = append(seen, r.Method+" "+r.URL.Path+" "+string(b))
		mu.Unlock()
		var size any = 3
		if sizeAsText {
			size = "3"
		}
		switch {
		case r.Header.Get("Authorization") != "Bearer fake":
			w.WriteHeader(401)
		case strings.Contains(string(b), Redacted):
			w.WriteHeader(400)
		case r.Method == "POST":
			json.NewEncoder(w).Encode(map[string]any{"id": "f-1", "size": size})
		case r.Method == "GET" && r.URL.Path == "/things/f-1":
			gets++
			state := "creating"
			if gets > 1 {
				state = "ready"
			}
			json.NewEncoder(w).Encode(map[string]any{"id": "f-1", "size": size, "state": state})
		case r.Method == "DELETE" && r.URL.Path == "/things/f-1":
			io.WriteString(w, "{}")
		default:
			w.WriteHeader(404)
		}
	}))
	t.Cleanup(srv.Close)
	return srv, &seen
}

func TestCompareWithFakeMapsIDsAndWaitsForState(t *testing.T) {
	rec, err := Read(strings.NewReader(tinyRecording))
	if err != nil {
		t.Fatal(err)
	}
	for _, sizeAsText := range []bool{false, true} {
		srv, seen := toyFake(t, sizeAsText)
		diffs, err := CompareWithFake(context.Background(), rec, Fake{
			URL:       srv.URL,
			Authorize: func(r *http.Request) { r.Header.Set("Authorization", "Bearer fake") },
			IDFields:  map[string]bool{"id": true},
			State: func(b []byte) string {
				var v struct{ State string }
				json.Unmarshal(b, &v)
				return v.State
			},
			StateWait: 5e9,
		})
		if err != nil {
			t.Fatal(err)
		}
		want := 0
		if sizeAsText {
			want = 2 // the POST's and the GET's size
		}
		if len(diffs) != want {
			t.Errorf("size as text %v: diffs %q", sizeAsText, diffs)
		}
		for _, d := range diffs {
			if !strings.Contains(d, "size: recorded number, fake string") {
				t.Errorf("diff %q does not name the field", d)
			}
		}
		// The 429 is skipped; the GET was asked again until ready.
		if got := fmt.Sprint(*seen); !strings.Contains(got, "GET /things/f-1") || strings.Count(got, "DELETE") != 1 || strings.Count(got, "GET") != 2 {
			t.Errorf("requests to the fake: %v", got)
		}
	}
}

func TestReplayerAnswersInOrderAndNotesDifferences(t *testing.T) {
	rec, err := Read(strings.NewReader(tinyRecording))
	if err != nil {
		t.Fatal(err)
	}
	rp := NewReplayer(rec, ShapeOptions{})
	defer rp.Close()
	do := func(method, path, body string) int {
		req, _ := http.NewRequest(method, rp.URL()+path, strings.NewReader(body))
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	if s := do("POST", "/things", `{"name":"b","secret":"x"}`); s != 200 {
		t.Errorf("status %d", s)
	}
	do("GET", "/things/r-2", "")               // wrong path
	do("DELETE", "/things/r-1", "")            // the 429
	do("DELETE", "/things/r-1", "")            // the 200
	if s := do("GET", "/more", ""); s != 418 { // beyond the recording
		t.Errorf("beyond the recording: status %d", s)
	}
	p := rp.Problems()
	if len(p) != 2 || !strings.Contains(p[0], "exchange 2 (GET /things/r-1): the client sent GET /things/r-2") || !strings.Contains(p[1], "only 4 exchanges") {
		t.Errorf("problems %q", p)
	}
}
