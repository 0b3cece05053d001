package provisioner

import (
	"context"
	"errors"
	"fmt"
)

// The cloud and SSH steps of a lease, without the store: the provision
// worker records around them, and the one-shot lease of Action mode calls
// them directly.

// createRequest builds the create call for one offer: the marker, the
// lease's public key, and cloud-init or a start script as the provider runs.
func (p *Provisioner) createRequest(offer Offer, class *Class, marker Marker, creds *Credentials) (CreateRequest, error) {
	caps := p.cfg.Providers[offer.Provider].Capabilities()
	req := CreateRequest{
		Offer: offer, Class: *class, Marker: marker,
		SSHPublicKey: creds.ClientPublicKey,
		OnStart:      p.cfg.Bootstrapper.OnStart(creds),
	}
	if caps.HostKeyInjection {
		req.HostKey = creds.HostKey
	}
	if caps.CloudInit {
		ud, err := p.cfg.Bootstrapper.UserData(creds)
		if err != nil {
			return req, err
		}
		req.UserData = ud
	}
	return req, nil
}

// expectedHostKey is the host key a new host must present: ours where the
// provider installs it, else none yet (the first one seen is pinned).
func (p *Provisioner) expectedHostKey(provider string, creds *Credentials) string {
	if p.cfg.Providers[provider].Capabilities().HostKeyInjection && creds.HostKey != nil {
		return creds.HostKey.PublicKey
	}
	return ""
}

// checkBoot looks once at a booting host. It returns the instance and the
// host key once SSH works with the expected key; a failure when the host
// will never come up (gone, failed, wrong host key); or neither, with the
// reason it is not ready yet in err.
func (p *Provisioner) checkBoot(ctx context.Context, provider string, prov Provider, id string, creds *Credentials, knownHostKey string) (inst *Instance, hostKey string, failure, err error) {
	inst, err = prov.Get(ctx, id)
	switch {
	case errors.Is(err, ErrNotFound):
		return nil, "", fmt.Errorf("instance %s disappeared while booting", id), nil
	case err != nil:
		return nil, "", nil, err
	case inst.Status.Ended():
		return nil, "", fmt.Errorf("instance %s failed to boot: %s", inst.ID, inst.StatusMessage), nil
	case inst.Status != InstanceRunning || inst.SSH.Host == "":
		return nil, "", nil, fmt.Errorf("instance %s is %s", inst.ID, inst.Status)
	}
	// The endpoint is checked, and resolved once, before any connection:
	// a refused one is never dialled, and the host is given up.
	ep, err := p.dialEndpoint(ctx, provider, inst.SSH)
	if errors.Is(err, ErrEndpointRefused) {
		return nil, "", err, nil
	}
	if err != nil {
		return nil, "", nil, err
	}
	inst.SSH = ep
	key, err := p.cfg.Bootstrapper.Probe(ctx, ProbeRequest{Endpoint: ep, Credentials: creds, KnownHostKey: knownHostKey})
	if errors.Is(err, ErrHostKeyMismatch) {
		return nil, "", err, nil
	}
	if err != nil {
		return nil, "", nil, err
	}
	return inst, key, nil, nil
}
