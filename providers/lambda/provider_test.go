package lambda_test

import (
	"context"
	"encoding/json"
	"errors"
	"maps"
	"net"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/crabbox/crabbox-runner/bootstrap"
	"github.com/crabbox/crabbox-runner/providers/lambda"
	"github.com/crabbox/crabbox-runner/providers/lambda/lambdatest"
	"github.com/crabbox/crabbox-runner/providers/providertest"
	"github.com/crabbox/crabbox-runner/provisioner"
)

// The contract every provider keeps, on the fake Lambda with real sshd
// hosts.
func TestContract(t *testing.T) {
	providertest.Run(t, func(t *testing.T) provisioner.Provider {
		return newProvider(t, lambdatest.New(t, lambdatest.Options{}), nil)
	}, a100)
}

func createRequest(t *testing.T, offer provisioner.Offer, class provisioner.Class, deployment, lease string) provisioner.CreateRequest {
	pub, _ := keyPair(t, "crabbox")
	return provisioner.CreateRequest{
		Offer: offer, Class: class,
		Marker:       provisioner.Marker{Deployment: deployment, LeaseID: lease, Expires: time.Unix(1900000000, 0).UTC()},
		SSHPublicKey: pub,
		UserData:     "#cloud-config\nssh_authorized_keys:\n  - " + pub + "\n",
	}
}

func TestOffers(t *testing.T) {
	fake := lambdatest.New(t, lambdatest.Options{})
	p := newProvider(t, fake, nil, func(o *lambda.Options) { o.OffersCacheTTL = time.Hour })
	ctx := context.Background()
	offers, err := p.Offers(ctx, a100)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, o := range offers {
		got = append(got, o.ID)
		if o.Provider != "lambda" || o.GPU != "A100 SXM4" || o.GPUCount != 1 || o.GPUMemoryGB != 40 || o.PricePerHour != 1.29 || o.Reliability != 1 {
			t.Errorf("offer %+v", o)
		}
		if !strings.HasSuffix(o.ID, "@"+o.Region) {
			t.Errorf("offer %s names another region than %s", o.ID, o.Region)
		}
	}
	want := []string{"gpu_1x_a100_sxm4@us-east-1", "gpu_1x_a100_sxm4@us-south-1", "gpu_1x_a100_sxm4@us-west-2"}
	if !slices.Equal(got, want) {
		t.Fatalf("offers %v, want %v", got, want)
	}

	cases := []struct {
		name  string
		class provisioner.Class
		want  []string
	}{
		{"region filter", provisioner.Class{GPU: a100.GPU, Region: "us-south"}, []string{"gpu_1x_a100_sxm4@us-south-1"}},
		{"price cap", provisioner.Class{GPU: a100.GPU, MaxPricePerHour: 1}, nil},
		{"no capacity anywhere", provisioner.Class{GPU: provisioner.GPURequirement{Name: "H100", Count: 8}}, nil},
		{"any 1-GPU card with 24 GB, cheapest first", provisioner.Class{GPU: provisioner.GPURequirement{Count: 1, MinMemoryGB: 24}},
			[]string{"gpu_1x_a10@us-east-1", "gpu_1x_a10@us-west-1", "gpu_1x_a6000@us-south-1", "gpu_1x_a100_sxm4@us-east-1",
				"gpu_1x_a100_sxm4@us-south-1", "gpu_1x_a100_sxm4@us-west-2", "gpu_1x_gh200@us-east-3", "gpu_1x_h100_pcie@us-south-2", "gpu_1x_h100_pcie@us-west-3",
				"gpu_1x_h100_sxm5@us-south-2", "gpu_1x_h100_sxm5@us-south-3"}},
		{"RTX A6000 is Lambda's A6000", provisioner.Class{GPU: provisioner.GPURequirement{Name: "RTX A6000", Count: 1, MinMemoryGB: 48}},
			[]string{"gpu_1x_a6000@us-south-1"}},
	}
	for _, tc := range cases {
		offers, err := p.Offers(ctx, tc.class)
		if err != nil {
			t.Fatal(err)
		}
		var got []string
		for _, o := range offers {
			got = append(got, o.ID)
		}
		if !slices.Equal(got, tc.want) {
			t.Errorf("%s: %v, want %v", tc.name, got, tc.want)
		}
	}
	// Five Offers calls, one GET /instance-types: the cache saved four
	// seconds of the shared rate limit.
	n := 0
	for _, r := range fake.Requests() {
		if r.Path == "/api/v1/instance-types" {
			n++
		}
	}
	if n != 1 {
		t.Fatalf("%d GET /instance-types for five Offers calls, want 1", n)
	}
}

