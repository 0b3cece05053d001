package provisioner

// Renting a lease's host: the offers of its class, one create call per
// offer until one is created (offer claims in offerbook.go), and what an
// interrupted or uncertain create left behind (recoverByMarker here, the
// extra-host sweep in extrahosts.go).

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"strings"
)

// offers gathers the fitting offers of every provider of the class, cheapest
// first. A provider that fails is skipped so that one cloud's outage does
// not stop the others.
func (p *Provisioner) offers(ctx context.Context, class *Class) ([]Offer, error) {
	p.refreshBadMachines(ctx)
	var all []Offer
	var errs []error
	for _, name := range class.Providers {
		prov := p.cfg.Providers[name]
		offers, err := prov.Offers(ctx, *class)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", name, err))
			continue
		}
		for _, o := range offers {
			if class.MaxPricePerHour > 0 && o.PricePerHour > class.MaxPricePerHour {
				continue
			}
			all = append(all, o)
		}
	}
	sort.SliceStable(all, func(i, j int) bool { return all[i].PricePerHour < all[j].PricePerHour })
	// Offers on bad machines are left out; those on bad capacity pools go
	// behind the others (badmachines.go).
	all, avoided := avoidBadMachines(all, p.badMachine, p.machinePools)
	p.observeAvoided(avoided)
	if len(all) == 0 {
		if len(errs) > 0 {
			return nil, errors.Join(errs...)
		}
		if len(avoided) > 0 {
			return nil, fmt.Errorf("class %s: %w (%d on machines avoided as bad)", class.Name, ErrNoOffer, len(avoided))
		}
		return nil, fmt.Errorf("class %s: %w", class.Name, ErrNoOffer)
	}
	return all, nil
}

// createHost rents the cheapest fitting offer. Before each create call the
// attempt is recorded; after a crash, an instance that carries this lease's
// marker is destroyed first (its SSH keys died with the process).
func (p *Provisioner) createHost(ctx context.Context, log *slog.Logger, l *Lease, class *Class) error {
	if l.InstanceID != "" {
		// Created before a crash but not yet moved on.
		return p.toBooting(ctx, l.ID, "instance "+l.InstanceID+" created", nil)
	}
	if l.Attempts > 0 && !p.book.attemptsSettled(l.ID, l.Attempts) {
		// A create call was made and its answer lost (a crash, or the
		// provider could not tell: ErrCreateUncertain). With derived keys the
		// host it made is as good as a new one: adopt it. Without, nobody
		// can log in to it any more: destroy it.
		adopted, err := p.recoverByMarker(ctx, l, len(p.cfg.KeySecret) > 0)
		if err != nil {
			return err
		}
		if adopted != nil {
			if ad, ok := p.cfg.Providers[adopted.Provider].(Adopter); ok {
				creds, err := p.credentials(l.ID, false)
				if err != nil {
					return err
				}
				offer := Offer{Provider: adopted.Provider, ID: l.OfferID, GPU: l.GPU, PricePerHour: l.PricePerHour, MachineID: l.MachineID}
				req, err := p.createRequest(offer, class, Marker{Deployment: p.cfg.Deployment, LeaseID: l.ID, Expires: l.ExpiresAt}, creds)
				if err != nil {
					return err
				}
				if err := ad.Adopt(ctx, adopted, req); err != nil {
					return err
				}
				p.followedUp.Store(l.ID, true)
			}
			return p.toBooting(ctx, l.ID, "instance "+adopted.ID+" found by its marker after a restart", func(l *Lease) {
				l.InstanceID = adopted.ID
				l.Provider = adopted.Provider
				if creds, err := p.credentials(l.ID, false); err == nil {
					l.HostKey = p.expectedHostKey(adopted.Provider, creds)
				}
			})
		}
	}
	if err := p.registrationBudget(ctx, log, l); err != nil {
		return err
	}
	creds, err := p.credentials(l.ID, true)
	if err != nil {
		return err
	}
	offers, err := p.offers(ctx, class)
	if err != nil {
		return err
	}
	offers = p.hedgeOffers(ctx, l, offers)
	var errs []string
	skipped := 0
	for _, offer := range offers {
		// Exclusive offers go to one lease at a time, cheapest first
		// among those left (offerbook.go).
		if offer.Exclusive && p.book.claim(offer, l.ID, p.now()) != claimed {
			skipped++
			continue
		}
		inst, err := p.createOn(ctx, log, l, class, offer, creds)
		var fatal *fatalCreate
		if errors.As(err, &fatal) {
			return fatal.err
		}
		if err != nil {
			errs = append(errs, fmt.Sprintf("%s offer %s: %v", offer.Provider, offer.ID, err))
			continue
		}
		p.followedUp.Store(l.ID, true)
		return p.toBooting(ctx, l.ID, "instance "+inst.ID+" created", func(l *Lease) {
			l.InstanceID = inst.ID
			// The boot clock runs from the host's creation: time spent
			// waiting for a provider's launch slot is not boot time.
			l.BootDeadline = p.now().Add(class.BootTimeout)
			if inst.PricePerHour > 0 {
				l.PricePerHour = inst.PricePerHour
			}
			if inst.MachineID != "" {
				l.MachineID = inst.MachineID
			}
			l.HostKey = p.expectedHostKey(offer.Provider, creds)
		})
	}
	if len(errs) == 0 && skipped > 0 {
		// Nothing tried: every offer is another lease's now. Wait for
		// claims to end and new offers to come, without a create that
		// would be refused.
		return errOffersClaimed
	}
	return fmt.Errorf("no offer could be created: %s", strings.Join(errs, "; "))
}

// fatalCreate ends createHost's offer loop: the error is not the offer's
// (the lease moved on, a limit says wait).
type fatalCreate struct{ err error }

