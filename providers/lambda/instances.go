package lambda

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/crabbox/crabbox-runner/provisioner"
)

// cleanupTimeout bounds the clean-up calls made after a failure, which run
// even when the caller's context has ended.
const cleanupTimeout = 30 * time.Second

// Get returns the instance's state: booting is pending; active with an IP is
// running with SSH on port 22 of that IP; unhealthy is failed, preempted
// preempted, terminating and terminated stopped (none of them ever serves
// a job again);
// unknown states are pending, so a state Lambda adds later runs into the
// boot timeout rather than a wrong decision. 404 is ErrNotFound.
//
// Many leases poll their hosts while they boot, and each poll would cost a
// second of the shared rate limit; so one GET /instances, reused for
// Options.StatusCacheTTL, answers for every instance it lists, and only an
// instance it does not list is asked for by id.
func (p *Provider) Get(ctx context.Context, id string) (*provisioner.Instance, error) {
	if li, ok, err := p.statuses.lookup(ctx, p, id); err == nil && ok {
		return p.toInstance(li), nil
	}
	li, err := p.client.Instance(ctx, id)
	if notFound(err) {
		return nil, fmt.Errorf("lambda: instance %s: %w", id, provisioner.ErrNotFound)
	}
	if err != nil {
		return nil, err
	}
	return p.toInstance(li), nil
}

func notFound(err error) bool {
	return StatusOf(err) == http.StatusNotFound || IsCode(err, CodeNotFound)
}

func (p *Provider) toInstance(li *Instance) *provisioner.Instance {
	inst := &provisioner.Instance{
		Provider:     Name,
		ID:           li.ID,
		PricePerHour: float64(li.InstanceType.PriceCentsPerHour) / 100,
		GPU:          gpuName(li.InstanceType),
		Region:       li.Region.Name,
	}
	inst.Marker, _ = markerOf(li)
	switch li.Status {
	case StatusBooting:
		inst.Status = provisioner.InstancePending
	case StatusActive:
		if li.IP == "" {
			inst.Status, inst.StatusMessage = provisioner.InstancePending, "active, but no IP address yet"
			break
		}
		inst.Status = provisioner.InstanceRunning
		host, port := li.IP, 22
		if p.opts.SSHAddress != nil {
			host, port = p.opts.SSHAddress(li.IP)
		}
		inst.SSH = provisioner.Endpoint{Host: host, Port: port, User: p.opts.SSHUser}
	case StatusPreempted:
		// Lambda took the host back (lambda-openapi.json InstanceStatus
		// enum; lambda-cloud-api.md §6): the market, not the machine.
		inst.Status, inst.StatusMessage = provisioner.InstancePreempted, "Lambda reports the instance "+li.Status
	case StatusTerminating, StatusTerminated:
		// Not by us when the provisioner still holds the lease: Lambda or
		// the account's console ended it.
		inst.Status, inst.StatusMessage = provisioner.InstanceStopped, "Lambda reports the instance "+li.Status
	case StatusUnhealthy:
		inst.Status, inst.StatusMessage = provisioner.InstanceFailed, "Lambda reports the instance "+li.Status
	default:
		inst.Status, inst.StatusMessage = provisioner.InstancePending, fmt.Sprintf("unknown Lambda status %q", li.Status)
	}
	return inst
}

// ListOwned lists every instance and keeps those whose marker (in the name,
// or in the tags) names the deployment. Terminated instances are left out:
// they cost nothing and there is nothing left to destroy.
func (p *Provider) ListOwned(ctx context.Context, deployment string) ([]*provisioner.Instance, error) {
	if deployment == "" {
		return nil, nil
	}
	all, err := p.client.Instances(ctx)
	if err != nil {
		return nil, err
	}
	p.statuses.store(all)
	var out []*provisioner.Instance
	for i := range all {
		li := &all[i]
		if li.Status == StatusTerminated {
			continue
		}
		if m, ok := markerOf(li); ok && m.Deployment == deployment {
			out = append(out, p.toInstance(li))
		}
	}
	return out, nil
}

