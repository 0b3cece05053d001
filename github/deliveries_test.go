package github_test

import (
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	gh "github.com/google/go-github/v62/github"

	"github.com/crabbox/crabbox-runner/github"
	"github.com/crabbox/crabbox-runner/github/githubtest"
	"github.com/crabbox/crabbox-runner/provisioner"
)

// receiver is a webhook endpoint that counts deliveries by GUID.
type receiver struct {
	mu     sync.Mutex
	byGUID map[string]int
	code   int
}

func newReceiver(t *testing.T) (*receiver, string) {
	rc := &receiver{byGUID: map[string]int{}, code: http.StatusOK}
	srv := newServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		rc.mu.Lock()
		rc.byGUID[r.Header.Get("X-GitHub-Delivery")]++
		code := rc.code
		rc.mu.Unlock()
		w.WriteHeader(code)
	}))
	return rc, srv.URL
}

func (rc *receiver) answer(code int) {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	rc.code = code
}

func (rc *receiver) got(guid string) int {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	return rc.byGUID[guid]
}

func TestNeedsAnApp(t *testing.T) {
	_, c, rec := modes[0].setup(t)
	ctx := ctxFor(t)
	_, err1 := c.Installations(ctx)
	_, err2 := c.FailedDeliveries(ctx, time.Time{})
	err3 := c.Redeliver(ctx, 1)
	for _, err := range []error{err1, err2, err3} {
		if !errors.Is(err, github.ErrNeedsApp) || !strings.Contains(err.Error(), "needs a GitHub App") {
			t.Errorf("token mode: %v, want ErrNeedsApp", err)
		}
	}
	if len(rec.requests) != 0 {
		t.Errorf("token mode sent %v", rec.requests)
	}
}

func TestInstallations(t *testing.T) {
	key, pemBytes := testAppKey(t)
	installs := map[string]int64{"bob/tool": 2}
	for i := range 120 {
		installs[fmt.Sprintf("org%03d", i)] = int64(1000 + i)
	}
	fake := githubtest.New(githubtest.Options{AppID: appID, AppPublicKey: &key.PublicKey, Installations: installs})
	t.Cleanup(fake.Close)
	rec := &recorder{}
	c, err := github.New(github.Config{APIURL: fake.URL(), AppID: appID, AppPrivateKey: pemBytes, HTTPClient: &http.Client{Transport: rec}})
	if err != nil {
		t.Fatal(err)
	}
	got, err := c.Installations(ctxFor(t))
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 121 || got[0] != (github.Installation{ID: 2, Account: "bob", AccountType: "User"}) ||
		got[1] != (github.Installation{ID: 1000, Account: "org000", AccountType: "Organization"}) || got[120].ID != 1119 {
		t.Errorf("Installations = %d: %+v ... %+v", len(got), got[:2], got[len(got)-1])
	}
	if n := rec.count("GET /app/installations"); n != 2 {
		t.Errorf("%d requests, want 2 pages", n)
	}
}

