package lambda

import (
	"context"
	"slices"
	"sync"
	"time"
)

// limiter spaces requests by Lambda's two limits at once: any two requests
// at least `general` apart, any two launches at least `launch` apart.
//
// Two independent token buckets (golang.org/x/time/rate) do not do this: a
// launch that passes the launch bucket and then waits its turn in the
// general one can be sent later than the next launch's turn, and the two
// launches reach Lambda closer together than 12 s. So each request books
// the earliest instant that keeps both spacings from every booked one, and
// waits for it. Requests other than launches may take the gaps before a
// launch booked far ahead, so a waiting launch never holds up polling.
type limiter struct {
	general, launch time.Duration

	mu       sync.Mutex
	slots    []time.Time // booked sends, any kind
	launches []time.Time // booked launches
}

func newLimiter(general, launch time.Duration) *limiter {
	return &limiter{general: max(general, 0), launch: max(launch, 0)}
}

// wait blocks until the request's turn. A request whose context ends while
// it waits gives its turn back.
func (l *limiter) wait(ctx context.Context, isLaunch bool) error {
	if l.general == 0 && (!isLaunch || l.launch == 0) {
		return ctx.Err()
	}
	at := l.book(time.Now(), isLaunch)
	d := time.Until(at)
	if d <= 0 {
		return nil
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		l.cancel(at, isLaunch)
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// book finds the earliest instant from now that is far enough from every
// booked one, and books it.
func (l *limiter) book(now time.Time, isLaunch bool) time.Time {
	l.mu.Lock()
	defer l.mu.Unlock()
	// Bookings further back than an interval constrain nothing any more.
	l.slots = slices.DeleteFunc(l.slots, func(s time.Time) bool { return s.Add(l.general).Before(now) })
	l.launches = slices.DeleteFunc(l.launches, func(s time.Time) bool { return s.Add(l.launch).Before(now) })
	at := now
	for moved := true; moved; {
		moved = false
		if l.general > 0 {
			for _, s := range l.slots {
				if at.Sub(s) < l.general && s.Sub(at) < l.general {
					at, moved = s.Add(l.general), true
				}
			}
		}
		if isLaunch && l.launch > 0 {
			for _, s := range l.launches {
				if at.Sub(s) < l.launch && s.Sub(at) < l.launch {
					at, moved = s.Add(l.launch), true
				}
			}
		}
	}
	l.slots = append(l.slots, at)
	if isLaunch {
		l.launches = append(l.launches, at)
	}
	return at
}

func (l *limiter) cancel(at time.Time, isLaunch bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if i := slices.IndexFunc(l.slots, at.Equal); i >= 0 {
		l.slots = slices.Delete(l.slots, i, i+1)
	}
	if isLaunch {
		if i := slices.IndexFunc(l.launches, at.Equal); i >= 0 {
			l.launches = slices.Delete(l.launches, i, i+1)
		}
	}
}
