package lambda_test

import (
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
	"testing"
	"time"

	"github.com/crabbox/crabbox-runner/internal/exchange"
	"github.com/crabbox/crabbox-runner/internal/exchange/replaytest"
	"github.com/crabbox/crabbox-runner/providers/lambda"
	"github.com/crabbox/crabbox-runner/providers/lambda/lambdatest"
	"github.com/crabbox/crabbox-runner/provisioner"
)

// The replay suite: every recording under testdata/recorded/lambda (made
// against the fake by TestRecordFakeLifecycle -update, or against Lambda
// itself by crabbox-runner smoke --record) is replayed to the client and
// compared with the fake. A real recording dropped there is a test as is.

var update = flag.Bool("update", false, "regenerate the recordings made from the fake under testdata/recorded")

const recordedDir = "testdata/recorded/lambda"

// replayFake is the fake the recordings are compared with: its hosts
// boot slowly enough for a replayed poll to find them booting.
func replayFake(t *testing.T) *lambdatest.Server {
	return lambdatest.New(t, lambdatest.Options{BootDelay: 300 * time.Millisecond})
}

// TestRecordFakeLifecycle records one lifecycle against the fake:
// instance types, images, the key registered, launch, polls until active,
// terminate, the key deleted. The recording goes to a temporary directory
// and is replayed at once; with -update it replaces
// testdata/recorded/lambda/fake-lifecycle.jsonl.
func TestRecordFakeLifecycle(t *testing.T) {
	fake := replayFake(t)
	dir := t.TempDir()
	if *update {
		dir = recordedDir
		if err := os.Remove(filepath.Join(dir, "fake-lifecycle.jsonl")); err != nil && !errors.Is(err, os.ErrNotExist) {
			t.Fatal(err)
		}
	}
	pub, priv := keyPair(t, "crabbox")
	secrets := [][]byte{[]byte(fake.APIKey()), priv}
	rec, err := exchange.New(exchange.Options{Dir: dir, File: "fake-lifecycle.jsonl", Provider: "lambda", Source: exchange.SourceFake,
		Secrets: secrets, Note: "made by go test ./providers/lambda -run TestRecordFakeLifecycle -update"})
	if err != nil {
		t.Fatal(err)
	}
	p := newProvider(t, fake, nil, func(o *lambda.Options) { o.HTTPClient = rec.Client(nil) })
	ctx := context.Background()
	offers, err := p.Offers(ctx, a100)
	if err != nil || len(offers) == 0 {
		t.Fatalf("Offers: %d, %v", len(offers), err)
	}
	req := createRequest(t, offers[0], a100, "rec", "lease-1")
	req.SSHPublicKey = pub
	inst, err := p.Create(ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		got, err := p.Get(ctx, inst.ID)
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
	if err := p.Destroy(ctx, inst); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the lease's key deleted", 10*time.Second, func() bool { return len(fake.Keys()) == 0 })
	if err := rec.Close(); err != nil {
		t.Fatal(err)
	}
	suite.CheckFresh(t, rec.Path(), secrets...)
}

// suite is this provider's replay suite (internal/exchange/replaytest).
var suite = replaytest.Suite{Provider: "lambda", Dir: recordedDir, Client: replayClient, Fake: compareFake}

func TestReplayRecorded(t *testing.T) { suite.RunAll(t) }

// TestReplayNamesAChangedField changes one field of a recorded answer and
// expects the comparison with the fake to name it.
func TestReplayNamesAChangedField(t *testing.T) {
	// price_cents_per_hour: an integer at Lambda, made a string.
	suite.NamesAChangedField(t, "fake-lifecycle.jsonl", func(e *exchange.Exchange) bool {
		return e.Method == http.MethodGet && e.Path == "/api/v1/instance-types" && e.Status == 200
	}, regexp.MustCompile(`"price_cents_per_hour":\d+`), `"price_cents_per_hour":"129"`, "instance_type.price_cents_per_hour: recorded string, fake number")
}

func compareFake(t *testing.T, rec *exchange.Recording) []string {
	t.Helper()
	fake := replayFake(t)
	diffs, err := exchange.CompareWithFake(context.Background(), rec, exchange.Fake{
		URL:       fake.URL(),
		Authorize: func(r *http.Request) { r.Header.Set("Authorization", "Bearer "+fake.APIKey()) },
		ShapeFor: func(e *exchange.Exchange) exchange.ShapeOptions {
			// GET /instance-types answers a map keyed by type name.
			return exchange.ShapeOptions{DataKeys: func(path string) bool {
				return path == "data" && e.Path == "/api/v1/instance-types"
			}}
		},
		IDFields:  map[string]bool{"id": true, "instance_ids": true},
		State:     lambdaState,
		StateWait: 10 * time.Second,
	})
	if err != nil {
		t.Fatal(err)
	}
	return diffs
}

// lambdaState is the status of the (first) instance an answer shows, and
// whether it can be terminated: a booting instance is first refused
// terminate (vm-has-not-launched), then allowed it.
func lambdaState(body []byte) string {
	var env struct {
		Data json.RawMessage `json:"data"`
	}
	if json.Unmarshal(body, &env) != nil {
		return ""
	}
	var in struct {
		Status  string `json:"status"`
		Actions struct {
			Terminate struct {
				Available bool `json:"available"`
			} `json:"terminate"`
		} `json:"actions"`
	}
	var list []json.RawMessage
	raw := env.Data
	if json.Unmarshal(raw, &list) == nil {
		if len(list) == 0 {
			return "none"
		}
		raw = list[0]
	}
	if json.Unmarshal(raw, &in) != nil {
		return ""
	}
	return fmt.Sprintf("%s/terminate=%v", in.Status, in.Actions.Terminate.Available)
}

// replayClient drives the client through each recorded request, with the
// arguments the recording shows, against a server answering with the
// recorded answers; the client must send the recorded requests and come
// out of each call as the recorded answer says it should.
func replayClient(t *testing.T, rec *exchange.Recording) {
	rp := exchange.NewReplayer(rec, exchange.ShapeOptions{})
	defer rp.Close()
	c, err := lambda.NewClient(lambda.ClientConfig{APIURL: rp.URL(), APIKey: "secret_replay_0123456789abcdef",
		MinRequestInterval: -1, LaunchInterval: -1, Timeout: 5 * time.Second,
		Retry: lambda.RetryPolicy{InitialInterval: time.Millisecond, MaxInterval: 5 * time.Millisecond, MaxElapsedTime: 5 * time.Second}})
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
		if want := last.Status >= 200 && last.Status <= 299; want != (err == nil) {
			t.Errorf("exchange %d (%s %s, status %d): client error %v, want success %v", last.Seq, last.Method, last.Path, last.Status, err, want)
		}
		i = next
	}
	for _, p := range rp.Problems() {
		t.Error(p)
	}
}