// TestLostWebhooksAreRecovered drops queued webhooks and shows both ways
// back: QueuedJobs finds the jobs, and FailedDeliveries with Redeliver
// gets each lost delivery to the receiver exactly once.
func TestLostWebhooksAreRecovered(t *testing.T) {
	fake, c, rec := modes[1].setup(t)
	ctx := ctxFor(t)
	rc, url := newReceiver(t)
	fake.SetWebhook(url, []byte("secret"))
	start := time.Now().Add(-2 * time.Second)

	// Delivered fine.
	ok := fake.QueueJob(githubtest.JobSpec{Repo: "acme/app", Org: "acme", Labels: []string{"gpu"}})
	if _, err := fake.WaitDeliveries(ctx, 1); err != nil {
		t.Fatal(err)
	}
	// Failed once (500), then redelivered by hand successfully: not
	// failed any more.
	rc.answer(500)
	flaky := fake.QueueJob(githubtest.JobSpec{Repo: "acme/app", Org: "acme", Labels: []string{"gpu"}})
	ds, err := fake.WaitDeliveries(ctx, 2)
	if err != nil {
		t.Fatal(err)
	}
	rc.answer(200)
	if err := fake.Redeliver(ds[1].GUID); err != nil {
		t.Fatal(err)
	}
	if ds, err = fake.WaitDeliveries(ctx, 3); err != nil || ds[2].StatusCode != 200 || ds[0].StatusCode != 200 {
		t.Fatalf("deliveries before the drop: %v %v", ds, err)
	}
	// Lost: never reach the receiver.
	fake.SetDropDeliveries(func(d githubtest.Delivery) bool { return !d.Redelivery })
	var lost []int64
	for i := range 3 {
		lost = append(lost, fake.QueueJob(githubtest.JobSpec{Repo: "acme/app", Org: "acme", Labels: []string{"gpu"}, Name: fmt.Sprint("lost-", i)}))
	}
	ds, err = fake.WaitDeliveries(ctx, 6)
	if err != nil {
		t.Fatal(err)
	}
	lostGUIDs := map[string]int64{}
	for _, d := range ds[3:] {
		lostGUIDs[d.GUID] = d.JobID
		if rc.got(d.GUID) != 0 {
			t.Fatalf("dropped delivery %s reached the receiver", d)
		}
	}

	// The jobs are there for QueuedJobs, webhooks or not.
	evs, err := c.QueuedJobs(ctx, provisioner.Scope{Org: "acme"})
	if err != nil {
		t.Fatal(err)
	}
	if got, want := jobIDs(evs), append([]int64{ok, flaky}, lost...); !slices.Equal(got, want) {
		t.Errorf("QueuedJobs = %v, want %v", got, want)
	}

	failed, err := c.FailedDeliveries(ctx, start)
	if err != nil {
		t.Fatal(err)
	}
	if len(failed) != 3 {
		t.Fatalf("FailedDeliveries = %+v, want the 3 dropped", failed)
	}
	for i, f := range failed {
		d := ds[3+i] // in the order the events happened
		if f.GUID != d.GUID || f.ID != d.ID || f.Event != "workflow_job" || f.Action != "queued" || f.StatusCode != 0 ||
			f.Redelivery || f.DeliveredAt.Before(start) || f.DeliveredAt.After(time.Now().Add(time.Second)) {
			t.Errorf("failed[%d] = %+v, want delivery %+v", i, f, d)
		}
		if err := c.Redeliver(ctx, f.ID); err != nil {
			t.Errorf("Redeliver(%d): %v", f.ID, err)
		}
	}
	if _, err := fake.WaitDeliveries(ctx, 9); err != nil {
		t.Fatal(err)
	}
	for guid, job := range lostGUIDs {
		if n := rc.got(guid); n != 1 {
			t.Errorf("job %d's delivery %s reached the receiver %d times, want once", job, guid, n)
		}
	}
	// All delivered now: nothing left to redeliver, and a second sweep
	// sends nothing twice.
	failed, err = c.FailedDeliveries(ctx, start)
	if err != nil || len(failed) != 0 {
		t.Errorf("after redelivery: %+v, %v", failed, err)
	}
	if n := rec.count("POST /app/installations/11/access_tokens"); n != 1 {
		t.Errorf("%d installation tokens; deliveries use the App JWT", n)
	}

	// An unknown delivery is an error, not a silent success.
	if err := c.Redeliver(ctx, 42); err == nil || !strings.Contains(err.Error(), "no such delivery") {
		t.Errorf("Redeliver(unknown) = %v", err)
	}
}