// The launch body is exactly what the schema declares, with every value
// where Lambda wants it.
func TestCreateSendsTheSchemasLaunchBody(t *testing.T) {
	fake := lambdatest.New(t, lambdatest.Options{
		FirewallRulesets: map[string]string{"c4d291f47f9d436fa39f58493ce3b50d": "us-east-1"},
		FileSystems:      map[string]string{"datasets": "us-east-1"},
	})
	p := newProvider(t, fake, nil)
	ctx := context.Background()
	class := a100
	class.Region = "us-east-1"
	class.FirewallRulesets = []string{"c4d291f47f9d436fa39f58493ce3b50d"}
	class.FileSystems = []string{"datasets"}
	offers, err := p.Offers(ctx, class)
	if err != nil || len(offers) != 1 {
		t.Fatalf("offers %v %v", offers, err)
	}
	req := createRequest(t, offers[0], class, "acme-gpu", "lq7k2m9x4c8p")
	inst, err := p.Create(ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Destroy(context.Background(), inst) })
	if inst.Status != provisioner.InstancePending || inst.Marker != req.Marker || inst.Region != "us-east-1" || inst.PricePerHour != 1.29 {
		t.Fatalf("instance %+v", inst)
	}

	var body map[string]json.RawMessage
	for _, r := range fake.Requests() {
		if r.Path == "/api/v1/instance-operations/launch" {
			json.Unmarshal(r.Body, &body)
		}
	}
	keys := slices.Sorted(maps.Keys(body))
	want := []string{"file_system_names", "firewall_rulesets", "hostname", "image", "instance_type_name", "name", "region_name", "ssh_key_names", "tags", "user_data"}
	if !slices.Equal(keys, want) {
		t.Fatalf("launch fields %v, want %v", keys, want)
	}
	for field, want := range map[string]string{
		"region_name":        `"us-east-1"`,
		"instance_type_name": `"gpu_1x_a100_sxm4"`,
		"ssh_key_names":      `["crabbox-acme-gpu-lq7k2m9x4c8p"]`,
		"name":               `"crabbox:acme-gpu:lq7k2m9x4c8p:1900000000"`,
		"hostname":           `"crabbox-lq7k2m9x4c8p"`,
		"image":              `{"id":"` + imageID(t, p, "gpu-base-24-04", "us-east-1") + `"}`,
		"firewall_rulesets":  `[{"id":"c4d291f47f9d436fa39f58493ce3b50d"}]`,
		"file_system_names":  `["datasets"]`,
		"tags": `[{"key":"crabbox-deployment","value":"acme-gpu"},{"key":"crabbox-lease","value":"lq7k2m9x4c8p"},` +
			`{"key":"crabbox-expires","value":"2030-03-17T17:46:40Z"},{"key":"crabbox-class","value":"a100"}]`,
	} {
		if got := string(body[field]); got != want {
			t.Errorf("%s = %s, want %s", field, got, want)
		}
	}
	var ud string
	json.Unmarshal(body["user_data"], &ud)
	if ud != req.UserData {
		t.Errorf("user_data = %q, want the request's", ud)
	}
	if v := fake.Violations(); len(v) != 0 {
		t.Fatalf("violations: %q", v)
	}
}

