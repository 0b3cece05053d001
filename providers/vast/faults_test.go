package vast_test

import (
	"context"
	"errors"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/crabbox/crabbox-runner/providers/vast"
	"github.com/crabbox/crabbox-runner/providers/vast/vasttest"
	"github.com/crabbox/crabbox-runner/provisioner"
)

func TestVanishedOfferIsUnavailable(t *testing.T) {
	for _, status := range []int{404, 410} {
		fake := newFake(t, vasttest.Options{})
		p := newProvider(t, fake)
		ctx := context.Background()
		offers, err := p.Offers(ctx, a100)
		if err != nil {
			t.Fatal(err)
		}
		fake.Vanish(5000201, status)
		_, err = p.Create(ctx, provisioner.CreateRequest{Offer: offers[0], Class: a100, Marker: marker("acme-gpu", "l"), SSHPublicKey: newLeaseKey(t).authorized})
		if !errors.Is(err, provisioner.ErrOfferUnavailable) {
			t.Fatalf("%d: Create = %v, want ErrOfferUnavailable", status, err)
		}
		if ae, ok := vast.IsAPIError(err); !ok || ae.Status != status || !strings.Contains(ae.Code+ae.Msg, "no_such_ask") {
			t.Errorf("%d: the APIError is lost: %v", status, err)
		}
		// The next offer works, and the vanished one is no longer offered.
		inst, err := p.Create(ctx, provisioner.CreateRequest{Offer: offers[1], Class: a100, Marker: marker("acme-gpu", "l"), SSHPublicKey: newLeaseKey(t).authorized})
		if err != nil {
			t.Fatal(err)
		}
		defer p.Destroy(ctx, inst)
		again, _ := p.Offers(ctx, a100)
		for _, o := range again {
			if o.ID == "5000201" || o.ID == "5000202" {
				t.Errorf("%d: offer %s still offered", status, o.ID)
			}
		}
		if n := len(fake.RequestsFor(vasttest.OpCreate)); n != 2 {
			t.Errorf("%d create calls", n)
		}
	}
}

// TestHostsThatFail: every way a Vast host fails to boot ends in a state
// that is not pending or running (Ended) with Vast's message, or (never boots) stays pending for
// the boot timeout to catch.
func TestHostsThatFail(t *testing.T) {
	cases := []struct {
		name     string
		behavior vasttest.Behavior
		status   provisioner.InstanceStatus
		msg      string
	}{
		{"exits", vasttest.Behavior{FailStatus: "exited"}, provisioner.InstanceFailed, "instance exited"},
		{"goes offline", vasttest.Behavior{FailStatus: "offline"}, provisioner.InstanceUnreachable, "instance offline"},
		{"OCI runtime error", vasttest.Behavior{OCIError: true}, provisioner.InstanceFailed, "OCI runtime create failed"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			fake := newFake(t, vasttest.Options{Behavior: func(int, vasttest.Offer, string) vasttest.Behavior { return tc.behavior }})
			p := newProvider(t, fake)
			inst := create(t, p, a100, marker("acme-gpu", "l"), newLeaseKey(t))
			got := waitStatus(t, p, inst.ID, tc.status)
			if !strings.Contains(got.StatusMessage, tc.msg) || got.SSH.Host != "" {
				t.Fatalf("%+v, want message %q", got, tc.msg)
			}
		})
	}

	t.Run("never boots", func(t *testing.T) {
		fake := newFake(t, vasttest.Options{Behavior: func(int, vasttest.Offer, string) vasttest.Behavior { return vasttest.Behavior{NeverBoot: true} }})
		p := newProvider(t, fake)
		inst := create(t, p, a100, marker("acme-gpu", "l"), newLeaseKey(t))
		id, _ := strconv.ParseInt(inst.ID, 10, 64)
		deadline := time.Now().Add(10 * time.Second)
		for {
			if snap, _ := fake.Instance(id); snap.Status == "loading" {
				break
			}
			if time.Now().After(deadline) {
				t.Fatal("the fake never reached loading")
			}
			time.Sleep(5 * time.Millisecond)
		}
		got, err := p.Get(context.Background(), inst.ID)
		if err != nil || got.Status != provisioner.InstancePending || !strings.Contains(got.StatusMessage, "loading") {
			t.Fatalf("%+v, %v", got, err)
		}
	})

	t.Run("running host goes offline", func(t *testing.T) {
		fake := newFake(t, vasttest.Options{})
		p := newProvider(t, fake)
		inst := create(t, p, a100, marker("acme-gpu", "l"), newLeaseKey(t))
		waitStatus(t, p, inst.ID, provisioner.InstanceRunning)
		id, _ := strconv.ParseInt(inst.ID, 10, 64)
		fake.SetStatus(id, "offline", "host disconnected")
		if got := waitStatus(t, p, inst.ID, provisioner.InstanceUnreachable); !strings.Contains(got.StatusMessage, "host disconnected") {
			t.Fatalf("%+v", got)
		}
	})

	t.Run("broken GPU", func(t *testing.T) {
		fake := newFake(t, vasttest.Options{Behavior: func(int, vasttest.Offer, string) vasttest.Behavior { return vasttest.Behavior{BrokenGPU: true} }})
		p := newProvider(t, fake)
		key := newLeaseKey(t)
		inst := create(t, p, a100, marker("acme-gpu", "l"), key)
		got := waitStatus(t, p, inst.ID, provisioner.InstanceRunning)
		out, err := sshRun(t, got.SSH, key, "nvidia-smi")
		if err == nil || !strings.Contains(out, "couldn't communicate with the NVIDIA driver") {
			t.Fatalf("nvidia-smi on a broken host: %v %s", err, out)
		}
	})
}

