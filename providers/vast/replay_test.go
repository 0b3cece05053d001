package vast_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/crabbox/crabbox-runner/internal/exchange"
	"github.com/crabbox/crabbox-runner/internal/exchange/replaytest"
	"github.com/crabbox/crabbox-runner/providers/vast"
	"github.com/crabbox/crabbox-runner/providers/vast/vasttest"
	"github.com/crabbox/crabbox-runner/provisioner"
)

// The replay suite: every recording under testdata/recorded/vast (made
// against the fake by TestRecordFakeLifecycle -update, or against Vast
// itself by crabbox-runner smoke --record) is replayed to the client and
// compared with the fake. A real recording dropped there is a test as is.

var update = flag.Bool("update", false, "regenerate the recordings made from the fake under testdata/recorded")

const recordedDir = "testdata/recorded/vast"

// vastShape: the objects keyed by data rather than field names.
var vastShape = exchange.ShapeOptions{DataKeys: func(path string) bool {
	return path == "instances.ports" || path == "instances[].ports" || path == "label_counts"
}}

// replayFake is the fake the recordings are compared with: its hosts stay
// in each state long enough for a replayed poll to find it there.
func replayFake(t *testing.T) *vasttest.Server {
	return newFake(t, vasttest.Options{LoadingAfter: 150 * time.Millisecond, RunningAfter: 300 * time.Millisecond})
}

// TestRecordFakeLifecycle records one lifecycle against the fake:
// search, create, key attach, polls until running, destroy, and the show
// that finds it gone. The recording goes to a temporary directory and is
// replayed at once; with -update it replaces
// testdata/recorded/vast/fake-lifecycle.jsonl.
func TestRecordFakeLifecycle(t *testing.T) {
	fake := replayFake(t)
	dir := t.TempDir()
	if *update {
		dir = recordedDir
		if err := os.Remove(filepath.Join(dir, "fake-lifecycle.jsonl")); err != nil && !errors.Is(err, os.ErrNotExist) {
			t.Fatal(err)
		}
	}
	secrets := [][]byte{[]byte(fake.APIKey())}
	rec, err := exchange.New(exchange.Options{Dir: dir, File: "fake-lifecycle.jsonl", Provider: "vast", Source: exchange.SourceFake,
		Secrets: secrets, Note: "made by go test ./providers/vast -run TestRecordFakeLifecycle -update"})
	if err != nil {
		t.Fatal(err)
	}
	p := newProvider(t, fake, func(c *vast.Config) { c.HTTPClient = rec.Client(nil) })
	key := newLeaseKey(t)
	inst := create(t, p, a100, marker("rec", "lease-1"), key)
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		got, err := p.Get(context.Background(), inst.ID)
		if err != nil {
			t.Fatal(err)
		}
		if got.Status == provisioner.InstanceRunning {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("instance %s is %s", inst.ID, got.Status)
		}
	}
	if err := p.Destroy(context.Background(), inst); err != nil {
		t.Fatal(err)
	}
	if _, err := p.Get(context.Background(), inst.ID); !errors.Is(err, provisioner.ErrNotFound) {
		t.Fatalf("Get after destroy: %v", err)
	}
	if err := rec.Close(); err != nil {
		t.Fatal(err)
	}
	suite.CheckFresh(t, rec.Path(), secrets...)
}

// suite is this provider's replay suite (internal/exchange/replaytest).
var suite = replaytest.Suite{Provider: "vast", Dir: recordedDir, Client: replayClient, Fake: compareFake}

func TestReplayRecorded(t *testing.T) { suite.RunAll(t) }

// TestReplayNamesAChangedField changes one field of a recorded answer and
// expects the comparison with the fake to name it.
func TestReplayNamesAChangedField(t *testing.T) {
	// dph_total: a number at Vast, made a string.
	suite.NamesAChangedField(t, "fake-lifecycle.jsonl", func(e *exchange.Exchange) bool {
		return e.Method == http.MethodPost && e.Path == "/api/v0/bundles/" && e.Status == 200
	}, regexp.MustCompile(`"dph_total":[0-9.e+-]+`), `"dph_total":"0.5"`, "offers[0].dph_total: recorded string, fake number")
}

