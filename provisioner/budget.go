package provisioner

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// GitHub's request budget, as the domain sees it (issue 13). The GitHub
// client counts every request against the rate limit of its credential
// (an App installation, a token); the provisioner only says which calls can
// wait and asks, before renting a host, whether a runner could be
// registered now.

// ErrDeferred: a background call (a reconcile listing, the deliveries
// sweep, a job-status refresh, a runner-gone check) was not sent because
// the credential's budget is down to the reserve kept for the calls that
// serve jobs. The work is to be done on a later pass; nothing failed.
var ErrDeferred = errors.New("deferred: GitHub request budget kept for serving jobs")

// ErrRateLimited: GitHub's rate limit for the credential is used up (or it
// asked us to back off); the call was not sent. A *BudgetError says until
// when.
var ErrRateLimited = errors.New("GitHub rate limit reached")

// BudgetError is a call the GitHub client refused locally because of the
// request budget. errors.Is matches ErrDeferred (Deferred) or
// ErrRateLimited (the others).
type BudgetError struct {
	Credential string    // "installation:ID", "token", "app"
	Endpoint   string    // the route, "GET /orgs/{org}/actions/runners"
	Until      time.Time // when the credential may be used again
	Reason     string    // "reserve", "exhausted", "secondary limit"
	Deferred   bool
	// Status is GitHub's answer (403, 429) when GitHub refused the call;
	// 0 when it was refused before it was sent.
	Status int
}

func (e *BudgetError) Error() string {
	if e.Status != 0 {
		return fmt.Sprintf("github: %s answered %d: %s budget: %s until %s", e.Endpoint, e.Status, e.Credential, e.Reason, e.Until.UTC().Format(time.RFC3339))
	}
	return fmt.Sprintf("github: %s not sent: %s budget: %s until %s", e.Endpoint, e.Credential, e.Reason, e.Until.UTC().Format(time.RFC3339))
}

func (e *BudgetError) Is(target error) bool {
	return (target == ErrDeferred && e.Deferred) || (target == ErrRateLimited && !e.Deferred)
}

// RetryAt returns when a call refused for the budget may be tried again,
// and whether err is such a refusal.
func RetryAt(err error) (time.Time, bool) {
	var be *BudgetError
	if errors.As(err, &be) {
		return be.Until, true
	}
	return time.Time{}, false
}

type backgroundKey struct{}

// Background marks ctx's GitHub calls as background work: they give way
// to the calls that serve jobs when the budget runs low.
func Background(ctx context.Context) context.Context {
	return context.WithValue(ctx, backgroundKey{}, true)
}

// IsBackground reports whether ctx was marked by Background.
func IsBackground(ctx context.Context) bool {
	v, _ := ctx.Value(backgroundKey{}).(bool)
	return v
}

// RegistrationBudget is implemented by a GitHub client that knows its
// request budget. Before renting a host for a lease the provisioner asks
// how long until a runner can be registered in the scope: a host rented
// when GitHub cannot take the registration would be billed for nothing.
type RegistrationBudget interface {
	// RegistrationWait is 0 when a registration can be made now, else how
	// long until it can (the rate limit's reset, a back-off's end). It may
	// ask GitHub for the budget with a request that costs none of it.
	RegistrationWait(ctx context.Context, scope Scope) time.Duration
}

// budgetWait ends a provision run that must not rent a host yet: GitHub
// could not take the runner's registration. The lease waits d (a River
// snooze), without a host and without a failure.
type budgetWait struct{ d time.Duration }

func (e *budgetWait) Error() string {
	return "GitHub cannot take a runner registration for " + e.d.String()
}

// maxBudgetWait bounds one snooze; the question is asked again after it.
const maxBudgetWait = 10 * time.Minute

// registrationBudget is nil when a runner can be registered in the lease's
// scope now, else a *budgetWait until it can. A host rented earlier would
// be billed while its registration waits, or fail its boot timeout.
func (p *Provisioner) registrationBudget(ctx context.Context, log interface{ Info(string, ...any) }, l *Lease) error {
	rb, ok := p.cfg.GitHub.(RegistrationBudget)
	if !ok {
		return nil
	}
	d := rb.RegistrationWait(ctx, l.Scope)
	if d <= 0 {
		p.budgetLogged.Delete(l.ID)
		return nil
	}
	// A second past the reset: x-ratelimit-reset is in whole seconds.
	d = min(d+time.Second, maxBudgetWait)
	if _, logged := p.budgetLogged.LoadOrStore(l.ID, true); !logged {
		log.Info("GitHub request budget used up; the lease waits before renting a host", "scope", l.Scope.Key(), "wait", d.Round(time.Second))
	}
	return &budgetWait{d: d}
}