// Insufficient capacity in a region that instance-types still lists is
// ErrOfferUnavailable; the key is deleted again, the offer is left out for
// a while, and the next region works.
func TestCreateWithoutCapacity(t *testing.T) {
	fake := lambdatest.New(t, lambdatest.Options{})
	fake.NoCapacity("gpu_1x_a100_sxm4", "us-east-1")
	p := newProvider(t, fake, nil)
	ctx := context.Background()
	offers, err := p.Offers(ctx, a100)
	if err != nil || len(offers) != 3 || offers[0].Region != "us-east-1" {
		t.Fatalf("offers %v %v", offers, err)
	}
	_, err = p.Create(ctx, createRequest(t, offers[0], a100, "acme-gpu", "l1"))
	if !errors.Is(err, provisioner.ErrOfferUnavailable) || !lambda.IsCode(err, lambda.CodeInsufficientCapacity) {
		t.Fatalf("Create in a full region = %v, want ErrOfferUnavailable wrapping insufficient-capacity", err)
	}
	if keys := fake.Keys(); len(keys) != 0 {
		t.Fatalf("the failed launch left keys %v", keys)
	}
	again, err := p.Offers(ctx, a100)
	if err != nil || len(again) != 2 || again[0].Region == "us-east-1" {
		t.Fatalf("offers after the capacity error: %v %v", again, err)
	}
	inst, err := p.Create(ctx, createRequest(t, again[0], a100, "acme-gpu", "l1"))
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Destroy(ctx, inst); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "no key left once the instance is gone", 30*time.Second, func() bool { return len(fake.Keys()) == 0 })
}

// Lambda's states as the provisioner sees them.
func TestStatusMapping(t *testing.T) {
	fake := lambdatest.New(t, lambdatest.Options{Behavior: func(seq int, _ lambdatest.LaunchRequest) lambdatest.Behavior {
		return []lambdatest.Behavior{{}, {StuckBooting: true}, {Unhealthy: true}, {Preempted: true}, {}}[seq]
	}})
	p := newProvider(t, fake, nil)
	ctx := context.Background()
	offers, _ := p.Offers(ctx, a100)
	var ids []string
	for i := range 4 {
		inst, err := p.Create(ctx, createRequest(t, offers[0], a100, "acme-gpu", "l"+strconv.Itoa(i)))
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, inst.ID)
	}
	get := func(id string) *provisioner.Instance {
		inst, err := p.Get(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		return inst
	}
	waitFor(t, "instances settled", 30*time.Second, func() bool {
		return get(ids[1]).Status == provisioner.InstanceFailed && get(ids[2]).Status == provisioner.InstancePreempted &&
			get(ids[3]).Status == provisioner.InstanceRunning
	})
	if inst := get(ids[0]); inst.Status != provisioner.InstancePending || inst.SSH.Host != "" {
		t.Errorf("booting: %+v", inst)
	}
	for i, want := range []string{"unhealthy", "preempted"} {
		if inst := get(ids[i+1]); !strings.Contains(inst.StatusMessage, want) {
			t.Errorf("%s: message %q", want, inst.StatusMessage)
		}
	}
	run := get(ids[3])
	host, port := fake.SSHAddress(run.SSH.Host) // the endpoint is already mapped
	if run.SSH.Host != "127.0.0.1" || run.SSH.Port == 22 || run.SSH.User != lambdatest.CurrentUser() || host != "127.0.0.1" || port != 22 {
		t.Errorf("running: %+v", run.SSH)
	}
	if run.Marker.LeaseID != "l3" || run.GPU != "A100 SXM4" || run.PricePerHour != 1.29 || run.Region != "us-east-1" {
		t.Errorf("running: %+v", run)
	}
	if err := fake.SetStatus(ids[3], "preempted"); err != nil {
		t.Fatal(err)
	}
	if inst := get(ids[3]); inst.Status != provisioner.InstancePreempted {
		t.Errorf("preempted after running: %+v", inst)
	}
	// Terminated by Lambda (or a person), not by us: stopped by provider.
	if err := fake.SetStatus(ids[3], "terminated"); err != nil {
		t.Fatal(err)
	}
	if inst := get(ids[3]); inst.Status != provisioner.InstanceStopped || !strings.Contains(inst.StatusMessage, "terminated") {
		t.Errorf("terminated after running: %+v", inst)
	}
	if _, err := p.Get(ctx, "ffffffffffffffffffffffffffffffff"); !errors.Is(err, provisioner.ErrNotFound) {
		t.Errorf("Get(unknown) = %v", err)
	}
	for _, id := range ids {
		if err := p.Destroy(ctx, &provisioner.Instance{ID: id}); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, "every host stopped", 30*time.Second, func() bool { return len(fake.Live()) == 0 })
}

