package lambda

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/crabbox/crabbox-runner/provisioner"
)

func typ(name, gpuDesc string, gpus, storage int) InstanceType {
	return InstanceType{Name: name, GPUDescription: gpuDesc, Description: "", Specs: InstanceTypeSpecs{GPUs: gpus, StorageGiB: storage}}
}

func TestFits(t *testing.T) {
	a100 := typ("gpu_1x_a100_sxm4", "A100 (40 GB SXM4)", 1, 512)
	a100x8 := typ("gpu_8x_a100_80gb_sxm4", "A100 (80 GB SXM4)", 8, 20480)
	a10 := typ("gpu_1x_a10", "A10 (24 GB PCIe)", 1, 1400)
	h100 := typ("gpu_1x_h100_pcie", "H100 (80 GB PCIe)", 1, 1024)
	h100sxm := typ("gpu_8x_h100_sxm5", "H100 (80 GB SXM5)", 8, 24780)
	a6000 := typ("gpu_1x_a6000", "A6000 (48 GB)", 1, 512) // Lambda's own words (recorded response, see gpus_test.go)
	gh200 := typ("gpu_1x_gh200", "GH200 (96 GB)", 1, 4096)
	cpu := typ("cpu_4x_general", "", 0, 100)
	noMem := typ("gpu_1x_mystery", "Mystery GPU", 1, 100)
	gpu := func(name string, count int, mem float64) provisioner.Class {
		return provisioner.Class{GPU: provisioner.GPURequirement{Name: name, Count: count, MinMemoryGB: mem}}
	}
	cases := []struct {
		t     InstanceType
		class provisioner.Class
		want  bool
	}{
		{a100, gpu("A100", 1, 0), true},
		{a100, gpu("a100", 1, 40), true},
		{a100, gpu("A100", 1, 80), false},
		{a100, gpu("A100 SXM4", 1, 0), true},
		{a100, gpu("A100 SXM", 1, 0), true}, // letters, then the type's digits
		{a100, gpu("A100 PCIe", 1, 0), false},
		{a100, gpu("A10", 1, 0), false}, // A10 is not A100
		{a10, gpu("A10", 1, 0), true},
		{a10, gpu("A100", 1, 0), false},
		{a100x8, gpu("A100", 8, 80), true},
		{a100x8, gpu("A100", 1, 0), false}, // one GPU never rents eight
		{a100x8, gpu("A100", 0, 0), true},  // count 0: any
		{h100, gpu("H100", 1, 80), true},
		{h100, gpu("GH200", 1, 0), false},
		{gh200, gpu("H100", 1, 0), false},
		{gh200, gpu("GH200", 1, 96), true},
		{h100sxm, gpu("H100 SXM5", 8, 0), true},
		{a6000, gpu("A6000", 1, 48), true},
		{a6000, gpu("RTX A6000", 1, 0), true},
		{a6000, gpu("RTX 6000", 1, 0), false},
		{cpu, gpu("", 0, 0), false},
		{noMem, gpu("", 1, 0), true},
		{noMem, gpu("", 1, 16), false},
		{a100, provisioner.Class{GPU: provisioner.GPURequirement{Name: "A100", Count: 1}, DiskGB: 600}, false},
		{a10, provisioner.Class{GPU: provisioner.GPURequirement{Name: "A10", Count: 1}, DiskGB: 600}, true},
	}
	for _, tc := range cases {
		if got := Fits(tc.t, tc.class); got != tc.want {
			t.Errorf("Fits(%s, %+v disk %d) = %v, want %v", tc.t.Name, tc.class.GPU, tc.class.DiskGB, got, tc.want)
		}
	}
}

