package provisioner

import "net/netip"

// PublicAddr says why a is not a public unicast address a cloud host's SSH
// server can listen on ("a private address"), or "" when it is one. IPv4-
// mapped IPv6 addresses are judged as the IPv4 address they carry.
//
// The blocks come from IANA's special-purpose address registries
// (https://www.iana.org/assignments/iana-ipv4-special-registry and
// iana-ipv6-special-registry, RFC 6890): every block whose "Globally
// Reachable" is False is refused, and so are the blocks that are not unicast
// at all (multicast, RFC 5771 / RFC 4291) or not allocated to global unicast
// (for IPv6 everything outside 2000::/3, IANA's IPv6 Address Space
// registry). Where the registry says N/A (6to4, Teredo, the deprecated 6to4
// relay anycast) the stricter reading is taken: 6to4 is judged by the IPv4
// address it embeds, the others are refused.
func PublicAddr(a netip.Addr) string {
	a = a.Unmap()
	switch {
	case !a.IsValid():
		return "not an IP address"
	case a.IsUnspecified():
		return "the unspecified address"
	case a.IsLoopback():
		return "a loopback address"
	case a.IsPrivate():
		return "a private address"
	case a.IsLinkLocalUnicast():
		return "a link-local address"
	case a.IsMulticast():
		return "a multicast address"
	}
	if a.Is4() {
		for _, b := range special4 {
			if b.p.Contains(a) {
				return b.why
			}
		}
		return ""
	}
	if !global6.Contains(a) {
		return "an IPv6 address outside global unicast (2000::/3)"
	}
	for _, b := range global6Exceptions {
		if b.Contains(a) {
			return ""
		}
	}
	if sixToFour.Contains(a) {
		// 2002:AABB:CCDD::/48 is the 6to4 network of IPv4 AA.BB.CC.DD.
		b := a.As16()
		if why := PublicAddr(netip.AddrFrom4([4]byte{b[2], b[3], b[4], b[5]})); why != "" {
			return "a 6to4 address of " + why
		}
		return ""
	}
	for _, b := range special6 {
		if b.p.Contains(a) {
			return b.why
		}
	}
	return ""
}

type specialBlock struct {
	p   netip.Prefix
	why string
}

// special4: IANA IPv4 Special-Purpose Address Registry entries not globally
// reachable, beyond those netip names (loopback, RFC 1918 private,
// link-local, multicast).
var special4 = []specialBlock{
	{netip.MustParsePrefix("0.0.0.0/8"), `a "this network" address (0.0.0.0/8)`},
	{netip.MustParsePrefix("100.64.0.0/10"), "a shared (carrier-grade NAT) address (100.64.0.0/10)"},
	// 192.0.0.9 and 192.0.0.10 are anycast services (PCP, TURN), no host
	// one would rent; the whole block is refused.
	{netip.MustParsePrefix("192.0.0.0/24"), "an IETF protocol assignment (192.0.0.0/24)"},
	{netip.MustParsePrefix("192.0.2.0/24"), "a documentation address (192.0.2.0/24)"},
	{netip.MustParsePrefix("192.88.99.0/24"), "a deprecated 6to4 relay anycast address (192.88.99.0/24)"},
	{netip.MustParsePrefix("198.18.0.0/15"), "a benchmarking address (198.18.0.0/15)"},
	{netip.MustParsePrefix("198.51.100.0/24"), "a documentation address (198.51.100.0/24)"},
	{netip.MustParsePrefix("203.0.113.0/24"), "a documentation address (203.0.113.0/24)"},
	{netip.MustParsePrefix("255.255.255.255/32"), "the limited broadcast address"},
	{netip.MustParsePrefix("240.0.0.0/4"), "a reserved address (240.0.0.0/4)"},
}

var (
	global6   = netip.MustParsePrefix("2000::/3")
	sixToFour = netip.MustParsePrefix("2002::/16")
	// The globally reachable sub-blocks of 2001::/23 (IETF protocol
	// assignments), as the IPv6 registry lists them.
	global6Exceptions = []netip.Prefix{
		netip.MustParsePrefix("2001:1::1/128"),   // PCP anycast
		netip.MustParsePrefix("2001:1::2/128"),   // TURN anycast
		netip.MustParsePrefix("2001:1::3/128"),   // DNS-SD SRP anycast
		netip.MustParsePrefix("2001:3::/32"),     // AMT
		netip.MustParsePrefix("2001:4:112::/48"), // AS112-v6
		netip.MustParsePrefix("2001:20::/28"),    // ORCHIDv2
		netip.MustParsePrefix("2001:30::/28"),    // DRIP DETs
	}
	// special6: registry entries inside 2000::/3 not globally reachable
	// (the rest of the registry lies outside it: ::1, ::/128, ::ffff:0:0/96,
	// 64:ff9b::/96, 64:ff9b:1::/48, 100::/64, 5f00::/16, fc00::/7, fe80::/10).
	special6 = []specialBlock{
		{netip.MustParsePrefix("2001::/32"), "a Teredo address (2001::/32)"},
		{netip.MustParsePrefix("2001:db8::/32"), "a documentation address (2001:db8::/32)"},
		{netip.MustParsePrefix("2001::/23"), "an IETF protocol assignment (2001::/23)"},
		{netip.MustParsePrefix("3fff::/20"), "a documentation address (3fff::/20)"},
	}
)
