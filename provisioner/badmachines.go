package provisioner

import (
	"sync"
	"time"
)

// badMachineTTL is how long a machine that failed a lease is avoided. Hosts
// on a marketplace fail for reasons that pass (a driver reinstall, a full
// disk); forever would shrink the market for good.
const badMachineTTL = time.Hour

// badMachines remembers machines whose host failed to boot or failed its GPU
// check, so the next offers skip them for a while. It lives in memory: after
// a restart a bad machine costs at most one more failed attempt.
type badMachines struct {
	mu    sync.Mutex
	until map[string]time.Time // provider/machine → avoid until
}

func (p *Provisioner) markBadMachine(l *Lease, why string) {
	if l.MachineID == "" {
		return
	}
	p.bad.mu.Lock()
	defer p.bad.mu.Unlock()
	if p.bad.until == nil {
		p.bad.until = map[string]time.Time{}
	}
	p.bad.until[l.Provider+"/"+l.MachineID] = p.now().Add(badMachineTTL)
	p.log.Warn("avoiding machine", "provider", l.Provider, "machine_id", l.MachineID, "for", badMachineTTL, "why", why, "lease_id", l.ID)
}

func (p *Provisioner) isBadMachine(provider, machine string) bool {
	if machine == "" {
		return false
	}
	p.bad.mu.Lock()
	defer p.bad.mu.Unlock()
	until, ok := p.bad.until[provider+"/"+machine]
	if ok && p.now().After(until) {
		delete(p.bad.until, provider+"/"+machine)
		return false
	}
	return ok
}