// Ownership: only instances with the deployment's marker are listed, keys
// of other deployments and of people are never deleted.
func TestListOwnedAndDestroy(t *testing.T) {
	fake := lambdatest.New(t, lambdatest.Options{})
	p := newProvider(t, fake, nil)
	ctx := context.Background()
	offers, _ := p.Offers(ctx, a100)
	mine, err := p.Create(ctx, createRequest(t, offers[0], a100, "acme-gpu", "l1"))
	if err != nil {
		t.Fatal(err)
	}
	theirs, err := p.Create(ctx, createRequest(t, offers[0], a100, "other", "l2"))
	if err != nil {
		t.Fatal(err)
	}
	// A person's own instance, with a key of theirs, in the same account.
	c := p.Client()
	alice, _ := keyPair(t, "alice")
	if _, err := c.AddSSHKey(ctx, "alice", alice); err != nil {
		t.Fatal(err)
	}
	notebook, err := c.Launch(ctx, lambda.LaunchRequest{RegionName: "us-east-1", InstanceTypeName: "gpu_1x_a10", SSHKeyNames: []string{"alice"}, Name: "notebook"})
	if err != nil {
		t.Fatal(err)
	}

	owned, err := p.ListOwned(ctx, "acme-gpu")
	if err != nil || len(owned) != 1 || owned[0].ID != mine.ID || owned[0].Marker.LeaseID != "l1" {
		t.Fatalf("ListOwned(acme-gpu) = %+v, %v", owned, err)
	}
	if owned, err := p.ListOwned(ctx, ""); err != nil || len(owned) != 0 {
		t.Fatalf("ListOwned(\"\") = %+v, %v", owned, err)
	}

	if err := p.Destroy(ctx, mine); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "my key deleted, no other", 30*time.Second, func() bool {
		return slices.Equal(fake.Keys(), []string{"crabbox-other-l2", "alice"})
	})
	// Without a marker (an instance known only by id) the key is found
	// through the instance's own name and key names.
	if err := p.Destroy(ctx, &provisioner.Instance{ID: theirs.ID}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "their key deleted, not alice's", 30*time.Second, func() bool { return slices.Equal(fake.Keys(), []string{"alice"}) })
	waitFor(t, "hosts stopped", 30*time.Second, func() bool { return slices.Equal(fake.Live(), []string{notebook}) })
	if owned, err := p.ListOwned(ctx, "acme-gpu"); err != nil || len(owned) != 0 {
		t.Fatalf("ListOwned after destroy = %+v, %v", owned, err)
	}
	if err := p.Destroy(ctx, mine); err != nil {
		t.Fatalf("second Destroy: %v", err)
	}
}

// A key of the lease's name left by an earlier attempt is reused when it
// is the same key and replaced when it is not.
func TestCreateHandlesALeftoverKey(t *testing.T) {
	fake := lambdatest.New(t, lambdatest.Options{})
	p := newProvider(t, fake, nil)
	ctx := context.Background()
	offers, _ := p.Offers(ctx, a100)
	for _, same := range []bool{true, false} {
		req := createRequest(t, offers[0], a100, "acme-gpu", "l"+strconv.FormatBool(same))
		left := req.SSHPublicKey
		if !same {
			left, _ = keyPair(t, "old")
		}
		if _, err := p.Client().AddSSHKey(ctx, "crabbox-acme-gpu-"+req.Marker.LeaseID, left); err != nil {
			t.Fatal(err)
		}
		inst, err := p.Create(ctx, req)
		if err != nil {
			t.Fatalf("same key %v: %v", same, err)
		}
		keys, _ := p.Client().SSHKeys(ctx)
		if len(keys) != 1 || keys[0].PublicKey != req.SSHPublicKey {
			t.Fatalf("same key %v: keys %+v", same, keys)
		}
		if err := p.Destroy(ctx, inst); err != nil {
			t.Fatal(err)
		}
		waitFor(t, "the key deleted", 30*time.Second, func() bool { return len(fake.Keys()) == 0 })
	}
}

