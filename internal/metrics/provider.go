package metrics

import (
	"context"
	"time"

	"github.com/crabbox/crabbox-runner/provisioner"
)

// instrumented wraps a provider to count and time its calls.
type instrumented struct {
	provisioner.Provider
	m *Metrics
}

// adoptingInstrumented keeps the optional Adopter visible through the
// wrapper.
type adoptingInstrumented struct {
	*instrumented
	ad provisioner.Adopter
}

func (a adoptingInstrumented) Adopt(ctx context.Context, inst *provisioner.Instance, req provisioner.CreateRequest) error {
	start := time.Now()
	err := a.ad.Adopt(ctx, inst, req)
	a.observe("adopt", start, err)
	return err
}

// Provider returns p with every call counted by operation and status.
func (m *Metrics) Provider(p provisioner.Provider) provisioner.Provider {
	in := &instrumented{Provider: p, m: m}
	if ad, ok := p.(provisioner.Adopter); ok {
		return adoptingInstrumented{in, ad}
	}
	return in
}

func (i *instrumented) observe(op string, start time.Time, err error) {
	i.m.ProviderCall(i.Name(), op, err, time.Since(start))
}

func (i *instrumented) Offers(ctx context.Context, c provisioner.Class) ([]provisioner.Offer, error) {
	start := time.Now()
	out, err := i.Provider.Offers(ctx, c)
	i.observe("offers", start, err)
	return out, err
}

func (i *instrumented) Create(ctx context.Context, req provisioner.CreateRequest) (*provisioner.Instance, error) {
	start := time.Now()
	out, err := i.Provider.Create(ctx, req)
	i.observe("create", start, err)
	return out, err
}

func (i *instrumented) Get(ctx context.Context, id string) (*provisioner.Instance, error) {
	start := time.Now()
	out, err := i.Provider.Get(ctx, id)
	i.observe("get", start, err)
	return out, err
}

func (i *instrumented) ListOwned(ctx context.Context, deployment string) ([]*provisioner.Instance, error) {
	start := time.Now()
	out, err := i.Provider.ListOwned(ctx, deployment)
	i.observe("list", start, err)
	return out, err
}

func (i *instrumented) Destroy(ctx context.Context, inst *provisioner.Instance) error {
	start := time.Now()
	err := i.Provider.Destroy(ctx, inst)
	i.observe("destroy", start, err)
	return err
}