func TestOfferNaming(t *testing.T) {
	cases := []struct {
		desc, name string
		mem        float64
	}{
		{"A100 (40 GB SXM4)", "A100 SXM4", 40},
		{"A6000 (48 GB)", "A6000", 48},
		{"RTX A6000 (48 GB)", "RTX A6000", 48},
		{"H100 (80 GB PCIe)", "H100 PCIe", 80},
		{"GH200 (96 GB)", "GH200", 96},
		{"Tesla V100 (16 GB)", "Tesla V100", 16},
		{"B200 (180 GB SXM6)", "B200 SXM6", 180},
		{"Mystery", "Mystery", 0},
	}
	for _, tc := range cases {
		it := InstanceType{Name: "x", GPUDescription: tc.desc}
		if got := gpuName(it); got != tc.name {
			t.Errorf("gpuName(%q) = %q, want %q", tc.desc, got, tc.name)
		}
		if got := gpuMemoryGB(it); got != tc.mem {
			t.Errorf("gpuMemoryGB(%q) = %v, want %v", tc.desc, got, tc.mem)
		}
	}
	for _, id := range []string{"gpu_1x_a10", "@us-east-1", "gpu_1x_a10@", "a@b@c"} {
		if _, _, err := parseOfferID(id); err == nil {
			t.Errorf("parseOfferID(%q) accepted", id)
		}
	}
	if ty, r, err := parseOfferID(offerID("gpu_1x_a10", "us-east-1")); err != nil || ty != "gpu_1x_a10" || r != "us-east-1" {
		t.Errorf("round trip: %q %q %v", ty, r, err)
	}
}

func TestRegionMatches(t *testing.T) {
	cases := []struct {
		region, filter string
		want           bool
	}{
		{"us-east-1", "", true},
		{"us-east-1", "us-east-1", true},
		{"us-east-1", "US-EAST-1", true},
		{"us-east-1", "us", true},
		{"us-east-1", "us-east", true},
		{"us-east-1", "us-east-", true},
		{"us-east-1", "us-e", false},
		{"us-east-1", "us-east-2", false},
		{"europe-central-1", "us", false},
	}
	for _, tc := range cases {
		if got := regionMatches(tc.region, tc.filter); got != tc.want {
			t.Errorf("regionMatches(%q, %q) = %v", tc.region, tc.filter, got)
		}
	}
}

func TestParseImage(t *testing.T) {
	cases := []struct {
		in         string
		id, family string
	}{
		{"", "", ""},
		{"lambda-stack-22-04", "", "lambda-stack-22-04"},
		{"43336648-096d-4cba-9aa2-f9bb7727639d", "43336648-096d-4cba-9aa2-f9bb7727639d", ""},
		{"id:my-image", "my-image", ""},
		{"family:43336648-096d-4cba-9aa2-f9bb7727639d", "", "43336648-096d-4cba-9aa2-f9bb7727639d"},
		{"  gpu-base-24-04 ", "", "gpu-base-24-04"},
	}
	for _, tc := range cases {
		got, err := ParseImage(tc.in)
		if err != nil || got.ID != tc.id || got.Family != tc.family {
			t.Errorf("ParseImage(%q) = %+v, %v; want id %q family %q", tc.in, got, err, tc.id, tc.family)
		}
	}
	for _, bad := range []string{"id:", "id: ", "family:", "nvidia/cuda:12.4.1-devel-ubuntu22.04", "ubuntu:22.04", "GPU Base"} {
		if _, err := ParseImage(bad); err == nil {
			t.Errorf("ParseImage(%q) accepted", bad)
		}
	}
	if _, err := ParseImage("nvidia/cuda:12.4.1-devel-ubuntu22.04"); err == nil || !strings.Contains(err.Error(), "container image") {
		t.Errorf("a container image's error does not say so: %v", err)
	}
}

// Architectures from the types' names: the superchips are arm64.
func TestTypeArchitecture(t *testing.T) {
	for name, want := range map[string]string{
		"gpu_1x_gh200": ArchARM64, "gpu_8x_gb200": ArchARM64, "gpu_1x_a100_sxm4": ArchX86_64,
		"gpu_1x_h100_pcie": ArchX86_64, "gpu_8x_b200_sxm6": ArchX86_64,
	} {
		if got := typeArchitecture(InstanceType{Name: name}); got != want {
			t.Errorf("%s: %s, want %s", name, got, want)
		}
	}
}