func TestFailedDeliveriesPagingAndSince(t *testing.T) {
	fake, c, rec := modes[1].setup(t)
	ctx := ctxFor(t)
	rc, url := newReceiver(t)
	rc.answer(503)
	fake.SetWebhook(url, nil)

	for range 130 {
		fake.QueueJob(githubtest.JobSpec{Repo: "acme/app", Org: "acme", Labels: []string{"gpu"}})
	}
	old, err := fake.WaitDeliveries(ctx, 130)
	if err != nil {
		t.Fatal(err)
	}
	// delivered_at has whole seconds: start the second batch in a later
	// second than the first ended.
	since := time.Now().Truncate(time.Second).Add(time.Second)
	time.Sleep(time.Until(since))
	for range 5 {
		fake.QueueJob(githubtest.JobSpec{Repo: "acme/data", Org: "acme", Labels: []string{"gpu"}})
	}
	all, err := fake.WaitDeliveries(ctx, 135)
	if err != nil {
		t.Fatal(err)
	}

	failed, err := c.FailedDeliveries(ctx, time.Time{})
	if err != nil {
		t.Fatal(err)
	}
	if len(failed) != 135 || failed[0].GUID != old[0].GUID || failed[134].GUID != all[134].GUID || failed[0].StatusCode != 503 {
		t.Errorf("FailedDeliveries(zero) = %d, first %+v", len(failed), failed[0])
	}
	if n := rec.count("GET /app/hook/deliveries"); n != 2 {
		t.Errorf("%d list requests, want 2 pages", n)
	}

	recent, err := c.FailedDeliveries(ctx, since)
	if err != nil {
		t.Fatal(err)
	}
	if len(recent) != 5 || recent[0].GUID != all[130].GUID {
		t.Errorf("FailedDeliveries(since) = %+v", recent)
	}
	if n := rec.count("GET /app/hook/deliveries"); n != 3 {
		t.Errorf("paging went on past since: %d requests in all, want 3", n)
	}
}

func TestReconcileErrorsNeverContainSecrets(t *testing.T) {
	key, pemBytes := testAppKey(t)
	fake := githubtest.New(githubtest.Options{
		Tokens:        []string{testToken},
		AppID:         appID,
		AppPublicKey:  &key.PublicKey,
		Installations: map[string]int64{"acme": 11},
	})
	t.Cleanup(fake.Close)
	ctx := ctxFor(t)
	ar := &authRecorder{}
	wrongToken := "ghp_wrongtoken_abcdefghijklmnop"
	var errs []error
	for name, cfg := range map[string]github.Config{
		"right token":    {APIURL: fake.URL(), Token: testToken},
		"wrong token":    {APIURL: fake.URL(), Token: wrongToken},
		"app":            {APIURL: fake.URL(), AppID: appID, AppPrivateKey: pemBytes},
		"unknown app":    {APIURL: fake.URL(), AppID: appID + 1, AppPrivateKey: pemBytes},
		"server is gone": {APIURL: "http://127.0.0.1:1", AppID: appID, AppPrivateKey: pemBytes},
	} {
		cfg.HTTPClient = &http.Client{Transport: ar}
		c, err := github.New(cfg)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		_, err = c.QueuedJobs(ctx, provisioner.Scope{Org: "acme"})
		errs = append(errs, err)
		_, err = c.QueuedJobs(ctx, provisioner.Scope{Repo: "acme/none", InstallationID: 11})
		errs = append(errs, err)
		_, err = c.QueuedJobs(ctx, provisioner.Scope{Org: "stranger"})
		errs = append(errs, err)
		_, err = c.Installations(ctx)
		errs = append(errs, err)
		_, err = c.FailedDeliveries(ctx, time.Time{})
		errs = append(errs, err)
		errs = append(errs, c.Redeliver(ctx, 7))
	}
	ar.mu.Lock()
	secrets := append([]string{testToken, wrongToken, string(pemBytes[30:90])}, ar.creds...)
	ar.mu.Unlock()
	n := 0
	for _, err := range errs {
		if err == nil {
			continue
		}
		n++
		t.Logf("error: %v", err)
		for _, s := range secrets {
			if s != "" && strings.Contains(err.Error(), s) {
				t.Errorf("error %q holds a secret", err)
			}
		}
	}
	if n < 20 {
		t.Errorf("only %d errors to check; the test lost its teeth", n)
	}
	var accepted *gh.AcceptedError
	for _, err := range errs {
		if errors.As(err, &accepted) {
			t.Errorf("a 202 leaked out as an error: %v", err)
		}
	}
}
