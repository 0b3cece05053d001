package vast

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/crabbox/crabbox-runner/provisioner"
)

var _ provisioner.Adopter = (*Provider)(nil)

// Adopt finishes an instance that serve found by its lease's marker after
// it died between the create call and its answer: the lease's SSH key was
// never attached. The key is attached now, and again once the instance
// runs (Get does that for keys still pending); a refusal while the
// container is not running yet is no failure, the key stays pending.
func (p *Provider) Adopt(ctx context.Context, inst *provisioner.Instance, req provisioner.CreateRequest) error {
	id, err := strconv.ParseInt(inst.ID, 10, 64)
	if err != nil {
		return fmt.Errorf("vast: instance id %q: %w", inst.ID, err)
	}
	key := strings.TrimSpace(req.SSHPublicKey)
	p.mu.Lock()
	p.keys[id] = key
	p.mu.Unlock()
	if err := p.client.AttachSSHKey(ctx, id, key); err != nil {
		if errors.Is(err, provisioner.ErrNotFound) {
			p.forget(id)
			return fmt.Errorf("vast: attaching the lease's SSH key to adopted instance %d: %w", id, err)
		}
		p.log.Debug("vast: SSH key not attached to the adopted instance yet; will attach once it runs", "instance_id", id, "error", err)
	}
	return nil
}