func compareFake(t *testing.T, rec *exchange.Recording) []string {
	t.Helper()
	fake := replayFake(t)
	diffs, err := exchange.CompareWithFake(context.Background(), rec, exchange.Fake{
		URL:       fake.URL(),
		Authorize: func(r *http.Request) { r.Header.Set("Authorization", "Bearer "+fake.APIKey()) },
		Shape:     vastShape,
		IDFields:  map[string]bool{"id": true, "new_contract": true},
		State:     vastState,
		StateWait: 10 * time.Second,
	})
	if err != nil {
		t.Fatal(err)
	}
	return diffs
}

// vastState is the actual_status of the (first) instance an answer shows.
func vastState(body []byte) string {
	var one struct {
		Instances json.RawMessage `json:"instances"`
	}
	if json.Unmarshal(body, &one) != nil {
		return ""
	}
	var in struct {
		ActualStatus *string `json:"actual_status"`
	}
	var list []json.RawMessage
	raw := one.Instances
	if json.Unmarshal(raw, &list) == nil {
		if len(list) == 0 {
			return "none"
		}
		raw = list[0]
	}
	if len(raw) == 0 || string(raw) == "null" {
		return "gone"
	}
	if json.Unmarshal(raw, &in) != nil || in.ActualStatus == nil {
		return "null"
	}
	return *in.ActualStatus
}

