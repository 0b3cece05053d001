package vast_test

import (
	"context"
	"encoding/json"
	"errors"
	"math"
	"net"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/crabbox/crabbox-runner/providers/vast"
	"github.com/crabbox/crabbox-runner/providers/vast/vasttest"
	"github.com/crabbox/crabbox-runner/provisioner"
)

func TestOffersPickTheCheapestThatFit(t *testing.T) {
	fake := newFake(t, vasttest.Options{})
	p := newProvider(t, fake)
	offers, err := p.Offers(context.Background(), a100)
	if err != nil {
		t.Fatal(err)
	}
	// 207 (cheaper, but CUDA 11.8 < the image's 12.4), 205 (unreliable),
	// 204 (no direct port), 206 (A100X), 203 (two GPUs) do not fit.
	want := []provisioner.Offer{
		{Provider: "vast", ID: "5000201", GPU: "A100 PCIE", GPUCount: 1, GPUMemoryGB: 40, PricePerHour: 0.811111, Region: "Quebec, CA", Reliability: 0.99, MachineID: "201", Exclusive: true, Image: vast.DefaultImage},
		{Provider: "vast", ID: "5000202", GPU: "A100 SXM4", GPUCount: 1, GPUMemoryGB: 80, PricePerHour: 1.111111, Region: "Oregon, US", Reliability: 0.995, MachineID: "202", Exclusive: true, Image: vast.DefaultImage},
	}
	if len(offers) != len(want) {
		t.Fatalf("offers %+v, want %+v", offers, want)
	}
	for i := range want {
		if offers[i] != want[i] {
			t.Errorf("offer %d = %+v\nwant        %+v", i, offers[i], want[i])
		}
	}

	// What went over the wire: REST names and units, like the CLI sends.
	reqs := fake.RequestsFor(vasttest.OpSearch)
	if len(reqs) != 1 || reqs[0].Path != "/api/v0/bundles/" || !reqs[0].Authorized || strings.Contains(reqs[0].Query, "api_key") {
		t.Fatalf("search requests: %+v", reqs)
	}
	var body map[string]any
	if err := json.Unmarshal(reqs[0].Body, &body); err != nil {
		t.Fatal(err)
	}
	wantBody := map[string]string{
		"gpu_name":          `{"in":["A100 PCIE","A100 SXM4","A100 SXM"]}`,
		"num_gpus":          `{"eq":1}`,
		"gpu_ram":           `{"gte":37683}`, // 92% of 40 GiB: no 40 GB card reads less
		"dph_total":         `{"lte":2}`,
		"reliability":       `{"gte":0.95}`,
		"verified":          `{"eq":true}`,
		"rentable":          `{"eq":true}`,
		"rented":            `{"eq":false}`,
		"external":          `{"eq":false}`,
		"direct_port_count": `{"gte":1}`,
		"cuda_max_good":     `{"gte":12.4}`,
		"order":             `[["dph_total","asc"]]`,
		"type":              `"on-demand"`,
		"limit":             `64`,
		"allocated_storage": `40`,
	}
	for k, v := range wantBody {
		got, _ := json.Marshal(body[k])
		if string(got) != v {
			t.Errorf("search body %s = %s, want %s", k, got, v)
		}
	}
	if len(body) != len(wantBody) {
		t.Errorf("search body has %d keys, want %d: %s", len(body), len(wantBody), reqs[0].Body)
	}
}

// TestOffersCountTheDisk: dph_total is priced with allocated_storage, so a
// bigger disk makes the same offer dearer by storage_cost × GB / 720.
func TestOffersCountTheDisk(t *testing.T) {
	fake := newFake(t, vasttest.Options{})
	p := newProvider(t, fake)
	big := a100
	big.DiskGB = 400
	small, err := p.Offers(context.Background(), a100)
	if err != nil {
		t.Fatal(err)
	}
	large, err := p.Offers(context.Background(), big)
	if err != nil {
		t.Fatal(err)
	}
	if small[0].ID != large[0].ID {
		t.Fatalf("cheapest differs: %s vs %s", small[0].ID, large[0].ID)
	}
	// Offer 201: $0.20/GB/month.
	if d := large[0].PricePerHour - small[0].PricePerHour; math.Abs(d-0.20*360/720) > 1e-6 {
		t.Fatalf("360 GB more disk adds $%.6f/h, want $0.10/h", d)
	}
}