// The image of a region: by architecture, newest version of a family,
// defaults per architecture, pinned ids.
func TestPickImage(t *testing.T) {
	at := func(d int) time.Time { return time.Date(2025, 11, d, 0, 0, 0, 0, time.UTC) }
	im := func(id, family, version, arch, region string, d int) Image {
		return Image{ID: id, Family: family, Version: version, Architecture: arch, Region: Region{Name: region}, UpdatedTime: at(d)}
	}
	// Shaped like the recorded GET /images: us-east-3 has arm64 Lambda
	// Stack only, listed in two versions.
	images := []Image{
		im("a", "gpu-base-24-04", "24.4.2-1459", ArchX86_64, "us-east-1", 1),
		im("b", "lambda-stack-22-04", "22.4.5-1026", ArchX86_64, "us-east-1", 1),
		im("c", "lambda-stack-22-04", "22.4.5-1459", ArchX86_64, "us-east-1", 2),
		im("d", "lambda-stack-22-04", "22.4.5-1026", ArchARM64, "us-east-3", 1),
		im("e", "lambda-stack-24-04", "24.4.2-1459", ArchARM64, "us-east-3", 1),
	}
	cases := []struct {
		region, arch string
		want         ImageChoice
		id           string
		ok           bool
	}{
		{"us-east-1", ArchX86_64, ImageChoice{}, "a", true},
		{"us-east-1", ArchX86_64, ImageChoice{Family: "lambda-stack-22-04"}, "c", true},
		{"us-east-3", ArchARM64, ImageChoice{}, "e", true},
		{"us-east-3", ArchARM64, ImageChoice{Family: "lambda-stack-22-04"}, "d", true},
		{"us-east-3", ArchARM64, ImageChoice{Family: "gpu-base-24-04"}, "", false},
		{"us-east-3", ArchX86_64, ImageChoice{}, "", false},
		{"us-east-1", ArchARM64, ImageChoice{}, "", false},
		{"us-east-1", ArchX86_64, ImageChoice{ID: "b"}, "b", true},
		{"us-east-3", ArchARM64, ImageChoice{ID: "b"}, "", false},
	}
	for _, tc := range cases {
		got, ok := pickImage(images, tc.region, tc.arch, tc.want)
		if ok != tc.ok || got.id != tc.id {
			t.Errorf("pickImage(%s, %s, %+v) = %+v %v; want %q %v", tc.region, tc.arch, tc.want, got, ok, tc.id, tc.ok)
		}
	}
}

func TestHostnameAndKeyNames(t *testing.T) {
	for _, lease := range []string{"lq7k2m9x4c8p", "Lease_With.Odd/Chars", strings.Repeat("x", 80), "-"} {
		h := hostname(lease)
		if !hostnameRE.MatchString(h) {
			t.Errorf("hostname(%q) = %q does not match Lambda's pattern", lease, h)
		}
	}
	m := provisioner.Marker{Deployment: "acme-gpu", LeaseID: "lq7k2m9x4c8p", Expires: time.Unix(1900000000, 0)}
	if got := sshKeyName(m); got != "crabbox-acme-gpu-lq7k2m9x4c8p" {
		t.Errorf("sshKeyName = %q", got)
	}
	long := provisioner.Marker{Deployment: strings.Repeat("d", 24), LeaseID: strings.Repeat("l", 60)}
	if got := sshKeyName(long); len(got) > 64 || !strings.HasPrefix(got, keyPrefix(long.Deployment)) || got == sshKeyName(provisioner.Marker{Deployment: long.Deployment, LeaseID: strings.Repeat("m", 60)}) {
		t.Errorf("sshKeyName(long) = %q", got)
	}
}

