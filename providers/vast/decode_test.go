package vast

import (
	"encoding/json"
	"os/exec"
	"slices"
	"strings"
	"testing"

	"github.com/crabbox/crabbox-runner/provisioner"
)

func TestImageCUDA(t *testing.T) {
	for image, want := range map[string]float64{
		"nvidia/cuda:12.4.1-devel-ubuntu22.04":    12.4,
		"docker.io/nvidia/cuda:11.8.0-runtime":    11.8,
		"nvcr.io/nvidia/cuda:12.2.0-base":         12.2,
		"pytorch/pytorch:2.3.0-cuda12.1-cudnn8":   0, // tag names no cuda:X.Y
		"vastai/base-image:@vastai-automatic-tag": 0,
		"ubuntu:22.04": 0,
	} {
		if got := imageCUDA(image); got != want {
			t.Errorf("imageCUDA(%q) = %v, want %v", image, got, want)
		}
	}
}

func TestPriceNeverUnderCounts(t *testing.T) {
	cases := []struct {
		name string
		o    Offer
		disk float64
		want float64
	}{
		{"dph_total priced with our disk", Offer{DphBase: 0.80, StorageCost: 0.18, DphTotal: 0.81}, 40, 0.81},
		{"server priced 8 GB, not our 200", Offer{DphBase: 0.80, StorageCost: 0.18, DphTotal: 0.802}, 200, 0.85},
		{"no breakdown: dph_total as is", Offer{DphTotal: 0.5}, 200, 0.5},
		{"no dph_total: dph_base", Offer{DphBase: 0.4}, 40, 0.4},
	}
	for _, tc := range cases {
		if got := price(tc.o, tc.disk); got != tc.want {
			t.Errorf("%s: price = %v, want %v", tc.name, got, tc.want)
		}
	}
}

func TestCountryCodesAndRegions(t *testing.T) {
	if got := countryCodes("us, ca"); !slices.Equal(got, []string{"US", "CA"}) {
		t.Errorf("countryCodes = %q", got)
	}
	if got := countryCodes("Texas"); got != nil {
		t.Errorf("countryCodes(Texas) = %q, want none (free text)", got)
	}
	for _, tc := range []struct {
		region, geo string
		want        bool
	}{
		{"US", "Texas, US", true},
		{"CA,US", "Quebec, CA", true},
		{"US", "Quebec, CA", false},
		{"texas", "Texas, US", true},
		{"", "anything", true},
	} {
		if got := regionMatches(tc.region, tc.geo); got != tc.want {
			t.Errorf("regionMatches(%q, %q) = %v", tc.region, tc.geo, got)
		}
	}
}

func TestDecodeOfferTolerantNumbers(t *testing.T) {
	raw := `{"offers": [
	  {"id": 123.0, "machine_id": "88", "gpu_name": " RTX 4090 ", "num_gpus": 1, "gpu_ram": "24564",
	   "dph_total": 0.31, "cpu_cores": null, "reliability2": 0.97, "verification": "verified",
	   "geolocation": null, "has_avx": 1, "direct_port_count": 12.0, "rentable": true},
	  {"id": 124, "gpu_name": "A100 SXM4", "num_gpus": 2, "gpu_ram": 81920, "reliability": 0.5,
	   "verified": false, "verification": "verified", "rented": 1}
	]}`
	var resp struct {
		Offers json.RawMessage `json:"offers"`
	}
	if err := json.Unmarshal([]byte(raw), &resp); err != nil {
		t.Fatal(err)
	}
	offers, err := decodeOffers(resp.Offers)
	if err != nil {
		t.Fatal(err)
	}
	a, b := offers[0], offers[1]
	if a.ID != 123 || a.MachineID != 88 || a.GPUName != "RTX 4090" || a.GPURAM != 24564 || a.Reliability != 0.97 ||
		!a.Verified || a.Geolocation != "" || a.DirectPortCount != 12 || !a.Rentable {
		t.Errorf("first offer: %+v", a)
	}
	if b.Verified || !b.Rented || b.Reliability != 0.5 || b.NumGPUs != 2 {
		t.Errorf("second offer: %+v", b)
	}
	// The spec's example shows one object where a list belongs.
	one, err := decodeOffers(json.RawMessage(`{"id": 5, "gpu_name": "L4"}`))
	if err != nil || len(one) != 1 || one[0].ID != 5 {
		t.Errorf("single-object offers: %+v, %v", one, err)
	}
	var bad Offer
	if err := json.Unmarshal([]byte(`{"id": 1.5}`), &bad); err == nil {
		t.Error("a fractional id decoded")
	}
}