func TestOffersFilters(t *testing.T) {
	fake := newFake(t, vasttest.Options{})
	p := newProvider(t, fake)
	cases := []struct {
		name  string
		class func(c *provisioner.Class)
		ids   []string
	}{
		{"region as country code", func(c *provisioner.Class) { c.Region = "us" }, []string{"5000202"}},
		{"region as text", func(c *provisioner.Class) { c.Region = "quebec" }, []string{"5000201"}},
		{"price cap", func(c *provisioner.Class) { c.MaxPricePerHour = 1.0 }, []string{"5000201"}},
		{"proxy SSH allows no direct ports", func(c *provisioner.Class) { c.DirectSSH = false }, []string{"5000201", "5000204", "5000202"}},
		{"old driver fits an image without a CUDA tag", func(c *provisioner.Class) { c.Image = "vastai/base-image:@vastai-automatic-tag" },
			[]string{"5000207", "5000201", "5000202"}},
		{"memory", func(c *provisioner.Class) { c.GPU.MinMemoryGB = 80 }, []string{"5000202"}},
		{"datacenter only", func(c *provisioner.Class) { c.DatacenterOnly = true }, []string{"5000202"}},
		{"two GPUs", func(c *provisioner.Class) { c.GPU.Count = 2; c.MaxPricePerHour = 3 }, []string{"5000203"}},
		{"exact name", func(c *provisioner.Class) { c.GPU.Name = "A100_SXM4" }, []string{"5000202"}},
		{"RTX 4090, verified only", func(c *provisioner.Class) {
			c.GPU = provisioner.GPURequirement{Name: "RTX 4090", Count: 1, MinMemoryGB: 24}
		},
			[]string{"5000101"}},
		{"RTX 4090, unverified too", func(c *provisioner.Class) {
			c.GPU = provisioner.GPURequirement{Name: "4090", Count: 1}
			c.VerifiedOnly = false
		}, []string{"5000102", "5000101"}},
		{"any GPU with 40 GB", func(c *provisioner.Class) { c.GPU.Name = "" }, []string{"5000201", "5000206", "5000202"}},
		{"nothing fits", func(c *provisioner.Class) { c.MaxPricePerHour = 0.1 }, nil},
	}
	for _, tc := range cases {
		c := a100
		tc.class(&c)
		offers, err := p.Offers(context.Background(), c)
		if err != nil {
			t.Errorf("%s: %v", tc.name, err)
			continue
		}
		var ids []string
		for _, o := range offers {
			ids = append(ids, o.ID)
		}
		if strings.Join(ids, ",") != strings.Join(tc.ids, ",") {
			t.Errorf("%s: offers %v, want %v", tc.name, ids, tc.ids)
		}
	}
}

// TestOffersUnknownGPU: a GPU newer than KnownGPUNames is tried by its name
// as written, then found by a wider search matched on our side.
func TestOffersUnknownGPU(t *testing.T) {
	fake := newFake(t, vasttest.Options{Offers: append([]vasttest.Offer{
		{ID: 6000001, MachineID: 601, GPUName: "B300 SXM6", NumGPUs: 1, GPURAM: 288000, DphBase: 4.5, StorageCost: 0.3, Reliability: 0.99, Geolocation: "Iowa, US", DirectPortCount: 10, DiskSpace: 1000, CUDAMaxGood: 13.0},
	}, vasttest.DefaultOffers...)})
	p := newProvider(t, fake)
	c := a100
	c.GPU = provisioner.GPURequirement{Name: "B300", Count: 1}
	c.MaxPricePerHour = 10
	offers, err := p.Offers(context.Background(), c)
	if err != nil {
		t.Fatal(err)
	}
	if len(offers) != 1 || offers[0].GPU != "B300 SXM6" {
		t.Fatalf("offers %+v", offers)
	}
	reqs := fake.RequestsFor(vasttest.OpSearch)
	if len(reqs) != 2 || !strings.Contains(string(reqs[0].Body), `"gpu_name":{"eq":"B300"}`) || strings.Contains(string(reqs[1].Body), "gpu_name") {
		t.Fatalf("searches: %d, first %s", len(reqs), reqs[0].Body)
	}
}