// The user-data crabbox-runner sends passes cloud-init's own schema check,
// and the host then presents the injected host key and lets the lease's
// client key in: the first connection is verified, not trusted.
func TestUserDataPassesCloudInitAndInstallsTheHostKey(t *testing.T) {
	requireTool(t, "cloud-init", "cloud-init")
	b, err := bootstrap.New(bootstrap.Config{RunnerURL: "https://example.invalid/runner-{version}-{arch}.tar.gz", RunnerVersion: "2.330.0",
		RunnerSHA256: strings.Repeat("ab", 32)})
	if err != nil {
		t.Fatal(err)
	}
	clientPub, clientPEM := keyPair(t, "crabbox")
	hostPub, hostPEM := keyPair(t, "crabbox-host")
	creds := &provisioner.Credentials{ClientPublicKey: clientPub, ClientPrivatePEM: clientPEM,
		HostKey: &provisioner.HostKeyPair{PublicKey: hostPub, PrivatePEM: hostPEM}}
	ud, err := b.UserData(creds)
	if err != nil {
		t.Fatal(err)
	}

	fake := lambdatest.New(t, lambdatest.Options{})
	p := newProvider(t, fake, nil)
	ctx := context.Background()
	offers, _ := p.Offers(ctx, a100)
	req := createRequest(t, offers[0], a100, "acme-gpu", "l1")
	req.SSHPublicKey, req.UserData, req.HostKey = clientPub, ud, creds.HostKey
	inst, err := p.Create(ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	sent := fake.Launches()[0].UserData
	if sent != ud {
		t.Fatal("the launch's user_data is not the bootstrapper's")
	}
	out, err := exec.Command("cloud-init", "schema", "--config-file", writeFile(t, "user-data", sent)).CombinedOutput()
	if err != nil || !strings.Contains(string(out), "Valid") {
		t.Fatalf("cloud-init schema: %v\n%s", err, out)
	}

	var run *provisioner.Instance
	waitFor(t, "running", 30*time.Second, func() bool {
		run, err = p.Get(ctx, inst.ID)
		return err == nil && run.Status == provisioner.InstanceRunning
	})
	signer, _ := ssh.ParsePrivateKey(clientPEM)
	want, _, _, _, _ := ssh.ParseAuthorizedKey([]byte(hostPub))
	addr := net.JoinHostPort(run.SSH.Host, strconv.Itoa(run.SSH.Port))
	conn, err := ssh.Dial("tcp", addr, &ssh.ClientConfig{User: run.SSH.User, Auth: []ssh.AuthMethod{ssh.PublicKeys(signer)},
		HostKeyCallback: ssh.FixedHostKey(want), Timeout: 10 * time.Second})
	if err != nil {
		t.Fatalf("ssh with the injected host key: %v", err)
	}
	conn.Close()
	other, _ := keyPair(t, "other")
	wrong, _, _, _, _ := ssh.ParseAuthorizedKey([]byte(other))
	if conn, err := ssh.Dial("tcp", addr, &ssh.ClientConfig{User: run.SSH.User, Auth: []ssh.AuthMethod{ssh.PublicKeys(signer)},
		HostKeyCallback: ssh.FixedHostKey(wrong), Timeout: 10 * time.Second}); err == nil {
		conn.Close()
		t.Fatal("a host key other than the injected one was accepted")
	}
	if err := p.Destroy(ctx, inst); err != nil {
		t.Fatal(err)
	}
}

// Hosts polled while they boot share one GET /instances: ten leases'
// polls cost one request, not ten seconds of the rate limit.
func TestGetSharesOneListing(t *testing.T) {
	fake := lambdatest.New(t, lambdatest.Options{})
	p := newProvider(t, fake, nil, func(o *lambda.Options) { o.StatusCacheTTL = time.Hour })
	ctx := context.Background()
	offers, _ := p.Offers(ctx, a100)
	var ids []string
	for i := range 3 {
		inst, err := p.Create(ctx, createRequest(t, offers[0], a100, "acme-gpu", "l"+strconv.Itoa(i)))
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, inst.ID)
	}
	count := func(path string) int {
		n := 0
		for _, r := range fake.Requests() {
			if r.Path == path {
				n++
			}
		}
		return n
	}
	done := make(chan error, 30)
	for range 10 {
		for _, id := range ids {
			go func() {
				inst, err := p.Get(ctx, id)
				if err == nil && inst.ID != id {
					err = errors.New("wrong instance")
				}
				done <- err
			}()
		}
	}
	for range 30 {
		if err := <-done; err != nil {
			t.Fatal(err)
		}
	}
	if n, m := count("/api/v1/instances"), len(fake.Requests()); n != 1 || count("/api/v1/instances/"+ids[0]) != 0 {
		t.Fatalf("30 Gets made %d listings (%d requests in all), want 1 and no Get by id", n, m)
	}
	// An instance the listing does not have is asked for by id, and a
	// destroyed one is not answered from the old listing.
	late, err := p.Create(ctx, createRequest(t, offers[0], a100, "acme-gpu", "late"))
	if err != nil {
		t.Fatal(err)
	}
	if inst, err := p.Get(ctx, late.ID); err != nil || inst.ID != late.ID || count("/api/v1/instances/"+late.ID) != 1 {
		t.Fatalf("Get(late) = %+v, %v", inst, err)
	}
	if err := p.Destroy(ctx, &provisioner.Instance{ID: ids[0]}); err != nil {
		t.Fatal(err)
	}
	if inst, err := p.Get(ctx, ids[0]); err == nil && !inst.Status.Ended() {
		t.Fatalf("Get after Destroy answered from the old listing: %+v", inst)
	}
	for _, id := range append(ids[1:], late.ID) {
		p.Destroy(ctx, &provisioner.Instance{ID: id})
	}
}

