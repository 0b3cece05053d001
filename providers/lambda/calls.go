package lambda

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
)

// InstanceTypes lists every instance type with its price and the regions
// that have capacity for it now (GET /instance-types). Lambda answers with a
// map keyed by the type's name.
func (c *Client) InstanceTypes(ctx context.Context) (map[string]InstanceTypeAvailability, error) {
	out := map[string]InstanceTypeAvailability{}
	if err := c.do(ctx, call{method: http.MethodGet, path: "/instance-types", out: &out}); err != nil {
		return nil, err
	}
	return out, nil
}

// Images lists the machine images, once per region they exist in.
func (c *Client) Images(ctx context.Context) ([]Image, error) {
	var out []Image
	if err := c.do(ctx, call{method: http.MethodGet, path: "/images", out: &out}); err != nil {
		return nil, err
	}
	return out, nil
}

// SSHKeys lists the account's SSH keys.
func (c *Client) SSHKeys(ctx context.Context) ([]SSHKey, error) {
	var out []SSHKey
	if err := c.do(ctx, call{method: http.MethodGet, path: "/ssh-keys", out: &out}); err != nil {
		return nil, err
	}
	return out, nil
}

// AddSSHKey registers a public key under a name (1-64 characters).
func (c *Client) AddSSHKey(ctx context.Context, name, publicKey string) (*SSHKey, error) {
	if name == "" || len(name) > 64 {
		return nil, fmt.Errorf("lambda: SSH key name %q must be 1-64 characters", name)
	}
	if publicKey == "" || len(publicKey) > 4096 {
		return nil, errors.New("lambda: SSH public key must be 1-4096 characters")
	}
	var out SSHKey
	req := AddSSHKeyRequest{Name: name, PublicKey: publicKey}
	if err := c.do(ctx, call{method: http.MethodPost, path: "/ssh-keys", body: req, out: &out}); err != nil {
		return nil, err
	}
	if out.ID == "" {
		return nil, fmt.Errorf("lambda: POST %s/ssh-keys: the answer has no key id", apiPrefix)
	}
	return &out, nil
}

// DeleteSSHKey deletes a key by id (keys are launched by name but deleted
// by id).
func (c *Client) DeleteSSHKey(ctx context.Context, id string) error {
	if id == "" {
		return errors.New("lambda: DeleteSSHKey needs an id")
	}
	return c.do(ctx, call{method: http.MethodDelete, path: "/ssh-keys/" + url.PathEscape(id)})
}

// Launch starts one instance and returns its id. The call waits for the
// launch rate limit (one per 12 s by default) and is not retried after a
// server error: the launch may have happened, and the marker in the
// instance's name lets the caller find and destroy it.
func (c *Client) Launch(ctx context.Context, req LaunchRequest) (string, error) {
	if len(req.SSHKeyNames) != 1 {
		return "", fmt.Errorf("lambda: launch needs exactly one SSH key name, got %d", len(req.SSHKeyNames))
	}
	if len(req.UserData) > MaxUserDataBytes {
		return "", fmt.Errorf("lambda: user-data is %d bytes, Lambda accepts at most %d", len(req.UserData), MaxUserDataBytes)
	}
	var out LaunchResponse
	if err := c.do(ctx, call{method: http.MethodPost, path: "/instance-operations/launch", body: req, out: &out, launch: true}); err != nil {
		return "", err
	}
	if len(out.InstanceIDs) != 1 || out.InstanceIDs[0] == "" {
		return "", fmt.Errorf("lambda: launch answered %d instance ids, want 1", len(out.InstanceIDs))
	}
	return out.InstanceIDs[0], nil
}

// Instance returns one instance. An unknown id is an APIError with
// CodeNotFound (404).
func (c *Client) Instance(ctx context.Context, id string) (*Instance, error) {
	if id == "" {
		return nil, errors.New("lambda: Instance needs an id")
	}
	var out Instance
	if err := c.do(ctx, call{method: http.MethodGet, path: "/instances/" + url.PathEscape(id), out: &out}); err != nil {
		return nil, err
	}
	return &out, nil
}

// Instances lists the account's instances. Lambda has no filter by name or
// tag, so callers filter what comes back.
func (c *Client) Instances(ctx context.Context) ([]Instance, error) {
	var out []Instance
	if err := c.do(ctx, call{method: http.MethodGet, path: "/instances", out: &out}); err != nil {
		return nil, err
	}
	return out, nil
}

// Terminate terminates instances and returns them as Lambda reports them
// after the call (usually "terminating").
func (c *Client) Terminate(ctx context.Context, ids ...string) ([]Instance, error) {
	if len(ids) == 0 {
		return nil, errors.New("lambda: Terminate needs an instance id")
	}
	var out terminateResponse
	if err := c.do(ctx, call{method: http.MethodPost, path: "/instance-operations/terminate", body: terminateRequest{InstanceIDs: ids}, out: &out}); err != nil {
		return nil, err
	}
	return out.TerminatedInstances, nil
}