// TestBurstsAreRetried: 429 in each of Vast's body styles and 5xx on every
// call; each call still succeeds.
func TestBurstsAreRetried(t *testing.T) {
	fake := newFake(t, vasttest.Options{})
	// Get asks by id here (no shared listing), so show gets its faults.
	p := newProvider(t, fake, func(c *vast.Config) { c.StatusTTL = -1 })
	ctx := context.Background()
	burst := []vasttest.Fault{vasttest.TooFrequent, vasttest.TooFrequentJSON, vasttest.RateLimited}
	for _, op := range []vasttest.Op{vasttest.OpSearch, vasttest.OpCreate, vasttest.OpAttach, vasttest.OpShow, vasttest.OpList, vasttest.OpManage, vasttest.OpDestroy} {
		fake.FailNext(op, burst...)
	}
	for _, op := range []vasttest.Op{vasttest.OpSearch, vasttest.OpShow, vasttest.OpList, vasttest.OpDestroy} {
		fake.FailNext(op, vasttest.InternalError, vasttest.BadGateway)
	}
	m := marker("acme-gpu", "burst")
	inst := create(t, p, a100, m, newLeaseKey(t))
	if _, err := p.Get(ctx, inst.ID); err != nil {
		t.Fatalf("Get: %v", err)
	}
	if owned, err := p.ListOwned(ctx, "acme-gpu"); err != nil || len(owned) != 1 {
		t.Fatalf("ListOwned: %d, %v", len(owned), err)
	}
	n, _ := strconv.ParseInt(inst.ID, 10, 64)
	if err := p.Client().SetLabel(ctx, n, m.String()); err != nil {
		t.Fatalf("SetLabel: %v", err)
	}
	if err := p.Destroy(ctx, inst); err != nil {
		t.Fatalf("Destroy: %v", err)
	}
	if live := fake.Live(); len(live) != 0 {
		t.Fatalf("live %+v", live)
	}
	for op, want := range map[vasttest.Op]int{vasttest.OpSearch: 6, vasttest.OpCreate: 4, vasttest.OpShow: 6, vasttest.OpDestroy: 6} {
		if got := len(fake.RequestsFor(op)); got != want {
			t.Errorf("%s: %d requests, want %d", op, got, want)
		}
	}
}

// TestRetriesRunOut: 429s are waited out apart from the failure retries,
// but not for ever: after 12 in a row the call gives up; 5xx use the
// failure retries (1 + 5).
func TestRetriesRunOut(t *testing.T) {
	fake := newFake(t, vasttest.Options{})
	p := newProvider(t, fake)
	for range 20 {
		fake.FailNext(vasttest.OpSearch, vasttest.TooFrequent)
	}
	_, err := p.Offers(context.Background(), a100)
	ae, ok := vast.IsAPIError(err)
	if !ok || ae.Status != 429 || ae.Msg != "API requests too frequent endpoint threshold=4.5" {
		t.Fatalf("err = %v", err)
	}
	if n := len(fake.RequestsFor(vasttest.OpSearch)); n != 13 {
		t.Fatalf("%d attempts, want 1 + 12 waits on 429", n)
	}

	fake2 := newFake(t, vasttest.Options{})
	p2 := newProvider(t, fake2)
	for range 10 {
		fake2.FailNext(vasttest.OpSearch, vasttest.InternalError)
	}
	if _, err := p2.Offers(context.Background(), a100); err == nil {
		t.Fatal("no error after the retries ran out")
	}
	if n := len(fake2.RequestsFor(vasttest.OpSearch)); n != 6 {
		t.Fatalf("%d attempts, want 1 + 5 retries", n)
	}
}

