package provisioner

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"
)

// GC action kinds.
const (
	GCDestroyInstance = "destroy-instance"
	GCRemoveRunner    = "remove-runner"
	GCFailLease       = "fail-lease"
)

// gcNoLeaseGrace protects an instance whose lease row is not visible yet
// (a create racing the listing) from the "no lease" rule.
const gcNoLeaseGrace = 10 * time.Minute

// gcVanishedGrace covers a listing that lags the create it follows: a
// lease that got its instance this shortly before gc listed the provider is
// not judged by that listing. Neither reference says how soon a new
// instance is listed (vast-api.md, lambda-cloud-api.md), so gc also asks
// for the instance by id before it fails the lease.
const gcVanishedGrace = time.Minute

// gcReleasingGrace is how long a lease may sit in releasing before gc
// destroys its host itself.
const gcReleasingGrace = 10 * time.Minute

// GCOptions says where gc looks.
type GCOptions struct {
	// Scopes are checked for runners besides those of known leases (e.g. the
	// repository in Action mode, or the configured orgs).
	Scopes []Scope
}

// GCAction is one thing gc will do (or did).
type GCAction struct {
	Kind       string    `json:"action"`
	Provider   string    `json:"provider,omitempty"`
	InstanceID string    `json:"instance_id,omitempty"`
	LeaseID    string    `json:"lease_id,omitempty"`
	Scope      string    `json:"scope,omitempty"`
	RunnerID   int64     `json:"runner_id,omitempty"`
	RunnerName string    `json:"runner_name,omitempty"`
	Expires    time.Time `json:"expires,omitzero"`
	Reason     string    `json:"reason"`
	// Done, Error and Skipped are set by ApplyGC. Skipped says why an
	// action was found unneeded when it was about to be carried out.
	Done    bool   `json:"done"`
	Error   string `json:"error,omitempty"`
	Skipped string `json:"skipped,omitempty"`

	inst  *Instance
	scope Scope
}

// GCPlan is what one gc pass found and would do.
type GCPlan struct {
	Deployment string     `json:"deployment"`
	At         time.Time  `json:"at"`
	Instances  int        `json:"instances_seen"`
	Runners    int        `json:"runners_seen"`
	Actions    []GCAction `json:"actions"`
	// Warnings are parts gc could not look at (a provider down, a scope it
	// cannot list); nothing is done on their behalf.
	Warnings []string `json:"warnings,omitempty"`
}

