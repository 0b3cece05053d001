package vast

import (
	"context"
	"encoding/json"
	"sync"
	"time"

	"golang.org/x/sync/singleflight"
)

// DefaultSearchTTL is how long one offer search answers every lease that
// asks the same question. A burst of leases of one class would otherwise
// send one search each, against a limit of one every couple of seconds;
// an offer taken meanwhile is answered 404 no_such_ask by create, which the
// provisioner takes as "try the next one".
const DefaultSearchTTL = 5 * time.Second

// searchCache shares offer searches among concurrent leases: identical
// queries within the TTL get one answer, and concurrent identical queries
// wait for one request together. Offers rented or found gone here are left
// out of the answers for a while, since the search that listed them may be
// older than the create that took them. Which lease tries which offer is
// the provisioner's to decide (Offer.Exclusive).
type searchCache struct {
	ttl   time.Duration
	group singleflight.Group

	mu      sync.Mutex
	entries map[string]searchEntry
	gone    map[int64]time.Time // offer id → when it was taken
}

type searchEntry struct {
	offers []Offer
	at     time.Time
}

// search answers q from the cache or with one request.
func (c *searchCache) search(ctx context.Context, cl *Client, q SearchQuery) ([]Offer, error) {
	if c.ttl <= 0 {
		return cl.SearchOffers(ctx, q)
	}
	b, err := json.Marshal(q)
	if err != nil {
		return nil, err
	}
	key := string(b)
	c.mu.Lock()
	e, ok := c.entries[key]
	c.mu.Unlock()
	if !ok || time.Since(e.at) >= c.ttl {
		ch := c.group.DoChan(key, func() (any, error) {
			// Not the caller's context: the search serves every waiter.
			sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Minute)
			defer cancel()
			at := time.Now()
			offers, err := cl.SearchOffers(sctx, q)
			if err != nil {
				return nil, err
			}
			c.mu.Lock()
			if c.entries == nil {
				c.entries = map[string]searchEntry{}
			}
			for k, old := range c.entries {
				if time.Since(old.at) >= c.ttl {
					delete(c.entries, k)
				}
			}
			c.entries[key] = searchEntry{offers: offers, at: at}
			c.mu.Unlock()
			return offers, nil
		})
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case r := <-ch:
			if r.Err != nil {
				return nil, r.Err
			}
			e = searchEntry{offers: r.Val.([]Offer)}
		}
	}
	return c.withoutGone(e.offers), nil
}

// taken marks an offer as rented (or gone): answers leave it out for two
// TTLs, longer than any cached search that may still list it.
func (c *searchCache) taken(offerID int64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.gone == nil {
		c.gone = map[int64]time.Time{}
	}
	c.gone[offerID] = time.Now()
}

func (c *searchCache) withoutGone(offers []Offer) []Offer {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make([]Offer, 0, len(offers))
	for id, at := range c.gone {
		if time.Since(at) >= 2*c.ttl {
			delete(c.gone, id)
		}
	}
	for _, o := range offers {
		if _, gone := c.gone[o.ID]; !gone {
			out = append(out, o)
		}
	}
	return out
}
