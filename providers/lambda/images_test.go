package lambda_test

import (
	"context"
	"encoding/json"
	"errors"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/crabbox/crabbox-runner/providers/lambda"
	"github.com/crabbox/crabbox-runner/providers/lambda/lambdatest"
	"github.com/crabbox/crabbox-runner/provisioner"
)

var gh200 = provisioner.Class{Name: "gh200", Labels: []string{"self-hosted", "gh200"},
	GPU: provisioner.GPURequirement{Name: "GH200", Count: 1}, Providers: []string{"lambda"}}

// launchedImage is the image object of the last launch.
func launchedImage(t *testing.T, fake *lambdatest.Server) string {
	t.Helper()
	var body struct {
		Image json.RawMessage `json:"image"`
	}
	for _, r := range fake.Requests() {
		if r.Path == "/api/v1/instance-operations/launch" {
			json.Unmarshal(r.Body, &body)
		}
	}
	return string(body.Image)
}

func imageIDOf(t *testing.T, p *lambda.Provider, family, arch, region string) string {
	t.Helper()
	images, err := p.Client().Images(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	var best lambda.Image
	for _, im := range images {
		if im.Family == family && im.Region.Name == region && im.Architecture == arch && (best.ID == "" || im.Version > best.Version) {
			best = im
		}
	}
	if best.ID == "" {
		t.Fatalf("no %s %s in %s", family, arch, region)
	}
	return best.ID
}

// A GH200 offer runs the arm64 image its region has (Lambda Stack 24.04 in
// us-east-3), and its launch sends that image's id.
func TestGH200GetsTheRegionsArm64Image(t *testing.T) {
	fake := lambdatest.New(t, lambdatest.Options{})
	p := newProvider(t, fake, nil)
	ctx := context.Background()
	offers, err := p.Offers(ctx, gh200)
	if err != nil || len(offers) != 1 || offers[0].ID != "gpu_1x_gh200@us-east-3" || offers[0].Image != "lambda-stack-24-04@arm64" {
		t.Fatalf("offers %+v, %v", offers, err)
	}
	inst, err := p.Create(ctx, createRequest(t, offers[0], gh200, "acme-gpu", "g1"))
	if err != nil {
		t.Fatal(err)
	}
	if got, want := launchedImage(t, fake), `{"id":"`+imageIDOf(t, p, "lambda-stack-24-04", lambda.ArchARM64, "us-east-3")+`"}`; got != want {
		t.Fatalf("launched image %s, want %s", got, want)
	}
	// The class's own family, looked up for arm64; one the region lacks
	// leaves no offer, so no launch slot is spent on a certain 404.
	class := gh200
	class.LambdaImage = "lambda-stack-22-04"
	if offers, err := p.Offers(ctx, class); err != nil || len(offers) != 1 || offers[0].Image != "lambda-stack-22-04@arm64" {
		t.Fatalf("lambda-stack-22-04 offers %+v, %v", offers, err)
	}
	class.LambdaImage = "gpu-base-24-04"
	if offers, err := p.Offers(ctx, class); err != nil || len(offers) != 0 {
		t.Fatalf("gpu-base-24-04 (no arm64 build) offers %+v, %v", offers, err)
	}
	waitFor(t, "the host booted", 30*time.Second, func() bool {
		i, err := p.Get(ctx, inst.ID)
		return err == nil && i.Status == provisioner.InstanceRunning
	})
	if err := p.Destroy(ctx, inst); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "no key left", 30*time.Second, func() bool { return len(fake.Keys()) == 0 && len(fake.Live()) == 0 })
	if v := fake.Violations(); len(v) != 0 {
		t.Fatalf("violations %q", v)
	}
}

// Regions without the class's image are not offered; a pinned id pins its
// region; a container image is refused with a clear error.
func TestOffersOnlyWhereTheImageIs(t *testing.T) {
	fake := lambdatest.New(t, lambdatest.Options{})
	p := newProvider(t, fake, nil)
	ctx := context.Background()
	regions := func(class provisioner.Class) []string {
		t.Helper()
		offers, err := p.Offers(ctx, class)
		if err != nil {
			t.Fatal(err)
		}
		var out []string
		for _, o := range offers {
			out = append(out, o.Region+" "+o.Image)
		}
		return out
	}
	if got := regions(a100); !slices.Equal(got, []string{"us-east-1 gpu-base-24-04@x86_64", "us-south-1 gpu-base-24-04@x86_64", "us-west-2 gpu-base-24-04@x86_64"}) {
		t.Errorf("default image: %v", got)
	}
	class := a100
	class.LambdaImage = "family:lambda-stack-legacy-22-04" // us-south-1 and -2 only
	if got := regions(class); !slices.Equal(got, []string{"us-south-1 lambda-stack-legacy-22-04@x86_64"}) {
		t.Errorf("legacy image: %v", got)
	}
	id := imageIDOf(t, p, "gpu-base-24-04", lambda.ArchX86_64, "us-west-2")
	class.LambdaImage = "id:" + id
	if got := regions(class); !slices.Equal(got, []string{"us-west-2 " + id}) {
		t.Errorf("pinned id: %v", got)
	}
	class.LambdaImage = "nvidia/cuda:12.4.1-devel-ubuntu22.04"
	if _, err := p.Offers(ctx, class); err == nil || !strings.Contains(err.Error(), "container image") {
		t.Errorf("a container image as lambda_image: %v", err)
	}
	// Vast's container image is never read by Lambda.
	class = a100
	class.Image = "nvidia/cuda:12.4.1-devel-ubuntu22.04"
	if got := regions(class); len(got) != 3 {
		t.Errorf("with a Vast image: %v", got)
	}
}

