package github

// Failed webhook deliveries of the App (reference §2.1). GitHub does not
// retry them (§1.5); this finds them and asks for a redelivery, the way
// GitHub's own redelivery script does.

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"time"

	gh "github.com/google/go-github/v62/github"

	"github.com/crabbox/crabbox-runner/provisioner"
)

// Delivery is a webhook delivery that never succeeded: the latest failed
// attempt of its GUID.
type Delivery struct {
	ID            int64  // the attempt; Redeliver takes it
	GUID          string // X-GitHub-Delivery, the same on every attempt
	Event, Action string
	StatusCode    int // the receiver's answer; 0 if none came
	DeliveredAt   time.Time
	Redelivery    bool
}

// FailedDeliveries pages through the App webhook's deliveries (App JWT,
// GET /app/hook/deliveries, newest first) back to since, groups the
// attempts by GUID and returns the latest attempt of each GUID none of
// whose attempts has status "OK", oldest event first. Attempts before since
// are not looked at, so let since overlap the previous check a little: a
// delivery already redelivered once more is harmless to a receiver that
// deduplicates. A zero since reads all GitHub keeps (3 days, §1.5). A
// redelivery asked for moments ago may not be listed yet either. A token
// client gets ErrNeedsApp.
func (c *Client) FailedDeliveries(ctx context.Context, since time.Time) ([]Delivery, error) {
	ctx = provisioner.Background(ctx) // reconcile work gives way to jobs (budget.go)
	if c.appClient == nil {
		return nil, fmt.Errorf("github: list the App's webhook deliveries: %w", ErrNeedsApp)
	}
	type attempts struct {
		latest *gh.HookDelivery // the first listed, as newest come first
		first  time.Time        // the earliest listed attempt
		ok     bool
	}
	byGUID := map[string]*attempts{}
	opts := &gh.ListCursorOptions{PerPage: perPage}
	for page := 1; ; page++ {
		if page > maxPages {
			return nil, fmt.Errorf("github: list the App's webhook deliveries: gave up after %d pages", maxPages)
		}
		list, resp, err := c.appClient.Apps.ListHookDeliveries(ctx, opts)
		if err != nil {
			return nil, fmt.Errorf("github: list the App's webhook deliveries (page %d): %w", page, err)
		}
		reachedSince := false
		for _, d := range list {
			at := d.GetDeliveredAt().Time
			if at.Before(since) {
				reachedSince = true
				break
			}
			key := d.GetGUID()
			if key == "" {
				key = "id:" + strconv.FormatInt(d.GetID(), 10) // never seen; keep it apart
			}
			a := byGUID[key]
			if a == nil {
				a = &attempts{latest: d}
				byGUID[key] = a
			}
			a.first = at
			if d.GetStatus() == "OK" {
				a.ok = true
			}
		}
		// The cursor check guards against a server that repeats itself.
		if reachedSince || len(list) == 0 || resp.Cursor == "" || resp.Cursor == opts.Cursor {
			break
		}
		opts.Cursor = resp.Cursor
	}

	type failed struct {
		d     Delivery
		first time.Time
	}
	var fs []failed
	for _, a := range byGUID {
		if a.ok {
			continue
		}
		d := a.latest
		fs = append(fs, failed{first: a.first, d: Delivery{
			ID:          d.GetID(),
			GUID:        d.GetGUID(),
			Event:       d.GetEvent(),
			Action:      d.GetAction(),
			StatusCode:  d.GetStatusCode(),
			DeliveredAt: d.GetDeliveredAt().Time,
			Redelivery:  d.GetRedelivery(),
		}})
	}
	// In the order the events happened, so that a receiver that acts on
	// them in order sees queued before completed where it can.
	slices.SortFunc(fs, func(a, b failed) int {
		return cmp.Or(a.first.Compare(b.first), cmp.Compare(a.d.ID, b.d.ID))
	})
	out := make([]Delivery, len(fs))
	for i, f := range fs {
		out[i] = f.d
	}
	return out, nil
}

// Redeliver asks GitHub to send a delivery attempt again (App JWT,
// POST /app/hook/deliveries/{id}/attempts). GitHub answers 202, which
// go-github reports as *github.AcceptedError: that is success. The
// operation documents 400 and 422 besides (OAS
// apps/redeliver-webhook-delivery), 422 for an id that names no delivery
// it keeps; 404 is read the same way, in case GitHub answers it. A token
// client gets ErrNeedsApp.
func (c *Client) Redeliver(ctx context.Context, id int64) error {
	if c.appClient == nil {
		return fmt.Errorf("github: redeliver webhook delivery %d: %w", id, ErrNeedsApp)
	}
	_, _, err := c.appClient.Apps.RedeliverHookDelivery(ctx, id)
	var accepted *gh.AcceptedError
	switch {
	case err == nil, errors.As(err, &accepted):
		return nil
	case statusOf(err) == http.StatusUnprocessableEntity, statusOf(err) == http.StatusNotFound:
		return fmt.Errorf("github: redeliver webhook delivery %d: no such delivery (GitHub keeps them for 3 days): %w", id, err)
	case statusOf(err) == http.StatusBadRequest:
		return fmt.Errorf("github: redeliver webhook delivery %d: GitHub refused the request as malformed: %w", id, err)
	}
	return fmt.Errorf("github: redeliver webhook delivery %d: %w", id, err)
}
