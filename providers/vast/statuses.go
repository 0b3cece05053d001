package vast

import (
	"context"
	"sync"
	"time"

	"golang.org/x/sync/singleflight"
)

// DefaultStatusTTL is how long one listing answers Get. The provisioner
// looks at each booting host every few seconds; with one GET per host a
// burst of boots hits show instance's 2 s limit at once, while one listing
// (1 s limit, 25 a page) serves them all. dstack caches Vast's instance
// list for 3 s for the same reason (dstackai/dstack
// src/dstack/_internal/core/backends/vastai/api_client.py).
const DefaultStatusTTL = 3 * time.Second

// statusCache is the last listing of the account's instances, shared by
// every Get while it is fresh. Concurrent Gets that find it stale wait for
// one listing together.
type statusCache struct {
	ttl   time.Duration
	group singleflight.Group

	mu   sync.Mutex
	byID map[int64]Instance
	at   time.Time // when the listing was asked for
}

// lookup returns the instance from a listing younger than the TTL and
// asked for after notBefore (the instance's create: an older listing
// cannot know it), listing again when needed. ok is false when the
// listing does not have it: the caller asks for it by id.
func (c *statusCache) lookup(ctx context.Context, p *Provider, id int64, notBefore time.Time) (*Instance, bool, error) {
	if c.ttl <= 0 {
		return nil, false, nil
	}
	c.mu.Lock()
	fresh := c.byID != nil && time.Since(c.at) < c.ttl && !c.at.Before(notBefore)
	c.mu.Unlock()
	if !fresh {
		ch := c.group.DoChan("list", func() (any, error) {
			// Not the caller's context: the listing serves every waiter.
			lctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Minute)
			defer cancel()
			at := time.Now()
			all, err := p.listAll(lctx)
			if err == nil {
				c.store(all, at)
			}
			return nil, err
		})
		select {
		case <-ctx.Done():
			return nil, false, ctx.Err()
		case r := <-ch:
			if r.Err != nil {
				return nil, false, r.Err
			}
		}
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	in, ok := c.byID[id]
	if !ok {
		return nil, false, nil
	}
	return &in, true, nil
}

func (c *statusCache) store(all []Instance, at time.Time) {
	m := make(map[int64]Instance, len(all))
	for _, in := range all {
		m[in.ID] = in
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if at.Before(c.at) {
		return
	}
	c.byID, c.at = m, at
}

// drop forgets one instance (destroyed here), so the next Get does not
// read it from a listing made before.
func (c *statusCache) drop(id int64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	delete(c.byID, id)
}

// listAll is every instance of the account, page by page (25 a page is the
// v1 list's maximum).
func (p *Provider) listAll(ctx context.Context) ([]Instance, error) {
	return p.client.ListInstances(ctx, nil)
}