func TestDecodeInstance(t *testing.T) {
	raw := `{"id": 4242, "actual_status": null, "status_msg": null, "label": null, "ports": null,
	  "public_ipaddr": "203.0.113.7\n", "ssh_host": "ssh5.vast.ai", "ssh_port": 10600.0,
	  "machine_id": 12, "dph_total": "0.4", "start_date": 1668804745.5, "image_runtype": "ssh ssh_direc ssh_proxy"}`
	var in Instance
	if err := json.Unmarshal([]byte(raw), &in); err != nil {
		t.Fatal(err)
	}
	if in.ActualStatus != "" || in.Label != "" || in.Ports != nil || in.PublicIPAddr != "203.0.113.7" ||
		in.SSHPort != 10600 || in.DphTotal != 0.4 || in.StartDate.Unix() != 1668804745 {
		t.Errorf("decoded %+v", in)
	}
	// Ports as Vast's clients see them, and as its spec wrongly says.
	var running Instance
	json.Unmarshal([]byte(`{"id": 1, "ports": {"22/tcp": [{"HostIp": "0.0.0.0", "HostPort": "20000"}], "8080/tcp": [{"HostIp": "::", "HostPort": 20001}]}}`), &running)
	if p, ok := running.HostPort("22/tcp"); !ok || p != 20000 {
		t.Errorf("22/tcp = %d, %v", p, ok)
	}
	if p, ok := running.HostPort("8080/tcp"); !ok || p != 20001 {
		t.Errorf("numeric HostPort = %d, %v", p, ok)
	}
	var specShape Instance
	if err := json.Unmarshal([]byte(`{"id": 1, "ports": [22, 8080]}`), &specShape); err != nil || specShape.Ports != nil {
		t.Errorf("spec-shaped ports: %+v, %v", specShape.Ports, err)
	}
}

func TestInstanceStatus(t *testing.T) {
	p := &Provider{sshUser: "runner"}
	running := func(in Instance) Instance {
		in.ActualStatus = "running"
		return in
	}
	direct := map[string][]PortBinding{"22/tcp": {{HostIP: "0.0.0.0", HostPort: "40022"}}}
	cases := []struct {
		name   string
		in     Instance
		status provisioner.InstanceStatus
		ep     provisioner.Endpoint
		msg    string
	}{
		{"null", Instance{}, provisioner.InstancePending, provisioner.Endpoint{}, "provisioning"},
		{"created", Instance{ActualStatus: "created"}, provisioner.InstancePending, provisioner.Endpoint{}, "created"},
		{"loading", Instance{ActualStatus: "loading", StatusMsg: "Pulling"}, provisioner.InstancePending, provisioner.Endpoint{}, "loading: Pulling"},
		{"rebooting", Instance{ActualStatus: "rebooting"}, provisioner.InstancePending, provisioner.Endpoint{}, "rebooting"},
		{"something new", Instance{ActualStatus: "defrosting"}, provisioner.InstancePending, provisioner.Endpoint{}, "defrosting"},
		{"running without ssh yet", running(Instance{}), provisioner.InstancePending, provisioner.Endpoint{}, "waiting for SSH"},
		{"running direct", running(Instance{PublicIPAddr: "203.0.113.7", Ports: direct, SSHHost: "ssh5.vast.ai", SSHPort: 10600}),
			provisioner.InstanceRunning, provisioner.Endpoint{Host: "203.0.113.7", Port: 40022, User: "runner"}, ""},
		{"running proxy", running(Instance{SSHHost: "ssh5.vast.ai", SSHPort: 10600}),
			provisioner.InstanceRunning, provisioner.Endpoint{Host: "ssh5.vast.ai", Port: 10600, User: "runner"}, ""},
		{"running jupyter proxy", running(Instance{SSHHost: "ssh5.vast.ai", SSHPort: 10600, ImageRunType: "jupyter_proxy ssh_proxy"}),
			provisioner.InstanceRunning, provisioner.Endpoint{Host: "ssh5.vast.ai", Port: 10601, User: "runner"}, ""},
		{"exited", Instance{ActualStatus: "exited", StatusMsg: "code 1"}, provisioner.InstanceFailed, provisioner.Endpoint{}, "instance exited: code 1"},
		{"offline", Instance{ActualStatus: "offline"}, provisioner.InstanceUnreachable, provisioner.Endpoint{}, "offline"},
		{"unknown", Instance{ActualStatus: "unknown"}, provisioner.InstanceUnreachable, provisioner.Endpoint{}, "unknown"},
		// Outbid (vast-cli vastai/SKILL.md: "When outbid, the instance moves
		// to `stopped`"), whichever of actual_status and cur_state says so.
		{"outbid", Instance{ActualStatus: "stopped", IntendedStatus: "running", IsBid: true}, provisioner.InstanceOutbid, provisioner.Endpoint{}, "outbid"},
		{"outbid by cur_state", Instance{ActualStatus: "running", IntendedStatus: "running", CurState: "stopped", IsBid: true},
			provisioner.InstanceOutbid, provisioner.Endpoint{}, "outbid"},
		{"on-demand stopped by its host", Instance{ActualStatus: "stopped", IntendedStatus: "running"}, provisioner.InstanceStopped, provisioner.Endpoint{}, "stopped"},
		{"frozen", Instance{ActualStatus: "frozen"}, provisioner.InstanceStopped, provisioner.Endpoint{}, "frozen"},
		{"bid stopped by us", Instance{ActualStatus: "stopped", IntendedStatus: "stopped", IsBid: true}, provisioner.InstanceStopped, provisioner.Endpoint{}, "stopped"},
		{"OCI error while created", Instance{ActualStatus: "created", StatusMsg: "Error response from daemon: OCI runtime create failed: x"},
			provisioner.InstanceFailed, provisioner.Endpoint{}, "OCI runtime create failed"},
		{"stopped by someone", Instance{ActualStatus: "loading", IntendedStatus: "stopped"}, provisioner.InstanceStopped, provisioner.Endpoint{}, "stopped"},
	}
	for _, tc := range cases {
		in := tc.in
		in.ID = 7
		got := p.convert(&in)
		if got.Status != tc.status || got.SSH != tc.ep || !strings.Contains(got.StatusMessage, tc.msg) {
			t.Errorf("%s: %s %+v %q; want %s %+v ~%q", tc.name, got.Status, got.SSH, got.StatusMessage, tc.status, tc.ep, tc.msg)
		}
	}
	// root unless configured.
	in := running(Instance{SSHHost: "h", SSHPort: 1})
	if ep := (&Provider{}).endpoint(&in); ep.User != "root" {
		t.Errorf("default user %q", ep.User)
	}
}