// Destroy terminates the instance (already gone counts as done) and has the
// lease's SSH key deleted, found by name (Lambda deletes keys by id only).
//
// Lambda refuses to terminate an instance whose VM has not launched yet
// (its actions.terminate says vm-has-not-launched while it boots): Destroy
// then returns an error and the provisioner tries again. An instance
// already terminating counts as done.
//
// Lambda also refuses to delete a key that an instance still uses, and a
// terminated instance is "terminating" for a while; so the key is deleted
// at once only when the instance is already gone, and otherwise left to
// the pending-key loop (keys.go), which deletes it once no instance lists
// it. A key deletion never fails the destroy.
func (p *Provider) Destroy(ctx context.Context, inst *provisioner.Instance) error {
	if inst == nil || inst.ID == "" {
		return nil
	}
	var keyNames []string
	if !inst.Marker.IsZero() {
		keyNames = append(keyNames, sshKeyName(inst.Marker))
	}
	p.statuses.forget(inst.ID)
	terminated, err := p.client.Terminate(ctx, inst.ID)
	gone := false
	if err != nil {
		li, gerr := p.client.Instance(ctx, inst.ID)
		switch {
		case notFound(err), notFound(gerr):
			gone = true
		case gerr != nil:
			return fmt.Errorf("lambda: terminating %s: %w", inst.ID, err)
		case li.Status == StatusTerminated:
			gone, terminated = true, []Instance{*li}
		case li.Status == StatusTerminating:
			terminated = []Instance{*li}
		case li.Status == StatusBooting:
			return fmt.Errorf("lambda: terminating %s: the instance is still booting and Lambda terminates it only once its VM has launched (%s); try again shortly: %w",
				inst.ID, li.Actions.Terminate.ReasonCode, err)
		default:
			return fmt.Errorf("lambda: terminating %s (%s): %w", inst.ID, li.Status, err)
		}
	}
	for _, li := range terminated {
		m, ok := markerOf(&li)
		if !ok {
			continue
		}
		// Only the key made for this instance's lease, never a key a person
		// attached.
		if n := sshKeyName(m); slices.Contains(li.SSHKeyNames, n) && !slices.Contains(keyNames, n) {
			keyNames = append(keyNames, n)
		}
	}
	p.log.Info("lambda: instance terminated", "instance_id", inst.ID, "lease_id", inst.Marker.LeaseID)
	if len(keyNames) == 0 {
		return nil
	}
	pending := keyNames
	if gone {
		done, derr := p.deleteUnusedKeys(ctx, keyNames)
		if derr != nil {
			p.log.Warn("lambda: deleting the SSH key of a destroyed instance; retried later", "instance_id", inst.ID, "error", derr.Error())
		}
		pending = slices.DeleteFunc(slices.Clone(keyNames), func(n string) bool { return slices.Contains(done, n) })
	}
	p.keys.add(p, pending)
	return nil
}

// ensureKey registers the public key under the name. A key of that name left
// by an earlier attempt of the same lease is reused when it is the same key,
// and replaced when it is not (its private half died with the process that
// made it).
func (p *Provider) ensureKey(ctx context.Context, name, publicKey string) (*SSHKey, error) {
	key, err := p.client.AddSSHKey(ctx, name, publicKey)
	if err == nil {
		return key, nil
	}
	if StatusOf(err) != http.StatusBadRequest {
		return nil, err
	}
	keys, lerr := p.client.SSHKeys(ctx)
	if lerr != nil {
		return nil, errors.Join(err, lerr)
	}
	i := slices.IndexFunc(keys, func(k SSHKey) bool { return k.Name == name })
	if i < 0 {
		return nil, err
	}
	if sameKey(keys[i].PublicKey, publicKey) {
		return &keys[i], nil
	}
	if derr := p.client.DeleteSSHKey(ctx, keys[i].ID); derr != nil {
		return nil, errors.Join(err, derr)
	}
	return p.client.AddSSHKey(ctx, name, publicKey)
}

// sameKey compares two authorized_keys lines by key material, ignoring
// comments.
func sameKey(a, b string) bool {
	ka, _, _, _, err1 := ssh.ParseAuthorizedKey([]byte(a))
	kb, _, _, _, err2 := ssh.ParseAuthorizedKey([]byte(b))
	if err1 != nil || err2 != nil {
		return strings.TrimSpace(a) == strings.TrimSpace(b)
	}
	return bytes.Equal(ka.Marshal(), kb.Marshal())
}

// deleteKey deletes a key after a failed launch, on its own deadline so a
// cancelled create still cleans up. A failure is logged: the key is
// harmless without its private half, and Destroy of the lease finds it by
// name.
func (p *Provider) deleteKey(ctx context.Context, id string) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), cleanupTimeout)
	defer cancel()
	if err := p.client.DeleteSSHKey(ctx, id); err != nil {
		p.log.Warn("lambda: deleting the SSH key of a failed launch", "key_id", id, "error", err.Error())
	}
}
