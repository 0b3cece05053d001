package provisioner_test

import (
	"context"
	"errors"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/crabbox/crabbox-runner/provisioner"
)

func TestPublicAddr(t *testing.T) {
	refused := map[string]string{
		"127.0.0.1":        "loopback",
		"127.255.0.9":      "loopback",
		"::1":              "loopback",
		"0.0.0.0":          "unspecified",
		"::":               "unspecified",
		"10.1.2.3":         "private",
		"172.16.0.1":       "private",
		"172.31.255.254":   "private",
		"192.168.1.1":      "private",
		"fc00::1":          "private",
		"fd12:3456::1":     "private",
		"169.254.169.254":  "link-local",
		"fe80::1":          "link-local",
		"100.64.0.1":       "shared",
		"100.127.255.254":  "shared",
		"0.1.2.3":          "this network",
		"224.0.0.1":        "multicast",
		"239.255.255.250":  "multicast",
		"ff02::1":          "multicast",
		"240.0.0.1":        "reserved",
		"255.255.255.255":  "broadcast",
		"192.0.0.8":        "IETF protocol",
		"192.0.2.7":        "documentation",
		"198.18.0.1":       "benchmarking",
		"198.19.255.1":     "benchmarking",
		"198.51.100.7":     "documentation",
		"203.0.113.7":      "documentation",
		"192.88.99.1":      "6to4 relay",
		"2001:db8::1":      "documentation",
		"3fff::1":          "documentation",
		"64:ff9b:1::1":     "outside global unicast",
		"64:ff9b::a00:1":   "outside global unicast", // NAT64 of 10.0.0.1
		"100::1":           "outside global unicast",
		"::a00:1":          "outside global unicast", // IPv4-compatible, deprecated
		"fec0::1":          "outside global unicast", // site-local, deprecated
		"2001::1":          "Teredo",
		"2001:2::1":        "IETF protocol", // benchmarking
		"2001:10::1":       "IETF protocol", // deprecated ORCHID
		"2002:a00:1::1":    "6to4 address of a private",
		"2002:7f00:1::1":   "6to4 address of a loopback",
		"::ffff:10.0.0.1":  "private", // mapped: judged as IPv4
		"::ffff:127.0.0.1": "loopback",
		"fe80::1%eth0":     "link-local",
	}
	for s, want := range refused {
		why := provisioner.PublicAddr(netip.MustParseAddr(s))
		if !strings.Contains(why, want) {
			t.Errorf("PublicAddr(%s) = %q, want it refused as %q", s, why, want)
		}
	}
	for _, s := range []string{
		"1.1.1.1", "8.8.4.4", "147.75.1.2", "100.63.255.255", "100.128.0.1", "172.15.255.255", "172.32.0.1",
		"192.0.1.255", "198.17.255.255", "198.20.0.1", "223.255.255.254", "::ffff:8.8.8.8",
		"2606:4700:4700::1111", "2a01:4f8::1", "2001:4:112::1", "2001:1::1", "2002:808:808::1",
	} {
		if why := provisioner.PublicAddr(netip.MustParseAddr(s)); why != "" {
			t.Errorf("PublicAddr(%s) = %q, want public", s, why)
		}
	}
}

// fakeResolver answers from a table and counts lookups; tests resolve no
// real name.
type fakeResolver struct {
	mu      sync.Mutex
	answers map[string][]string
	lookups int
}

func (r *fakeResolver) LookupNetIP(ctx context.Context, network, host string) ([]netip.Addr, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.lookups++
	ss, ok := r.answers[host]
	if !ok {
		return nil, errors.New("no such host")
	}
	var out []netip.Addr
	for _, s := range ss {
		out = append(out, netip.MustParseAddr(s))
	}
	return out, nil
}

func (r *fakeResolver) count() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.lookups
}

func TestResolveEndpoint(t *testing.T) {
	r := &fakeResolver{answers: map[string][]string{
		"ssh4.vast.example":  {"147.75.1.2", "2606:4700::1"},
		"rebind.example":     {"147.75.1.2", "10.0.0.5"},
		"metadata.example":   {"169.254.169.254"},
		"mapped.example":     {"::ffff:8.8.8.8"},
		"mappedbad.example":  {"::ffff:192.168.0.1"},
		"nothing.example":    {},
		"onlybadv6.example":  {"147.75.1.2", "fd00::1"},
		"allowedbad.example": {"10.9.9.9"},
	}}
	ctx := context.Background()
	cases := []struct {
		host         string
		allowPrivate bool
		want         string // the address to dial, or the refusal's words
		refused      bool
	}{
		{host: "147.75.1.2", want: "147.75.1.2"},
		{host: "[2606:4700::1]", want: "2606:4700::1"},
		{host: "10.1.2.3", want: "a private address", refused: true},
		{host: "::ffff:127.0.0.1", want: "which resolves to 127.0.0.1, a loopback address", refused: true},
		{host: "ssh4.vast.example", want: "147.75.1.2"},
		{host: "rebind.example", want: "which resolves to 10.0.0.5, a private address", refused: true},
		{host: "onlybadv6.example", want: "fd00::1, a private address", refused: true},
		{host: "metadata.example", want: "169.254.169.254, a link-local address", refused: true},
		{host: "mapped.example", want: "8.8.8.8"},
		{host: "mappedbad.example", want: "192.168.0.1, a private address", refused: true},
		{host: "allowedbad.example", allowPrivate: true, want: "10.9.9.9"},
		{host: "127.0.0.1", allowPrivate: true, want: "127.0.0.1"},
	}
	for _, c := range cases {
		a, err := provisioner.ResolveEndpoint(ctx, r, c.host, c.allowPrivate)
		switch {
		case c.refused && (!errors.Is(err, provisioner.ErrEndpointRefused) || !strings.Contains(err.Error(), c.want)):
			t.Errorf("%s: err %v, want a refusal saying %q", c.host, err, c.want)
		case !c.refused && (err != nil || a.String() != c.want):
			t.Errorf("%s: %v, %v; want %s", c.host, a, err, c.want)
		}
	}
	// A name that does not resolve is no refusal: it may resolve later.
	for _, h := range []string{"nothing.example", "unknown.example"} {
		if _, err := provisioner.ResolveEndpoint(ctx, r, h, false); err == nil || errors.Is(err, provisioner.ErrEndpointRefused) {
			t.Errorf("%s: %v, want a lookup error", h, err)
		}
	}
	// IP literals are never looked up.
	before := r.count()
	for _, h := range []string{"147.75.1.2", "10.0.0.1", "::1", "[2606:4700::1]"} {
		_, _ = provisioner.ResolveEndpoint(ctx, r, h, false)
	}
	if r.count() != before {
		t.Errorf("IP literals were looked up")
	}
}