func TestOnStartScript(t *testing.T) {
	short := "touch ~/.no_auto_tmux"
	if got, err := onStartScript(short); err != nil || got != short {
		t.Fatalf("short script changed: %q, %v", got, err)
	}
	long := "set -e\n" + strings.Repeat("echo 'a line of the start script that is long enough'\n", 150) + "echo done\n"
	got, err := onStartScript(long)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) > maxOnStart || !strings.Contains(got, "base64 -d | gunzip | bash") {
		t.Fatalf("wrapped script is %d bytes: %.80q", len(got), got)
	}
	out, err := exec.Command("bash", "-c", got).Output()
	if err != nil || !strings.HasSuffix(string(out), "done\n") || strings.Count(string(out), "\n") != 151 {
		t.Fatalf("the wrapped script does not run as the original: %v\n%.200s", err, out)
	}
}

// TestDatacenterOnlyToleratesBothAnswers: whether search results carry a
// datacenter field is not documented. An answer saying false is refused
// for a datacenter-only class; an answer without the field is left to the
// server-side filter.
func TestDatacenterOnlyToleratesBothAnswers(t *testing.T) {
	c := provisioner.Class{GPU: provisioner.GPURequirement{Name: "A100", Count: 1}, DatacenterOnly: true}
	for _, tc := range []struct {
		body string
		fits bool
	}{
		{`{"id": 1, "gpu_name": "A100 SXM4", "num_gpus": 1, "rentable": true, "datacenter": false}`, false},
		{`{"id": 1, "gpu_name": "A100 SXM4", "num_gpus": 1, "rentable": true, "datacenter": true}`, true},
		{`{"id": 1, "gpu_name": "A100 SXM4", "num_gpus": 1, "rentable": true}`, true},
	} {
		var o Offer
		if err := json.Unmarshal([]byte(tc.body), &o); err != nil {
			t.Fatal(err)
		}
		if ok, why := fits(o, c, 1); ok != tc.fits {
			t.Errorf("%s: fits %v (%s), want %v", tc.body, ok, why, tc.fits)
		}
		c2 := c
		c2.DatacenterOnly = false
		if ok, why := fits(o, c2, 1); !ok {
			t.Errorf("%s without datacenter_only: refused (%s)", tc.body, why)
		}
	}
}
