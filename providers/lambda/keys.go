package lambda

import (
	"context"
	"errors"
	"slices"
	"sync"
	"time"
)

// pendingKeys are lease SSH keys waiting to be deleted. Lambda refuses to
// delete a key while an instance that uses it still exists, and a
// terminated instance takes a while to go ("terminating" first), so the
// key of a destroyed lease is deleted when no instance lists it any more:
// tried once right after terminate, then by a background loop every
// Options.KeyRetryInterval for at most Options.KeyRetryFor. The loop runs
// only while keys are pending; each pass costs one GET /instances and one
// GET /ssh-keys for all of them, plus a DELETE per key.
type pendingKeys struct {
	mu      sync.Mutex
	since   map[string]time.Time // key name → when it became pending
	running bool
}

// add makes the names pending and starts the loop if it is not running.
func (k *pendingKeys) add(p *Provider, names []string) {
	if len(names) == 0 {
		return
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.since == nil {
		k.since = map[string]time.Time{}
	}
	now := time.Now()
	for _, n := range names {
		if _, ok := k.since[n]; !ok {
			k.since[n] = now
		}
	}
	if !k.running {
		k.running = true
		go k.loop(p)
	}
}

// forget drops a name whose key is in use again: a later attempt of the
// same lease registered it for its launch.
func (k *pendingKeys) forget(name string) {
	k.mu.Lock()
	defer k.mu.Unlock()
	delete(k.since, name)
}

// PendingKeys returns the names of the SSH keys still waiting to be deleted.
func (p *Provider) PendingKeys() []string {
	p.keys.mu.Lock()
	defer p.keys.mu.Unlock()
	out := make([]string, 0, len(p.keys.since))
	for n := range p.keys.since {
		out = append(out, n)
	}
	slices.Sort(out)
	return out
}

func (k *pendingKeys) loop(p *Provider) {
	for {
		time.Sleep(p.opts.KeyRetryInterval)
		k.mu.Lock()
		var names []string
		for n, since := range k.since {
			if time.Since(since) > p.opts.KeyRetryFor {
				p.log.Error("lambda: gave up deleting an SSH key whose instance did not go; delete it by hand", "key_name", n,
					"pending_for", time.Since(since).Round(time.Second))
				delete(k.since, n)
				continue
			}
			names = append(names, n)
		}
		if len(names) == 0 {
			k.running = false
			k.mu.Unlock()
			return
		}
		k.mu.Unlock()
		ctx, cancel := context.WithTimeout(context.Background(), cleanupTimeout)
		done, err := p.deleteUnusedKeys(ctx, names)
		cancel()
		if err != nil {
			p.log.Warn("lambda: retrying SSH key deletions", "pending", len(names), "error", err.Error())
		}
		k.mu.Lock()
		for _, n := range done {
			delete(k.since, n)
		}
		k.mu.Unlock()
	}
}

// deleteUnusedKeys deletes the keys of those names that no instance still
// listed by Lambda uses. It returns the names dealt with: deleted, or
// already gone.
func (p *Provider) deleteUnusedKeys(ctx context.Context, names []string) ([]string, error) {
	all, err := p.client.Instances(ctx)
	if err != nil {
		return nil, err
	}
	inUse := map[string]bool{}
	for _, li := range all {
		if li.Status == StatusTerminated {
			continue
		}
		for _, n := range li.SSHKeyNames {
			inUse[n] = true
		}
	}
	var free []string
	for _, n := range names {
		if !inUse[n] {
			free = append(free, n)
		}
	}
	if len(free) == 0 {
		return nil, nil
	}
	keys, err := p.client.SSHKeys(ctx)
	if err != nil {
		return nil, err
	}
	var errs []error
	done := slices.Clone(free)
	for _, key := range keys {
		if !slices.Contains(free, key.Name) {
			continue
		}
		if err := p.client.DeleteSSHKey(ctx, key.ID); err != nil && !notFound(err) {
			errs = append(errs, err)
			done = slices.DeleteFunc(done, func(n string) bool { return n == key.Name })
		}
	}
	return done, errors.Join(errs...)
}