// PlanGC finds what is left over: every instance carrying this deployment's
// marker on every provider, every runner named as ours in the scopes, joined
// with the store when there is one. It changes nothing.
//
//   - An instance is destroyed when its marker's expiry passed, or (with a
//     store) when it has no lease, or its lease is released or failed.
//   - A runner is removed when it is offline and its host is gone.
//   - A lease (with a store) whose host vanished is failed and released.
//
// Nothing without this deployment's marker is ever planned: providers list
// only marked instances, and the marker is checked again here.
func (p *Provisioner) PlanGC(ctx context.Context, opts GCOptions) (*GCPlan, error) {
	if p.cfg.GitHub == nil {
		return nil, errors.New("provisioner: gc needs GitHub")
	}
	now := p.now()
	plan := &GCPlan{Deployment: p.cfg.Deployment, At: now}
	names := make([]string, 0, len(p.cfg.Providers))
	for name := range p.cfg.Providers {
		names = append(names, name)
	}
	sort.Strings(names)

	hostOf := map[string]bool{} // lease id → an instance carries it
	listed := map[string]bool{} // provider → listing worked
	listedAt := map[string]time.Time{}
	instances := map[string]bool{} // provider/instance id → exists
	leaseCache := map[string]*Lease{}
	lease := func(id string) (*Lease, error) {
		if l, ok := leaseCache[id]; ok {
			return l, nil
		}
		l, err := p.cfg.Store.Lease(ctx, id)
		if errors.Is(err, ErrNotFound) {
			leaseCache[id] = nil
			return nil, nil
		}
		if err != nil {
			return nil, err
		}
		leaseCache[id] = l
		return l, nil
	}

	for _, name := range names {
		listedAt[name] = p.now()
		owned, err := p.cfg.Providers[name].ListOwned(ctx, p.cfg.Deployment)
		if err != nil {
			plan.Warnings = append(plan.Warnings, fmt.Sprintf("%s: cannot list instances: %v", name, err))
			continue
		}
		listed[name] = true
		for _, inst := range owned {
			if inst.Marker.Deployment != p.cfg.Deployment || inst.Marker.LeaseID == "" {
				continue // never ours, whatever the provider said
			}
			plan.Instances++
			instances[name+"/"+inst.ID] = true
			if inst.Status != InstanceGone {
				hostOf[inst.Marker.LeaseID] = true
			}
			a := GCAction{Kind: GCDestroyInstance, Provider: name, InstanceID: inst.ID, LeaseID: inst.Marker.LeaseID,
				Expires: inst.Marker.Expires, inst: inst}
			switch {
			case !inst.Marker.Expires.IsZero() && now.After(inst.Marker.Expires):
				a.Reason = "expired at " + inst.Marker.Expires.UTC().Format(time.RFC3339)
			case p.cfg.Store != nil:
				l, err := lease(inst.Marker.LeaseID)
				if err != nil {
					return nil, err
				}
				switch {
				case l == nil && (inst.CreatedAt.IsZero() || now.Sub(inst.CreatedAt) > gcNoLeaseGrace):
					a.Reason = "no lease " + inst.Marker.LeaseID + " in the store"
				case l == nil:
				case l.State == StateReleased || l.State == StateFailed:
					a.Reason = "lease is " + string(l.State)
				case l.State == StateReleasing && now.Sub(l.StateChangedAt) > gcReleasingGrace:
					a.Reason = "lease releasing since " + l.StateChangedAt.UTC().Format(time.RFC3339)
				case l.InstanceID != "" && l.InstanceID != inst.ID && l.Provider == name:
					a.Reason = "lease " + l.ID + " runs on instance " + l.InstanceID + ", not this one"
				}
			}
			if a.Reason != "" {
				plan.Actions = append(plan.Actions, a)
			}
		}
	}

	scopes := map[string]Scope{}
	for _, s := range opts.Scopes {
		scopes[s.Key()] = s
	}
	if p.cfg.Store != nil {
		active, err := p.cfg.Store.Leases(ctx, LeaseFilter{States: []State{StateBooting, StateBootstrapping, StateIdle, StateBusy}})
		if err != nil {
			return nil, err
		}
		for _, l := range active {
			scopes[l.Scope.Key()] = l.Scope
			leaseCache[l.ID] = l
			if l.InstanceID == "" || !listed[l.Provider] || instances[l.Provider+"/"+l.InstanceID] || l.ReleaseReason != "" {
				continue
			}
			if l.State == StateBooting && !l.StateChangedAt.Before(listedAt[l.Provider].Add(-gcVanishedGrace)) {
				// Its instance was created after (or just before) the
				// listing was asked for: absent from it, not gone.
				continue
			}
			plan.Actions = append(plan.Actions, GCAction{Kind: GCFailLease, LeaseID: l.ID, Provider: l.Provider,
				InstanceID: l.InstanceID, Reason: "its host vanished from " + l.Provider})
		}
	}

	prefix := "crabbox-" + p.cfg.Deployment + "-"
	keys := make([]string, 0, len(scopes))
	for k := range scopes {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	allListed := len(listed) == len(p.cfg.Providers)
	for _, k := range keys {
		scope := scopes[k]
		runners, err := p.cfg.GitHub.ListRunners(ctx, scope)
		if err != nil {
			plan.Warnings = append(plan.Warnings, fmt.Sprintf("%s: cannot list runners: %v", k, err))
			continue
		}
		for _, r := range runners {
			if !strings.HasPrefix(r.Name, prefix) {
				continue
			}
			plan.Runners++
			leaseID := strings.TrimPrefix(r.Name, prefix)
			if r.Busy || r.Online() || hostOf[leaseID] {
				continue
			}
			reason := ""
			if allListed {
				reason = "offline, and no instance carries lease " + leaseID
			}
			if p.cfg.Store != nil {
				if l, err := lease(leaseID); err == nil && l != nil && l.State == StateReleased {
					reason = "offline, and lease " + leaseID + " is released"
				}
			}
			if reason != "" {
				plan.Actions = append(plan.Actions, GCAction{Kind: GCRemoveRunner, Scope: k, RunnerID: r.ID,
					RunnerName: r.Name, LeaseID: leaseID, Reason: reason, scope: scope})
			}
		}
	}
	return plan, nil
}

// ApplyGC carries out a plan, each action on its own so that one failure
// does not stop the rest. It returns how many actions failed.
func (p *Provisioner) ApplyGC(ctx context.Context, plan *GCPlan) int {
	failed := 0
	for i := range plan.Actions {
		a := &plan.Actions[i]
		var err error
		switch a.Kind {
		case GCDestroyInstance:
			err = p.cfg.Providers[a.Provider].Destroy(ctx, a.inst)
		case GCRemoveRunner:
			err = p.cfg.GitHub.RemoveRunner(ctx, a.scope, a.RunnerID)
		case GCFailLease:
			var gone bool
			if gone, err = p.instanceGone(ctx, a.Provider, a.InstanceID); err == nil && !gone {
				a.Skipped = "the instance is there when asked for by id: the listing lagged"
				p.log.Info("gc action skipped", "action", a.Kind, "lease_id", a.LeaseID, "instance_id", a.InstanceID, "why", a.Skipped)
				continue
			}
			if err != nil {
				break
			}
			err = p.cfg.Store.InTx(ctx, func(tx Tx) error {
				l, err := tx.Lease(ctx, a.LeaseID)
				if err != nil {
					return err
				}
				if l.InstanceID != a.InstanceID || l.Provider != a.Provider {
					return nil // moved on since the plan
				}
				if err := p.requestRelease(ctx, tx, l.ID, "host vanished", "its host vanished from "+l.Provider); err != nil {
					return err
				}
				return p.balance(ctx, tx, l.Class, l.Scope)
			})
		default:
			err = fmt.Errorf("unknown gc action %q", a.Kind)
		}
		if err != nil {
			a.Error = err.Error()
			failed++
			p.log.Warn("gc action failed", "action", a.Kind, "lease_id", a.LeaseID, "instance_id", a.InstanceID, "runner", a.RunnerName, "error", err)
			continue
		}
		a.Done = true
		p.log.Info("gc", "action", a.Kind, "lease_id", a.LeaseID, "instance_id", a.InstanceID, "runner", a.RunnerName, "reason", a.Reason)
	}
	return failed
}

// instanceGone asks the provider for one instance by id: a lease is failed
// for a vanished host only when the provider says so twice, in its listing
// and by id, since failing it destroys a host that may be about to serve.
func (p *Provisioner) instanceGone(ctx context.Context, provider, id string) (bool, error) {
	prov, ok := p.cfg.Providers[provider]
	if !ok {
		return false, fmt.Errorf("unknown provider %q", provider)
	}
	inst, err := prov.Get(ctx, id)
	if errors.Is(err, ErrNotFound) {
		return true, nil
	}
	if err != nil {
		return false, err
	}
	return inst.Status == InstanceGone, nil
}