var (
	keyPath      = regexp.MustCompile(`^/api/v1/ssh-keys/([^/]+)$`)
	instancePath = regexp.MustCompile(`^/api/v1/instances/([^/]+)$`)
)

// callFor makes the client call that sends the exchange's request.
func callFor(ctx context.Context, c *lambda.Client, e *exchange.Exchange) error {
	param := func(re *regexp.Regexp) string {
		s, _ := url.PathUnescape(re.FindStringSubmatch(e.Path)[1])
		return s
	}
	switch {
	case e.Method == http.MethodGet && e.Path == "/api/v1/instance-types":
		_, err := c.InstanceTypes(ctx)
		return err
	case e.Method == http.MethodGet && e.Path == "/api/v1/images":
		_, err := c.Images(ctx)
		return err
	case e.Method == http.MethodGet && e.Path == "/api/v1/ssh-keys":
		_, err := c.SSHKeys(ctx)
		return err
	case e.Method == http.MethodPost && e.Path == "/api/v1/ssh-keys":
		var b lambda.AddSSHKeyRequest
		if err := json.Unmarshal(e.ReqBody, &b); err != nil {
			return err
		}
		_, err := c.AddSSHKey(ctx, b.Name, b.PublicKey)
		return err
	case e.Method == http.MethodDelete && keyPath.MatchString(e.Path):
		return c.DeleteSSHKey(ctx, param(keyPath))
	case e.Method == http.MethodPost && e.Path == "/api/v1/instance-operations/launch":
		var b lambda.LaunchRequest
		if err := json.Unmarshal(e.ReqBody, &b); err != nil {
			return err
		}
		if b.UserData == exchange.Redacted {
			b.UserData = "#cloud-config\n" // blanked in the recording
		}
		_, err := c.Launch(ctx, b)
		return err
	case e.Method == http.MethodGet && e.Path == "/api/v1/instances":
		_, err := c.Instances(ctx)
		return err
	case e.Method == http.MethodGet && instancePath.MatchString(e.Path):
		_, err := c.Instance(ctx, param(instancePath))
		return err
	case e.Method == http.MethodPost && e.Path == "/api/v1/instance-operations/terminate":
		var b struct {
			InstanceIDs []string `json:"instance_ids"`
		}
		if err := json.Unmarshal(e.ReqBody, &b); err != nil {
			return err
		}
		_, err := c.Terminate(ctx, b.InstanceIDs...)
		return err
	}
	return fmt.Errorf("no client call sends %s %s", e.Method, e.Path)
}