// A host whose provider reports a private SSH endpoint is never dialled: the
// lease fails with the reason, its host is destroyed, its machine avoided,
// and the job's next lease goes to another offer, whose name is resolved
// once and dialled at the address checked.
func TestPrivateEndpointRefused(t *testing.T) {
	r := &fakeResolver{answers: map[string][]string{"ssh2.mem.example": {"147.75.1.2"}}}
	obs := &refusalObs{}
	h := newHarness(t, func(c *provisioner.Config) {
		c.Endpoints = provisioner.EndpointPolicy{Resolver: r}
		c.Observer = obs
	})
	h.prov.behave = func(n int) memBehavior {
		if n == 1 {
			return memBehavior{sshHost: "10.1.2.3"}
		}
		return memBehavior{sshHost: "ssh2.mem.example"}
	}
	h.event("queued", 1, "g1")
	h.waitFor("online on another machine", func() bool { return len(h.leases(provisioner.StateIdle)) == 1 })
	first := h.leases(provisioner.StateReleased, provisioner.StateReleasing)
	want := "provider mem gave SSH endpoint 10.1.2.3:22, a private address; crabbox-runner connects only to public addresses (set providers.mem.allow_private_endpoints to allow)"
	if len(first) != 1 || first[0].Error != want || first[0].MachineID != "m-cheap" {
		t.Fatalf("refused lease: %s", h.describe())
	}
	ok := h.leases(provisioner.StateIdle)[0]
	if ok.MachineID != "m-dear" || ok.SSH.Host != "147.75.1.2" {
		t.Fatalf("replacement on %s at %s", ok.MachineID, ok.SSH.Addr())
	}
	for _, d := range h.boot.dials() {
		if d != "147.75.1.2:22" {
			t.Fatalf("dialled %s; every dial: %v", d, h.boot.dials())
		}
	}
	h.waitFor("the refused host destroyed", func() bool { _, _, destroyed := h.prov.counts(); return destroyed == 1 })
	if obs.n("mem") != 1 {
		t.Fatalf("refusals counted: %d", obs.n("mem"))
	}
}

func TestLeaseNowRefusesPrivateEndpoint(t *testing.T) {
	prov, gh := newMemProvider(), newMemGitHub()
	boot := &memBootstrapper{gh: gh}
	p, err := provisioner.New(provisioner.Config{
		Deployment: "act", Classes: []provisioner.Class{testClass()},
		Providers: map[string]provisioner.Provider{"mem": prov}, GitHub: gh, Bootstrapper: boot,
		PollInterval: 5 * time.Millisecond, Logger: testLogger(t),
		Endpoints: provisioner.EndpointPolicy{Hint: func(string) string { return "CRABBOX_ALLOW_PRIVATE_ENDPOINTS" }},
	})
	if err != nil {
		t.Fatal(err)
	}
	prov.behave = func(int) memBehavior { return memBehavior{sshHost: "169.254.169.254"} }
	_, err = p.LeaseNow(context.Background(), oneShotReq(10*time.Second))
	if err == nil || !strings.Contains(err.Error(), "169.254.169.254:22, a link-local address") ||
		!strings.Contains(err.Error(), "set CRABBOX_ALLOW_PRIVATE_ENDPOINTS to allow") {
		t.Fatalf("LeaseNow: %v", err)
	}
	// Both offers tried, each host destroyed, none dialled.
	if live, created, destroyed := prov.counts(); live != 0 || created != 2 || destroyed != 2 || len(boot.dials()) != 0 {
		t.Fatalf("instances live %d created %d destroyed %d; dials %v", live, created, destroyed, boot.dials())
	}
}

type refusalObs struct {
	phaseRecorder
	mu sync.Mutex
	by map[string]int
}

func (o *refusalObs) EndpointRefused(provider string) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.by == nil {
		o.by = map[string]int{}
	}
	o.by[provider]++
}

func (o *refusalObs) n(provider string) int {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.by[provider]
}