// GET /images is asked once per ten minutes, and again at once when a
// launch is answered 404: then the region that lost the image is left out
// at the next Offers, without a blind cooldown.
func TestA404LaunchRefreshesTheImages(t *testing.T) {
	fake := lambdatest.New(t, lambdatest.Options{})
	p := newProvider(t, fake, nil)
	ctx := context.Background()
	count := func() int {
		n := 0
		for _, r := range fake.Requests() {
			if r.Path == "/api/v1/images" {
				n++
			}
		}
		return n
	}
	offers, err := p.Offers(ctx, a100)
	if err != nil || len(offers) != 3 || offers[0].Region != "us-east-1" {
		t.Fatalf("offers %+v, %v", offers, err)
	}
	if _, err := p.Offers(ctx, a100); err != nil || count() != 1 {
		t.Fatalf("%d GET /images for two Offers, want 1 (%v)", count(), err)
	}
	// Lambda withdraws GPU Base from us-east-1.
	fake.SetImages(slices.DeleteFunc(lambdatest.DefaultImages(), func(im lambdatest.Image) bool {
		return im.Region == "us-east-1" && im.Family == "gpu-base-24-04"
	}))
	_, err = p.Create(ctx, createRequest(t, offers[0], a100, "acme-gpu", "l1"))
	if !errors.Is(err, provisioner.ErrOfferUnavailable) || !lambda.IsCode(err, lambda.CodeNotFound) {
		t.Fatalf("Create with a withdrawn image = %v", err)
	}
	if count() != 2 {
		t.Fatalf("%d GET /images after the 404, want 2", count())
	}
	again, err := p.Offers(ctx, a100)
	if err != nil || len(again) != 2 || slices.ContainsFunc(again, func(o provisioner.Offer) bool { return o.Region == "us-east-1" }) {
		t.Fatalf("offers after the 404: %+v, %v", again, err)
	}
	waitFor(t, "the failed launch's key deleted", 30*time.Second, func() bool { return len(fake.Keys()) == 0 })
}

// A host still booting cannot be terminated yet: Destroy says so and is
// retried (by the provisioner); once the VM has launched it goes, and its
// key is deleted once Lambda no longer lists the instance.
func TestDestroyWhileBootingIsRetried(t *testing.T) {
	fake := lambdatest.New(t, lambdatest.Options{BootDelay: 1500 * time.Millisecond})
	p := newProvider(t, fake, nil)
	ctx := context.Background()
	offers, _ := p.Offers(ctx, a100)
	inst, err := p.Create(ctx, createRequest(t, offers[0], a100, "acme-gpu", "b1"))
	if err != nil {
		t.Fatal(err)
	}
	err = p.Destroy(ctx, inst)
	if err == nil || !strings.Contains(err.Error(), "still booting") || !strings.Contains(err.Error(), "vm-has-not-launched") {
		t.Fatalf("Destroy while booting = %v", err)
	}
	if live := fake.Live(); len(live) != 1 {
		t.Fatalf("live %v", live)
	}
	waitFor(t, "Destroy succeeds once the VM launched", 30*time.Second, func() bool { return p.Destroy(ctx, inst) == nil })
	if err := p.Destroy(ctx, inst); err != nil {
		t.Fatalf("Destroy of a terminating or gone instance: %v", err)
	}
	waitFor(t, "the key deleted after the instance went", 30*time.Second, func() bool {
		return len(fake.Keys()) == 0 && len(fake.Live()) == 0 && len(p.PendingKeys()) == 0
	})
	// Every deletion came after the instance was gone: none was refused.
	for _, r := range fake.Requests() {
		if strings.HasPrefix(r.Path, "/api/v1/ssh-keys/") && r.Status != 200 {
			t.Errorf("DELETE %s answered %d", r.Path, r.Status)
		}
	}
}

// Every HTTP attempt is reported with its route template and status.
func TestOnRequestCountsAttempts(t *testing.T) {
	fake := lambdatest.New(t, lambdatest.Options{})
	var mu sync.Mutex
	seen := map[string]int{}
	p := newProvider(t, fake, nil, func(o *lambda.Options) {
		o.OnRequest = func(endpoint string, status int) {
			mu.Lock()
			seen[endpoint+" "+strconv.Itoa(status)]++
			mu.Unlock()
		}
	})
	ctx := context.Background()
	fake.FailNext(1, lambdatest.Fault{Status: 429, Path: "/instance-types"})
	offers, err := p.Offers(ctx, a100)
	if err != nil {
		t.Fatal(err)
	}
	inst, err := p.Create(ctx, createRequest(t, offers[0], a100, "acme-gpu", "c1"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := p.Client().Instance(ctx, inst.ID); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	for _, want := range []string{
		"GET /api/v1/instance-types 429", "GET /api/v1/instance-types 200", "GET /api/v1/images 200",
		"POST /api/v1/ssh-keys 200", "POST /api/v1/instance-operations/launch 200", "GET /api/v1/instances/{id} 200",
	} {
		if seen[want] != 1 {
			t.Errorf("%q counted %d times; all: %v", want, seen[want], seen)
		}
	}
	p.CountRequests(nil)
}