// A launch answered with a server error may still have happened: the
// provider looks for the instance by its marker before giving up, so the
// lease gets it instead of renting a second host.
func TestCreateFindsALaunchWhoseAnswerFailed(t *testing.T) {
	fake := lambdatest.New(t, lambdatest.Options{})
	p := newProvider(t, fake, nil)
	ctx := context.Background()
	offers, _ := p.Offers(ctx, a100)

	fake.FailNext(1, lambdatest.Fault{Status: 502, Body: "<html>Bad Gateway</html>", Path: "/launch", Applied: true})
	inst, err := p.Create(ctx, createRequest(t, offers[0], a100, "acme-gpu", "l1"))
	if err != nil {
		t.Fatalf("Create after a launch that happened: %v", err)
	}
	if live := fake.Live(); len(live) != 1 || live[0] != inst.ID {
		t.Fatalf("live %v, created %s", live, inst.ID)
	}

	fake.FailNext(1, lambdatest.Fault{Status: 500, Body: "{}", Path: "/launch"})
	_, err = p.Create(ctx, createRequest(t, offers[0], a100, "acme-gpu", "l2"))
	if lambda.StatusOf(err) != 500 || !errors.Is(err, provisioner.ErrCreateUncertain) {
		t.Fatalf("Create after a launch that did not happen = %v, want ErrCreateUncertain wrapping the 500", err)
	}
	// Its key goes once no instance uses it: none does.
	waitFor(t, "the uncertain launch's key deleted", 30*time.Second, func() bool {
		return slices.Equal(fake.Keys(), []string{"crabbox-acme-gpu-l1"})
	})
	launches := 0
	for _, r := range fake.Requests() {
		if strings.HasSuffix(r.Path, "/launch") {
			launches++
		}
	}
	if launches != 2 {
		t.Fatalf("%d launch requests, want 2 (never retried)", launches)
	}
	if err := p.Destroy(ctx, inst); err != nil {
		t.Fatal(err)
	}
}

// imageID is the id GET /images gives the family's x86_64 image in the
// region: what a launch there sends.
func imageID(t *testing.T, p *lambda.Provider, family, region string) string {
	t.Helper()
	images, err := p.Client().Images(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	for _, im := range images {
		if im.Family == family && im.Region.Name == region && im.Architecture == lambda.ArchX86_64 {
			return im.ID
		}
	}
	t.Fatalf("no %s in %s", family, region)
	return ""
}
