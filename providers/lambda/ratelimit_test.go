package lambda_test

import (
	"context"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/crabbox/crabbox-runner/providers/lambda"
	"github.com/crabbox/crabbox-runner/providers/lambda/lambdatest"
)

// A fake that refuses requests coming faster than Lambda allows, like
// Lambda does, with the intervals scaled down so the test is quick.
const (
	testGeneral = 100 * time.Millisecond
	testLaunch  = 400 * time.Millisecond
)

func limitedFake(t *testing.T) *lambdatest.Server {
	return lambdatest.New(t, lambdatest.Options{EnforceLimits: true, GeneralInterval: testGeneral, LaunchInterval: testLaunch})
}

func countRefused(fake *lambdatest.Server) (refused, launches int) {
	for _, r := range fake.Requests() {
		if r.Status == 429 {
			refused++
		}
		if r.Path == "/api/v1/instance-operations/launch" && r.Status == 200 {
			launches++
		}
	}
	return refused, launches
}

// A burst of leases creating hosts at once shares one limiter: the fake
// never has to refuse a request, whatever the concurrency.
func TestLimiterIsSharedByAllLeases(t *testing.T) {
	fake := limitedFake(t)
	p := newProvider(t, fake, nil, func(o *lambda.Options) {
		o.MinRequestInterval, o.LaunchInterval = testGeneral, testLaunch
	})
	ctx := context.Background()
	offers, err := p.Offers(ctx, a100)
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	errs := make(chan error, 4)
	for i := range 4 {
		wg.Go(func() {
			_, err := p.Create(ctx, createRequest(t, offers[0], a100, "acme-gpu", "l"+strconv.Itoa(i)))
			errs <- err
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	refused, launches := countRefused(fake)
	if refused != 0 || launches != 4 {
		t.Fatalf("the fake refused %d requests (launched %d): the limiter let a burst through", refused, launches)
	}
}

// Without a limiter the same burst is refused in part, and the client gets
// through by retrying the 429s with backoff.
func TestRetriesGetThroughRateLimits(t *testing.T) {
	fake := limitedFake(t)
	p := newProvider(t, fake, nil, func(o *lambda.Options) {
		o.Retry = lambda.RetryPolicy{InitialInterval: testLaunch, MaxInterval: 4 * testLaunch, MaxElapsedTime: time.Minute, MaxAttempts: 20}
	})
	ctx := context.Background()
	offers, err := p.Offers(ctx, a100)
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	errs := make(chan error, 3)
	for i := range 3 {
		wg.Go(func() {
			_, err := p.Create(ctx, createRequest(t, offers[0], a100, "acme-gpu", "l"+strconv.Itoa(i)))
			errs <- err
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	refused, launches := countRefused(fake)
	if refused == 0 || launches != 3 {
		t.Fatalf("refused %d, launched %d: want some refusals and every launch through", refused, launches)
	}
}
