package lambda

import (
	"context"
	"sync"
	"time"

	"golang.org/x/sync/singleflight"
)

// statusCache is the last GET /instances, shared by every Get while it is
// fresh. Concurrent Gets that find it stale wait for one request together.
type statusCache struct {
	group singleflight.Group

	mu   sync.Mutex
	byID map[string]Instance
	at   time.Time
}

// lookup returns the instance from a list younger than the provider's
// StatusCacheTTL, fetching a new list when needed. ok is false when the
// list does not have it: the caller asks for it by id.
func (c *statusCache) lookup(ctx context.Context, p *Provider, id string) (*Instance, bool, error) {
	ttl := p.opts.StatusCacheTTL
	if ttl <= 0 {
		return nil, false, nil
	}
	c.mu.Lock()
	fresh := c.byID != nil && time.Since(c.at) < ttl
	c.mu.Unlock()
	if !fresh {
		ch := c.group.DoChan("list", func() (any, error) {
			// Not the caller's context: the request serves every waiter.
			ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), p.client.http.Timeout)
			defer cancel()
			all, err := p.client.Instances(ctx)
			if err == nil {
				c.store(all)
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
	li, ok := c.byID[id]
	if !ok {
		return nil, false, nil
	}
	return &li, true, nil
}

func (c *statusCache) store(all []Instance) {
	byID := make(map[string]Instance, len(all))
	for _, li := range all {
		byID[li.ID] = li
	}
	c.mu.Lock()
	c.byID, c.at = byID, time.Now()
	c.mu.Unlock()
}

// forget drops an instance whose state is about to change at our hand.
func (c *statusCache) forget(id string) {
	c.mu.Lock()
	delete(c.byID, id)
	c.mu.Unlock()
}