func TestCreateSendsWhatVastExpects(t *testing.T) {
	fake := newFake(t, vasttest.Options{})
	p := newProvider(t, fake)
	key := newLeaseKey(t)
	m := marker("acme-gpu", "lease-42")
	inst := create(t, p, a100, m, key)

	if inst.Provider != "vast" || inst.Status != provisioner.InstancePending || inst.Marker != m || inst.MachineID != "201" || inst.PricePerHour != 0.811111 {
		t.Errorf("created %+v", inst)
	}
	creates := fake.RequestsFor(vasttest.OpCreate)
	if len(creates) != 1 || creates[0].Path != "/api/v0/asks/5000201/" || creates[0].Method != "PUT" {
		t.Fatalf("creates %+v", creates)
	}
	var body map[string]any
	json.Unmarshal(creates[0].Body, &body)
	want := map[string]any{
		"client_id": "me", "image": vast.DefaultImage, "disk": 40.0, "label": m.String(),
		"runtype": "ssh_direc ssh_proxy", "onstart": `echo started > "$HOME/onstart.txt"`, "cancel_unavail": true,
	}
	for k, v := range want {
		if body[k] != v {
			t.Errorf("create body %s = %v, want %v", k, body[k], v)
		}
	}
	if len(body) != len(want) {
		t.Errorf("create body %s", creates[0].Body)
	}
	// The instance id is new_contract, not the offer id.
	if id, _ := strconv.ParseInt(inst.ID, 10, 64); id == 5000201 || id == 0 {
		t.Errorf("instance id %s", inst.ID)
	}
	attach := fake.RequestsFor(vasttest.OpAttach)
	if len(attach) != 1 || attach[0].Path != "/api/v0/instances/"+inst.ID+"/ssh/" ||
		string(attach[0].Body) != `{"ssh_key":"`+key.authorized+`"}` {
		t.Fatalf("attach %+v", attach)
	}
	if strings.Contains(strings.ToLower(string(creates[0].Body)), "instance_api_key") {
		t.Error("create sent Vast's per-instance key back")
	}
}

// TestLifecycleOverRealSSH: null → loading → running with a direct SSH
// endpoint where the lease key logs in; destroyed, it is gone and its sshd
// with it.
func TestLifecycleOverRealSSH(t *testing.T) {
	fake := newFake(t, vasttest.Options{})
	p := newProvider(t, fake)
	key := newLeaseKey(t)
	began := time.Now()
	inst := create(t, p, a100, marker("acme-gpu", "lease-1"), key)

	running := waitStatus(t, p, inst.ID, provisioner.InstanceRunning)
	reported := time.Since(began)
	id, _ := strconv.ParseInt(inst.ID, 10, 64)
	snap, _ := fake.Instance(id)
	if running.SSH.Host != "127.0.0.1" || running.SSH.Port != snap.SSHPort || running.SSH.User != currentUser(t) {
		t.Fatalf("endpoint %+v, want the direct port %d", running.SSH, snap.SSHPort)
	}
	if running.Marker.LeaseID != "lease-1" || running.GPU != "A100 PCIE" || running.MachineID != "201" || running.PricePerHour != 0.811111 || running.CreatedAt.IsZero() {
		t.Errorf("running %+v", running)
	}
	out, err := sshRun(t, running.SSH, key, `nvidia-smi --query-gpu=name,memory.total --format=csv,noheader; cat "$CRABBOX_HOST_ROOT/onstart.txt"`)
	if err != nil || !strings.Contains(out, "NVIDIA A100 PCIE, 40960 MiB") || !strings.Contains(out, "started") {
		t.Fatalf("ssh: %v\n%s", err, out)
	}
	t.Logf("offers+create to running: %s; to the first SSH command done: %s", reported.Round(time.Millisecond), time.Since(began).Round(time.Millisecond))
	// The key was attached after create and again once running; the second
	// time Vast says "already associated", which is success.
	if n := len(fake.RequestsFor(vasttest.OpAttach)); n != 2 {
		t.Errorf("%d attach calls, want 2", n)
	}

	if err := p.Destroy(context.Background(), running); err != nil {
		t.Fatal(err)
	}
	if _, err := p.Get(context.Background(), inst.ID); !errors.Is(err, provisioner.ErrNotFound) {
		t.Fatalf("Get after destroy: %v", err)
	}
	if c, err := net.Dial("tcp", running.SSH.Addr()); err == nil {
		c.Close()
		t.Fatal("sshd still listens after destroy")
	}
	if err := p.Destroy(context.Background(), running); err != nil {
		t.Fatalf("second destroy: %v", err)
	}
	if live := fake.Live(); len(live) != 0 {
		t.Fatalf("live instances %+v", live)
	}
}

func TestProxySSH(t *testing.T) {
	fake := newFake(t, vasttest.Options{})
	p := newProvider(t, fake)
	key := newLeaseKey(t)
	c := a100
	c.DirectSSH = false
	inst := create(t, p, c, marker("acme-gpu", "lease-p"), key)
	running := waitStatus(t, p, inst.ID, provisioner.InstanceRunning)
	id, _ := strconv.ParseInt(inst.ID, 10, 64)
	snap, _ := fake.Instance(id)
	if snap.Direct || snap.RunType != "ssh_proxy" || running.SSH.Port != snap.ProxyPort {
		t.Fatalf("instance %+v, endpoint %+v: want the proxy", snap, running.SSH)
	}
	if out, err := sshRun(t, running.SSH, key, "echo through-the-proxy"); err != nil || !strings.Contains(out, "through-the-proxy") {
		t.Fatalf("ssh through the proxy: %v %s", err, out)
	}
}