func (f *fatalCreate) Error() string { return f.err.Error() }

// createOn makes one create call on one offer, recorded first. It ends the
// offer's claim with what the call said: rented or refused, the offer is
// taken for every lease; any other failure hands it to the next lease. An
// uncertain create (ErrCreateUncertain) may have rented the machine: the
// offer counts as taken, and the lease's hosts are looked at soon and for a
// while (sweepExtraHosts), whatever offer it goes on to.
func (p *Provisioner) createOn(ctx context.Context, log *slog.Logger, l *Lease, class *Class, offer Offer, creds *Credentials) (*Instance, error) {
	taken := false
	defer func() {
		if offer.Exclusive {
			p.book.end(offer, l.ID, taken, p.now(), p.cfg.OfferTakenFor)
		}
	}()
	prov := p.cfg.Providers[offer.Provider]
	reserved, err := p.reserve(ctx, log, l.ID, offer, class)
	if err != nil {
		return nil, &fatalCreate{err}
	}
	// The expiry is set by the first reservation (pending → provisioning).
	l.ExpiresAt = reserved.ExpiresAt
	req, err := p.createRequest(offer, class, Marker{Deployment: p.cfg.Deployment, LeaseID: l.ID, Expires: l.ExpiresAt}, creds)
	if err != nil {
		return nil, &fatalCreate{err}
	}
	if l.Attempts == 0 {
		p.cfg.Observer.Phase(l.Class, offer.Provider, PhaseQueuedToCreate, p.now().Sub(cmp.Or(l.QueuedAt, l.CreatedAt)))
	}
	l.Attempts = reserved.Attempts
	log.Info("creating host", "provider", offer.Provider, "offer_id", offer.ID, "gpu", offer.GPU, "price_per_hour", offer.PricePerHour)
	inst, err := prov.Create(ctx, req)
	switch {
	case err == nil:
		taken = true
		p.book.forget(l.ID)
		return inst, nil
	case errors.Is(err, ErrCreateUncertain):
		// Not a refused offer: it may be rented, by this lease.
		taken = true
		p.book.settle(l.ID, l.Attempts, true)
		log.Warn("create outcome unknown; this lease's hosts are watched for an extra one, and the next offer is tried",
			"provider", offer.Provider, "offer_id", offer.ID, "error", err)
		p.watchExtraHosts(ctx, log, l.ID, offer.Provider)
		return nil, err
	case errors.Is(err, ErrOfferUnavailable):
		// Refused: no host. Any other failure may hide one, which the
		// lease's next run looks for by its marker.
		taken = true
		p.book.settle(l.ID, l.Attempts, false)
	}
	log.Warn("create failed; trying the next offer", "provider", offer.Provider, "offer_id", offer.ID, "error", err)
	return nil, err
}

// recoverByMarker finds the instances an interrupted attempt created for
// this lease. With adopt it keeps one and returns it; everything else found
// is destroyed.
func (p *Provisioner) recoverByMarker(ctx context.Context, l *Lease, adopt bool) (*Instance, error) {
	names := []string{l.Provider}
	if l.Provider == "" {
		names = p.classes[l.Class].Providers
	}
	var kept *Instance
	for _, name := range names {
		prov, ok := p.cfg.Providers[name]
		if !ok {
			continue
		}
		owned, err := prov.ListOwned(ctx, p.cfg.Deployment)
		if err != nil {
			return nil, fmt.Errorf("looking for instances of lease %s on %s: %w", l.ID, name, err)
		}
		for _, inst := range owned {
			if inst.Marker.LeaseID != l.ID {
				continue
			}
			if adopt && kept == nil && !inst.Status.Ended() {
				inst.Provider = name
				kept = inst
				p.log.Info("adopting instance created before a restart", "lease_id", l.ID, "instance_id", inst.ID)
				continue
			}
			p.log.Warn("destroying instance left by an interrupted attempt", "lease_id", l.ID, "instance_id", inst.ID)
			if err := prov.Destroy(ctx, inst); err != nil {
				return nil, err
			}
		}
	}
	return kept, nil
}

// destroyByMarker destroys whatever instance an earlier, interrupted
// attempt created for this lease.
func (p *Provisioner) destroyByMarker(ctx context.Context, l *Lease) error {
	_, err := p.recoverByMarker(ctx, l, false)
	return err
}

// adoptBooting hands a booting host that another process created (serve
// restarted after the create) to its provider's Adopter, once per process:
// a provider whose create takes more than one call keeps the rest in
// memory (Vast attaches the lease's SSH key once the container runs), and
// that memory died with the process that made the call. A failure is
// logged and the boot goes on: the boot deadline decides, as for any host.
func (p *Provisioner) adoptBooting(ctx context.Context, log *slog.Logger, l *Lease, prov Provider, class *Class) {
	ad, ok := prov.(Adopter)
	if !ok || l.InstanceID == "" {
		return
	}
	if _, done := p.followedUp.LoadOrStore(l.ID, true); done {
		return
	}
	creds, err := p.credentials(l.ID, false)
	if err != nil {
		return // waitBoot fails the lease for it
	}
	offer := Offer{Provider: l.Provider, ID: l.OfferID, GPU: l.GPU, PricePerHour: l.PricePerHour, MachineID: l.MachineID}
	marker := Marker{Deployment: p.cfg.Deployment, LeaseID: l.ID, Expires: l.ExpiresAt}
	req, err := p.createRequest(offer, class, marker, creds)
	if err == nil {
		err = ad.Adopt(ctx, &Instance{Provider: l.Provider, ID: l.InstanceID, Marker: marker}, req)
	}
	if err != nil {
		p.followedUp.Delete(l.ID)
		log.Warn("adopting a booting host created before a restart", "instance_id", l.InstanceID, "error", err)
	}
}