// TestCreateAnswerLost: a create that fails with 5xx is not retried (a
// retry could rent a second host); the instance it may have made is
// looked up by the lease's label and adopted.
func TestCreateAnswerLost(t *testing.T) {
	t.Run("it was created", func(t *testing.T) {
		fake := newFake(t, vasttest.Options{})
		p := newProvider(t, fake)
		f := vasttest.InternalError
		f.Apply = true
		fake.FailNext(vasttest.OpCreate, f)
		key := newLeaseKey(t)
		inst := create(t, p, a100, marker("acme-gpu", "lost"), key)
		if n := len(fake.RequestsFor(vasttest.OpCreate)); n != 1 {
			t.Fatalf("%d create calls; a retry would rent twice", n)
		}
		live := fake.Live()
		if len(live) != 1 || strconv.FormatInt(live[0].ID, 10) != inst.ID {
			t.Fatalf("live %+v, adopted %s", live, inst.ID)
		}
		if got := waitStatus(t, p, inst.ID, provisioner.InstanceRunning); got.Marker.LeaseID != "lost" {
			t.Fatalf("%+v", got)
		}
	})
	t.Run("it was not", func(t *testing.T) {
		fake := newFake(t, vasttest.Options{})
		p := newProvider(t, fake)
		fake.FailNext(vasttest.OpCreate, vasttest.InternalError)
		offers, _ := p.Offers(context.Background(), a100)
		_, err := p.Create(context.Background(), provisioner.CreateRequest{Offer: offers[0], Class: a100, Marker: marker("acme-gpu", "l"), SSHPublicKey: newLeaseKey(t).authorized})
		if !errors.Is(err, provisioner.ErrCreateUncertain) || errors.Is(err, provisioner.ErrOfferUnavailable) || len(fake.Live()) != 0 {
			t.Fatalf("err = %v, live %d", err, len(fake.Live()))
		}
		// The listing may lag the create: looked up several times over
		// the lookup window before the outcome is called uncertain.
		if n := len(fake.RequestsFor(vasttest.OpList)); n != 4 {
			t.Fatalf("%d list calls, want 4 lookups by label", n)
		}
	})
}

// TestAttachRefusedBeforeRunning: Vast may refuse a key while the
// container is not running yet; the host is kept (not destroyed), and the
// key is attached once it runs: until then Get does not call it running.
func TestAttachRefusedBeforeRunning(t *testing.T) {
	fake := newFake(t, vasttest.Options{})
	p := newProvider(t, fake)
	fake.FailNext(vasttest.OpAttach, vasttest.Fault{Status: 400, Body: `{"success": false, "error": "invalid_args", "msg": "instance is not running"}`, ContentType: "application/json"})
	key := newLeaseKey(t)
	inst := create(t, p, a100, marker("acme-gpu", "early"), key)
	if live := fake.Live(); len(live) != 1 || len(live[0].Keys) != 0 {
		t.Fatalf("live %+v", live)
	}
	running := waitStatus(t, p, inst.ID, provisioner.InstanceRunning)
	if live := fake.Live(); len(live) != 1 || len(live[0].Keys) != 1 {
		t.Fatalf("key not attached once running: %+v", live)
	}
	if out, err := sshRun(t, running.SSH, key, "echo in"); err != nil || !strings.Contains(out, "in") {
		t.Fatalf("ssh: %v %s", err, out)
	}
}