func TestDestroyedInstanceIsNotFound(t *testing.T) {
	for _, as404 := range []bool{false, true} {
		fake := newFake(t, vasttest.Options{GoneAs404: as404})
		p := newProvider(t, fake)
		inst := create(t, p, a100, marker("acme-gpu", "lease-g"), newLeaseKey(t))
		if err := p.Destroy(context.Background(), inst); err != nil {
			t.Fatal(err)
		}
		if _, err := p.Get(context.Background(), inst.ID); !errors.Is(err, provisioner.ErrNotFound) {
			t.Errorf("GoneAs404=%v: Get = %v, want ErrNotFound", as404, err)
		}
		for _, id := range []string{"999999999", "not-a-number", ""} {
			if err := p.Destroy(context.Background(), &provisioner.Instance{ID: id}); err != nil {
				t.Errorf("Destroy(%q) = %v", id, err)
			}
		}
	}
}

// TestListOwned: pages of 25, label_counts to fetch only this deployment's
// labels, and a client-side check of every marker.
func TestListOwned(t *testing.T) {
	var market []vasttest.Offer
	for i := range 40 {
		market = append(market, vasttest.Offer{ID: int64(7000000 + i), MachineID: int64(700 + i), GPUName: "A100 SXM4", NumGPUs: 1, GPURAM: 81920,
			DphBase: 1 + float64(i)/100, StorageCost: 0.1, Reliability: 0.99, Geolocation: "Oregon, US", DirectPortCount: 10, DiskSpace: 500, CUDAMaxGood: 12.8})
	}
	// No host needs to boot for a list.
	fake := newFake(t, vasttest.Options{Offers: market, Behavior: func(int, vasttest.Offer, string) vasttest.Behavior { return vasttest.Behavior{NeverBoot: true} }})
	p := newProvider(t, fake)
	ctx := context.Background()
	key := newLeaseKey(t)
	mine := map[string]bool{}
	for i := range 30 {
		dep := []string{"acme-gpu", "other", "acme-gpu-2"}[i%3]
		inst := create(t, p, a100, marker(dep, "l"+strconv.Itoa(i)), key)
		if dep == "acme-gpu" {
			mine[inst.ID] = true
		}
	}
	// Untagged and foreign-labelled instances of the same account.
	for i, label := range []string{"", "my notebook", "crabbox:acme-gpu:broken"} {
		inst := create(t, p, a100, marker("acme-gpu", "x"+strconv.Itoa(i)), key)
		n, _ := strconv.ParseInt(inst.ID, 10, 64)
		if err := p.Client().SetLabel(ctx, n, label); err != nil {
			t.Fatal(err)
		}
	}

	before := len(fake.RequestsFor(vasttest.OpList))
	owned, err := p.ListOwned(ctx, "acme-gpu")
	if err != nil {
		t.Fatal(err)
	}
	if len(owned) != len(mine) {
		t.Fatalf("ListOwned: %d instances, want %d", len(owned), len(mine))
	}
	for _, inst := range owned {
		if !mine[inst.ID] || inst.Marker.Deployment != "acme-gpu" || inst.Status != provisioner.InstancePending {
			t.Errorf("listed %+v", inst)
		}
	}
	lists := fake.RequestsFor(vasttest.OpList)[before:]
	if len(lists) != 2 || lists[0].Path != "/api/v1/instances/" || strings.Contains(lists[0].Query, "select_filters") ||
		!strings.Contains(lists[1].Query, "select_filters=%7B%22label%22%3A%7B%22in%22") {
		t.Errorf("list calls: %+v", lists)
	}
	all, err := p.Client().ListInstances(ctx, nil)
	if err != nil || len(all) != 33 {
		t.Errorf("ListInstances: %d, %v; want all 33 over two pages", len(all), err)
	}
	if owned, err := p.ListOwned(ctx, "nobody"); err != nil || len(owned) != 0 {
		t.Errorf("ListOwned(nobody) = %d, %v", len(owned), err)
	}
}

func TestListOwnedOnePage(t *testing.T) {
	fake := newFake(t, vasttest.Options{Behavior: func(int, vasttest.Offer, string) vasttest.Behavior { return vasttest.Behavior{NeverBoot: true} }})
	p := newProvider(t, fake)
	a := create(t, p, a100, marker("acme-gpu", "l1"), newLeaseKey(t))
	create(t, p, a100, marker("other", "l2"), newLeaseKey(t))
	owned, err := p.ListOwned(context.Background(), "acme-gpu")
	if err != nil || len(owned) != 1 || owned[0].ID != a.ID {
		t.Fatalf("ListOwned = %+v, %v", owned, err)
	}
	if n := len(fake.RequestsFor(vasttest.OpList)); n != 1 {
		t.Errorf("%d list calls for one page", n)
	}
}
