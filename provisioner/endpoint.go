package provisioner

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strings"
)

// Where crabbox-runner connects. A provider's answer says where a host's SSH
// server listens, and on a marketplace that answer comes in part from the
// host's operator. Dialled as given, it would let whoever runs a host make
// us probe our own network (10.0.0.0/8, 169.254.169.254, loopback services)
// and read the results in the lease's errors. So before any SSH connection
// the endpoint is resolved once, every address it resolves to must be a
// public unicast address, and the connection goes to the checked address,
// never to the name again (no second lookup for DNS rebinding to answer).
// A provider whose hosts are private by nature (local) or a deployment that
// really rents on a private network says so in EndpointPolicy.AllowPrivate.

// ErrEndpointRefused: a host's SSH endpoint is not somewhere a cloud host can
// be. Another poll will not change it; the host is destroyed and the machine
// avoided like any bad host.
var ErrEndpointRefused = errors.New("SSH endpoint refused")

// Resolver looks a host name up; *net.Resolver is one. Tests pass a fake:
// they run without DNS.
type Resolver interface {
	LookupNetIP(ctx context.Context, network, host string) ([]netip.Addr, error)
}

// EndpointPolicy says which SSH endpoints may be dialled.
type EndpointPolicy struct {
	// AllowPrivate names the providers whose hosts may be on loopback,
	// private and other non-public addresses.
	AllowPrivate map[string]bool
	// Hint, when set, says how the operator allows a provider's private
	// endpoints, for the refusal's message (serve: the config key).
	Hint func(provider string) string
	// Resolver resolves host names; net.DefaultResolver when nil.
	Resolver Resolver
}

// EndpointObserver is told of every endpoint refused (a metric).
type EndpointObserver interface {
	EndpointRefused(provider string)
}

// dialEndpoint returns the endpoint to dial for a host of provider: e with
// its host replaced by the checked address. An error wrapping
// ErrEndpointRefused when it may not be dialled; any other error (a lookup
// that failed) may pass with time.
func (p *Provisioner) dialEndpoint(ctx context.Context, provider string, e Endpoint) (Endpoint, error) {
	pol := p.cfg.Endpoints
	addr, err := ResolveEndpoint(ctx, pol.Resolver, e.Host, pol.AllowPrivate[provider])
	var refused *RefusedError
	if errors.As(err, &refused) {
		hint := "providers." + provider + ".allow_private_endpoints"
		if pol.Hint != nil {
			hint = pol.Hint(provider)
		}
		if o, ok := p.cfg.Observer.(EndpointObserver); ok {
			o.EndpointRefused(provider)
		}
		return e, fmt.Errorf("provider %s gave SSH endpoint %s, %w; crabbox-runner connects only to public addresses (set %s to allow)",
			provider, e.Addr(), refused, hint)
	}
	if err != nil {
		return e, fmt.Errorf("SSH endpoint %s: %w", e.Addr(), err)
	}
	e.Host = addr.String()
	return e, nil
}

// RefusedError is an endpoint that may not be dialled; it is
// ErrEndpointRefused.
type RefusedError struct {
	Host string     // as the provider gave it
	Addr netip.Addr // the address refused (Host's, or one it resolves to)
	Why  string     // "a private address"
}

func (e *RefusedError) Error() string {
	if e.Addr.String() != e.Host {
		return fmt.Sprintf("which resolves to %s, %s", e.Addr, e.Why)
	}
	return e.Why
}

func (e *RefusedError) Is(target error) bool { return target == ErrEndpointRefused }

// ResolveEndpoint resolves host once (an IP literal is not looked up) and
// returns the address to dial: the first one, after every one passed
// PublicAddr unless allowPrivate. A refusal is a *RefusedError.
func ResolveEndpoint(ctx context.Context, r Resolver, host string, allowPrivate bool) (netip.Addr, error) {
	host = strings.TrimSuffix(strings.TrimPrefix(host, "["), "]")
	if host == "" {
		return netip.Addr{}, errors.New("no host")
	}
	var addrs []netip.Addr
	if a, err := netip.ParseAddr(host); err == nil {
		addrs = []netip.Addr{a}
	} else {
		if r == nil {
			r = net.DefaultResolver
		}
		if addrs, err = r.LookupNetIP(ctx, "ip", host); err != nil {
			return netip.Addr{}, fmt.Errorf("looking up %s: %w", host, err)
		}
		if len(addrs) == 0 {
			return netip.Addr{}, fmt.Errorf("looking up %s: no address", host)
		}
	}
	for i, a := range addrs {
		// A zone belongs to a link, and a mapped address is the IPv4 one.
		a = a.Unmap().WithZone("")
		if !a.IsValid() {
			return netip.Addr{}, &RefusedError{Host: host, Addr: a, Why: "an invalid address"}
		}
		addrs[i] = a
		if allowPrivate {
			continue
		}
		if why := PublicAddr(a); why != "" {
			return netip.Addr{}, &RefusedError{Host: host, Addr: a, Why: why}
		}
	}
	return addrs[0], nil
}