func TestMarkerTags(t *testing.T) {
	m := provisioner.Marker{Deployment: "acme-gpu", LeaseID: "lq7k2m9x4c8p", Expires: time.Unix(1900000000, 0).UTC()}
	tags, err := markerTags(m, "a100")
	if err != nil {
		t.Fatal(err)
	}
	for _, tg := range tags {
		if !tagKeyRE.MatchString(tg.Key) || len(tg.Key) > 55 {
			t.Errorf("tag key %q breaks Lambda's pattern", tg.Key)
		}
	}
	back, ok := markerFromTags(tags)
	if !ok || back != m {
		t.Fatalf("markerFromTags = %+v %v, want %+v", back, ok, m)
	}
	if _, err := markerTags(provisioner.Marker{Deployment: "d", LeaseID: strings.Repeat("l", 129)}, ""); err == nil {
		t.Error("a tag value over 128 characters was accepted")
	}

	other := provisioner.Marker{Deployment: "other", LeaseID: "l2", Expires: m.Expires}
	otherTags, _ := markerTags(other, "")
	cases := []struct {
		name string
		inst Instance
		want string // deployment, "" for nobody's
	}{
		{"name only", Instance{Name: m.String()}, "acme-gpu"},
		{"tags only (renamed in the console)", Instance{Name: "my notebook", Tags: tags}, "acme-gpu"},
		{"both agree", Instance{Name: m.String(), Tags: tags}, "acme-gpu"},
		{"they disagree", Instance{Name: m.String(), Tags: otherTags}, ""},
		{"neither", Instance{Name: "my notebook", Tags: []Tag{{"team", "ml"}}}, ""},
		{"partial tags", Instance{Tags: tags[:2]}, ""},
	}
	for _, tc := range cases {
		got, ok := markerOf(&tc.inst)
		if ok != (tc.want != "") || got.Deployment != tc.want {
			t.Errorf("%s: markerOf = %+v, %v", tc.name, got, ok)
		}
	}
}

func TestCleanText(t *testing.T) {
	got := cleanText("bad key secret_abc\n<html>\x00"+strings.Repeat("é", 400), "secret_abc")
	if strings.Contains(got, "secret_abc") || strings.ContainsAny(got, "\n\x00") || len([]rune(got)) > maxErrorText+1 {
		t.Fatalf("cleanText = %q", got)
	}
	if !strings.HasPrefix(got, "bad key [REDACTED] <html>") {
		t.Fatalf("cleanText = %q", got[:40])
	}
}

// Whatever the order and timing of requests, booked sends keep both of
// Lambda's spacings: every pair a general interval apart, every pair of
// launches a launch interval apart; and requests fill the gaps before a
// launch booked far ahead.
func TestLimiterBooking(t *testing.T) {
	const general, launch = time.Second, 12 * time.Second
	l := newLimiter(general, launch)
	t0 := time.Unix(1_700_000_000, 0)
	first := l.book(t0, true)
	second := l.book(t0, true)
	poll := l.book(t0, false)
	if first != t0 || second != t0.Add(launch) || poll != t0.Add(general) {
		t.Fatalf("launch, launch, poll booked at +%s +%s +%s; want +0s +12s +1s", first.Sub(t0), second.Sub(t0), poll.Sub(t0))
	}

	l = newLimiter(general, launch)
	var all, launches []time.Time
	now := t0
	for i := range 300 {
		now = now.Add(time.Duration(i*7919%1500) * time.Millisecond / 10)
		isLaunch := i%4 == 0
		at := l.book(now, isLaunch)
		if at.Before(now) {
			t.Fatalf("booked in the past: %s before %s", at, now)
		}
		all = append(all, at)
		if isLaunch {
			launches = append(launches, at)
		}
	}
	check := func(name string, ts []time.Time, min time.Duration) {
		for i := range ts {
			for j := range i {
				if d := ts[i].Sub(ts[j]).Abs(); d < min {
					t.Fatalf("%s %d and %d booked %s apart, want at least %s", name, j, i, d, min)
				}
			}
		}
	}
	check("requests", all, general)
	check("launches", launches, launch)

	l = newLimiter(general, launch)
	at := l.book(t0, false)
	l.cancel(at, false)
	if again := l.book(t0, false); again != t0 {
		t.Fatalf("a cancelled booking was kept: next at +%s", again.Sub(t0))
	}
	if off := newLimiter(0, 0); off.wait(context.Background(), true) != nil {
		t.Fatal("a limiter without intervals waited")
	}
}