// TestRateLimiterSharedByLeases: many leases polling at once through one
// provider stay under the server's per-endpoint interval, so Vast never
// answers 429.
func TestRateLimiterSharedByLeases(t *testing.T) {
	fake := newFake(t, vasttest.Options{MinInterval: 10 * time.Millisecond})
	// A wide margin: a request delayed on its way by a loaded machine must
	// not arrive within the server's interval of the next one.
	// Get asks by id (no shared listing): the test is about the pacing.
	p := newProvider(t, fake, func(c *vast.Config) { c.MinRequestInterval = 200 * time.Millisecond; c.StatusTTL = -1 })
	inst := create(t, p, a100, marker("acme-gpu", "rl"), newLeaseKey(t))
	var wg sync.WaitGroup
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, err := p.Get(context.Background(), inst.ID); err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	for _, r := range fake.Requests() {
		if r.Status == 429 {
			t.Fatalf("%s %s answered 429 despite the limiter", r.Method, r.Path)
		}
	}
	if n := len(fake.RequestsFor(vasttest.OpShow)); n < 8 {
		t.Fatalf("%d show calls", n)
	}

	// Without the limiter the same burst meets 429s, which the retries
	// absorb.
	q := newProvider(t, fake, func(c *vast.Config) {
		c.Retry = vast.Retry{MaxRetries: 20, Initial: 10 * time.Millisecond, Max: 40 * time.Millisecond}
		c.StatusTTL = -1
	})
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, err := q.Get(context.Background(), inst.ID); err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	saw429 := false
	for _, r := range fake.Requests() {
		saw429 = saw429 || r.Status == 429
	}
	if !saw429 {
		t.Fatal("no 429 without the limiter: the fake's threshold proves nothing")
	}
}

func TestWrongKey(t *testing.T) {
	fake := newFake(t, vasttest.Options{})
	p := newProvider(t, fake, func(c *vast.Config) { c.APIKey = "not-the-key-at-all" })
	_, err := p.Offers(context.Background(), a100)
	if ae, ok := vast.IsAPIError(err); !ok || ae.Status != 404 || ae.Msg != "Invalid user key" {
		t.Errorf("search with a wrong key: %v", err)
	}
	_, err = p.Get(context.Background(), "20000001")
	if ae, ok := vast.IsAPIError(err); !ok || ae.Status != 401 || ae.Code != "auth_error" {
		t.Errorf("show with a wrong key: %v", err)
	}
	for _, r := range fake.Requests() {
		if r.Authorized {
			t.Errorf("%s authorized with the wrong key", r.Path)
		}
	}
}

// TestAdoptAfterACrash: the process died between the create call and the
// key attach; after the restart the instance is found by its marker and
// Adopt attaches the new process's key, which then logs in.
func TestAdoptAfterACrash(t *testing.T) {
	fake := newFake(t, vasttest.Options{})
	p := newProvider(t, fake)
	ctx := context.Background()
	m := marker("acme-gpu", "crashed")
	offers, err := p.Offers(ctx, a100)
	if err != nil {
		t.Fatal(err)
	}
	offerID, _ := strconv.ParseInt(offers[0].ID, 10, 64)
	// What the crashed Create had done: the create call alone.
	if _, err := p.Client().CreateInstance(ctx, offerID, vast.CreateParams{Image: vast.DefaultImage, Disk: 40, Label: m.String(), RunType: vast.RunTypeSSHDirect}); err != nil {
		t.Fatal(err)
	}
	restarted := newProvider(t, fake)
	owned, err := restarted.ListOwned(ctx, "acme-gpu")
	if err != nil || len(owned) != 1 || owned[0].Marker.LeaseID != "crashed" {
		t.Fatalf("ListOwned = %+v, %v", owned, err)
	}
	t.Cleanup(func() { restarted.Destroy(context.Background(), owned[0]) })
	key := newLeaseKey(t)
	if err := restarted.Adopt(ctx, owned[0], provisioner.CreateRequest{Offer: offers[0], Class: a100, Marker: m, SSHPublicKey: key.authorized}); err != nil {
		t.Fatal(err)
	}
	running := waitStatus(t, restarted, owned[0].ID, provisioner.InstanceRunning)
	if out, err := sshRun(t, running.SSH, key, "echo adopted"); err != nil || !strings.Contains(out, "adopted") {
		t.Fatalf("ssh after adopt: %v %s", err, out)
	}
	if err := restarted.Adopt(ctx, &provisioner.Instance{ID: "999999999"}, provisioner.CreateRequest{SSHPublicKey: key.authorized}); !errors.Is(err, provisioner.ErrNotFound) {
		t.Errorf("Adopt(gone) = %v, want ErrNotFound", err)
	}
}