// replayClient drives the client through each recorded request, with the
// arguments the recording shows, against a server answering with the
// recorded answers; the client must send the recorded requests and come
// out of each call as the recorded answer says it should.
func replayClient(t *testing.T, rec *exchange.Recording) {
	rp := exchange.NewReplayer(rec, vastShape)
	defer rp.Close()
	c, err := vast.NewClient(vast.Config{APIKey: "replay-key-0123456789", APIURL: rp.URL(), MinRequestInterval: -1,
		Retry: vast.Retry{MaxRetries: 5, Initial: time.Millisecond, Max: 5 * time.Millisecond, MaxElapsed: 5 * time.Second}, Timeout: 5 * time.Second, CreateTimeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	for i := 0; i < len(rec.Exchanges); {
		e := rec.Exchanges[i]
		err := callFor(ctx, c, &e)
		next := rp.Next()
		if next <= i {
			t.Fatalf("exchange %d (%s %s): the client sent nothing: %v", e.Seq, e.Method, e.Path, err)
		}
		last := rec.Exchanges[next-1]
		if want := wantOK(&last); want != (err == nil) {
			t.Errorf("exchange %d (%s %s, status %d): client error %v, want success %v", last.Seq, last.Method, last.Path, last.Status, err, want)
		}
		i = next
	}
	for _, p := range rp.Problems() {
		t.Error(p)
	}
}

var (
	askPath      = regexp.MustCompile(`^/api/v0/asks/(\d+)/$`)
	instancePath = regexp.MustCompile(`^/api/v0/instances/(\d+)/$`)
	sshPath      = regexp.MustCompile(`^/api/v0/instances/(\d+)/ssh/$`)
)

// callFor makes the client call that sends the exchange's request.
func callFor(ctx context.Context, c *vast.Client, e *exchange.Exchange) error {
	id := func(re *regexp.Regexp) int64 {
		n, _ := strconv.ParseInt(re.FindStringSubmatch(e.Path)[1], 10, 64)
		return n
	}
	var body map[string]json.RawMessage
	if len(e.ReqBody) > 0 {
		if err := json.Unmarshal(e.ReqBody, &body); err != nil {
			return fmt.Errorf("recorded body: %w", err)
		}
	}
	text := func(k string) string {
		var s string
		_ = json.Unmarshal(body[k], &s)
		return s
	}
	switch {
	case e.Method == http.MethodPost && e.Path == "/api/v0/bundles/":
		q, err := searchQuery(e.ReqBody)
		if err != nil {
			return err
		}
		_, err = c.SearchOffers(ctx, q)
		return err
	case e.Method == http.MethodPut && askPath.MatchString(e.Path):
		var p vast.CreateParams
		if err := json.Unmarshal(e.ReqBody, &p); err != nil {
			return err
		}
		if p.OnStart == exchange.Redacted {
			p.OnStart = "true" // blanked in the recording; any script will do
		}
		_, err := c.CreateInstance(ctx, id(askPath), p)
		return err
	case e.Method == http.MethodGet && instancePath.MatchString(e.Path):
		_, err := c.GetInstance(ctx, id(instancePath))
		return err
	case e.Method == http.MethodPut && instancePath.MatchString(e.Path):
		return c.SetLabel(ctx, id(instancePath), text("label"))
	case e.Method == http.MethodDelete && instancePath.MatchString(e.Path):
		return c.DestroyInstance(ctx, id(instancePath))
	case e.Method == http.MethodPost && sshPath.MatchString(e.Path):
		return c.AttachSSHKey(ctx, id(sshPath), text("ssh_key"))
	case e.Method == http.MethodGet && e.Path == "/api/v1/instances/":
		q, _ := url.ParseQuery(e.Query)
		var f vast.Filters
		if s := q.Get("select_filters"); s != "" {
			if err := json.Unmarshal([]byte(s), &f); err != nil {
				return err
			}
		}
		_, err := c.ListInstancesPage(ctx, f, q.Get("after_token"))
		return err
	}
	return fmt.Errorf("no client call sends %s %s", e.Method, e.Path)
}

// searchQuery reads a recorded search body back into the query that
// sends it: the special keys, and every other key a filter.
func searchQuery(body []byte) (vast.SearchQuery, error) {
	var m map[string]json.RawMessage
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.UseNumber()
	if err := dec.Decode(&m); err != nil {
		return vast.SearchQuery{}, err
	}
	q := vast.SearchQuery{Filters: vast.Filters{}}
	for k, raw := range m {
		var err error
		switch k {
		case "order":
			var pairs [][]string
			if err = json.Unmarshal(raw, &pairs); err == nil {
				for _, p := range pairs {
					if len(p) == 2 {
						q.Order = append(q.Order, [2]string{p[0], p[1]})
					}
				}
			}
		case "type":
			err = json.Unmarshal(raw, &q.Type)
		case "limit":
			err = json.Unmarshal(raw, &q.Limit)
		case "allocated_storage":
			err = json.Unmarshal(raw, &q.AllocatedStorage)
		default:
			var cond vast.Cond
			d := json.NewDecoder(bytes.NewReader(raw))
			d.UseNumber()
			if err = d.Decode(&cond); err == nil {
				q.Filters[k] = cond
			}
		}
		if err != nil {
			return q, fmt.Errorf("search body %s: %w", k, err)
		}
	}
	return q, nil
}

// wantOK is how the client should come out of a call whose last answer
// is e: a 2xx succeeds unless it says "success": false or shows no
// instance; a destroy of an instance already gone and an attach of a key
// already there succeed.
func wantOK(e *exchange.Exchange) bool {
	body := string(e.ResponseBytes())
	switch {
	case e.Method == http.MethodDelete && (e.Status == 404 || strings.Contains(body, "not_found") || strings.Contains(body, "no_such_instance")):
		return true
	case e.Method == http.MethodPost && sshPath.MatchString(e.Path) && strings.Contains(strings.ToLower(body), "already associated"):
		return true
	case e.Status < 200 || e.Status > 299:
		return false
	case regexp.MustCompile(`"success"\s*:\s*false`).MatchString(body):
		return false
	case e.Method == http.MethodGet && instancePath.MatchString(e.Path):
		var v struct {
			Instances json.RawMessage `json:"instances"`
		}
		_ = json.Unmarshal(e.RespBody, &v)
		s := strings.TrimSpace(string(v.Instances))
		return s != "" && s != "null" && s != "{}" && s != "[]"
	case e.Method == http.MethodPut && askPath.MatchString(e.Path):
		return strings.Contains(body, "new_contract")
	}
	return true
}
