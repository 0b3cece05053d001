package github

// The deliveries sweep, resumed where it stopped. GET /app/hook/deliveries
// lists newest first with cursor paging (reference §2.1); delivery ids
// grow with time. The sweep reads from the top down to the newest id it
// read before, so an idle App costs one request a pass, answered 304 by
// GitHub when nothing was delivered since (ETag; conditional requests do
// not count against the primary limit). A delivery that failed stays
// pending until a later attempt of its GUID succeeds, and is redelivered
// at most every redeliverSpacing. A sweep the budget stops (ErrDeferred)
// keeps its place and goes on from there next pass.
//
// The cursor lives in memory: after a restart the first sweep reads back
// to since (three days at most, what GitHub keeps), spread over passes by
// the background ceiling. Persisting it would save that one long read but
// not make it correct: deliveries that failed before the restart and were
// pending would still need it.

import (
	"cmp"
	"context"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"sync"
	"time"

	gh "github.com/google/go-github/v62/github"

	"github.com/crabbox/crabbox-runner/provisioner"
)

// deliveryKeep is how long GitHub keeps deliveries (§1.5).
const deliveryKeep = 3 * 24 * time.Hour

type deliverySweep struct {
	mu      sync.Mutex
	started bool
	newest  int64                // the highest delivery id read
	pending map[string]*Delivery // GUID → latest failed attempt
	// A sweep under way: its top id, the page cursor to go on from, and
	// the deliveries read so far (newest first).
	top     int64
	cursor  string
	partial []*gh.HookDelivery
	// Requests is how many listing requests sweeps sent (tests).
	requests int
}

// sweepDeliveries reads the deliveries made since the last sweep and
// returns the failed ones pending redelivery, oldest event first.
func (c *Client) sweepDeliveries(ctx context.Context, since time.Time) ([]Delivery, error) {
	if c.appClient == nil {
		return nil, fmt.Errorf("github: list the App's webhook deliveries: %w", ErrNeedsApp)
	}
	ctx = provisioner.Background(ctx)
	sw := &c.sweep
	sw.mu.Lock()
	defer sw.mu.Unlock()
	if sw.pending == nil {
		sw.pending = map[string]*Delivery{}
	}
	opts := &gh.ListCursorOptions{PerPage: perPage, Cursor: sw.cursor}
	for page := 1; ; page++ {
		if page > maxPages {
			sw.cursor, sw.partial, sw.top = "", nil, 0
			return nil, fmt.Errorf("github: list the App's webhook deliveries: gave up after %d pages", maxPages)
		}
		sw.requests++
		list, resp, err := c.appClient.Apps.ListHookDeliveries(ctx, opts)
		if err != nil {
			// Keep the place: the next pass goes on from this page.
			sw.cursor = opts.Cursor
			return nil, fmt.Errorf("github: list the App's webhook deliveries: %w", err)
		}
		reached := false
		for _, d := range list {
			if opts.Cursor == "" && sw.top == 0 {
				sw.top = d.GetID() // the first delivery of this sweep
			}
			if (sw.started && d.GetID() <= sw.newest) || d.GetDeliveredAt().Time.Before(since) {
				reached = true
				break
			}
			sw.partial = append(sw.partial, d)
		}
		if reached || len(list) == 0 || resp.Cursor == "" || resp.Cursor == opts.Cursor {
			break
		}
		opts.Cursor = resp.Cursor
	}
	// Oldest first, so that a later attempt of a GUID decides.
	for i := len(sw.partial) - 1; i >= 0; i-- {
		d := sw.partial[i]
		guid := cmp.Or(d.GetGUID(), "id:"+strconv.FormatInt(d.GetID(), 10))
		if d.GetStatus() == "OK" {
			delete(sw.pending, guid)
			continue
		}
		sw.pending[guid] = &Delivery{ID: d.GetID(), GUID: d.GetGUID(), Event: d.GetEvent(), Action: d.GetAction(),
			StatusCode: d.GetStatusCode(), DeliveredAt: d.GetDeliveredAt().Time, Redelivery: d.GetRedelivery()}
	}
	sw.newest = max(sw.newest, sw.top)
	sw.started = true
	sw.top, sw.cursor, sw.partial = 0, "", nil

	var out []Delivery
	for guid, d := range sw.pending {
		if d.DeliveredAt.Before(time.Now().Add(-deliveryKeep)) {
			delete(sw.pending, guid) // GitHub can no longer redeliver it
			continue
		}
		out = append(out, *d)
	}
	slices.SortFunc(out, func(a, b Delivery) int { return cmp.Compare(a.ID, b.ID) })
	return out, nil
}

// forgetDelivery drops a pending delivery GitHub no longer has.
func (c *Client) forgetDelivery(guid string) {
	c.sweep.mu.Lock()
	defer c.sweep.mu.Unlock()
	delete(c.sweep.pending, guid)
}

// redeliverGone reports whether a redelivery failed because GitHub has no
// such delivery any more (404, or 422 as the spec lists).
func redeliverGone(err error) bool {
	st := statusOf(err)
	return st == http.StatusNotFound || st == http.StatusUnprocessableEntity
}

// scopesEvery: the App's installations are listed again at most this often
// (in background windows); a new installation's webhooks come anyway.
const scopesEvery = 5

type scopesCache struct {
	mu     sync.Mutex
	list   []Installation
	listed time.Time
}

// cachedInstallations lists the App's installations at most every
// scopesEvery windows; when a listing fails, the last one stands.
func (c *Client) cachedInstallations(ctx context.Context) ([]Installation, error) {
	sc := &c.scopes
	sc.mu.Lock()
	defer sc.mu.Unlock()
	if sc.list != nil && time.Since(sc.listed) < scopesEvery*c.minute {
		return sc.list, nil
	}
	list, err := c.Installations(provisioner.Background(ctx))
	if err != nil {
		if sc.list != nil {
			return sc.list, err
		}
		return nil, err
	}
	if list == nil {
		list = []Installation{}
	}
	sc.list, sc.listed = list, time.Now()
	return list, nil
}
