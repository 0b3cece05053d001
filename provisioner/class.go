package provisioner

import "time"

// Class is a kind of GPU host a job can ask for with its labels.
type Class struct {
	Name string
	// Labels are the runner's labels; a job fits when every one of its
	// runs-on labels is among them (case-insensitive).
	Labels    []string
	GPU       GPURequirement
	Providers []string // candidates, in no particular order: the cheapest fitting offer wins

	MaxPricePerHour float64
	// InterruptibleBid, when set, lets the class run on interruptible
	// (bid) hosts where the provider has a bid market (Vast): it bids this
	// multiple of an offer's current minimum bid, and such offers compete
	// on price with the on-demand ones, so the class falls back to
	// on-demand when no bid fits. 0: on-demand only.
	InterruptibleBid float64
	DiskGB           int
	Image            string // container image of Vast hosts (never sent to Lambda)
	LambdaImage      string // machine image of Lambda hosts: family, family:<name> or id:<uuid>; empty: see providers/lambda
	Region           string // optional region filter
	MinReliability   float64
	VerifiedOnly     bool
	// DatacenterOnly takes only offers of datacenter providers where the
	// cloud tells them apart (Vast's secure cloud); Lambda's hosts are all
	// its own.
	DatacenterOnly bool
	DirectSSH      bool
	// CheckGPU runs the GPU gate (gpugate.go) on the host before a runner
	// is registered for it.
	CheckGPU bool
	// MinCUDA and MinDriver ("12.4", "550.54"), when set, are the lowest
	// CUDA version the host's driver must support and the lowest driver
	// version: checked by the gate, and on offers that tell them.
	MinCUDA, MinDriver string
	// FirewallRulesets and FileSystems are attached at launch where the
	// provider supports them (Lambda: ruleset ids, file system names).
	FirewallRulesets []string
	FileSystems      []string

	// MaxLeases caps this class's leases (0: no cap).
	MaxLeases int

	// Repositories, when set, are the only repositories (owner/name or
	// owner/*, ignoring case) whose jobs may spend on this class.
	Repositories []string
	// PublicRepositories lets jobs of public repositories (and of
	// repositories whose visibility is unknown) spend on this class: on a
	// public repository anyone can open a pull request whose workflow runs
	// here.
	PublicRepositories bool

	BootTimeout time.Duration // the host's creation (the create answer) to runner online
	IdleTimeout time.Duration // runner online without a job
	MaxLifetime time.Duration // hard cap on the host's life
	// HedgeAfter, when positive, starts a second host for a lease whose
	// runner is not online this long after its host's create call
	// (hedge.go); shorter than BootTimeout.
	HedgeAfter time.Duration

	// RerunLostJobs: a job that failed because its host was lost under it
	// (Lease.LostReason) is re-run once through GitHub's API (rerun.go).
	RerunLostJobs bool

	// MinIdle is how many hosts of the class are kept booted with an idle
	// runner ahead of demand (warm.go); 0: none.
	MinIdle int
}

// GPURequirement is what a class needs in GPUs.
type GPURequirement struct {
	Name        string // e.g. "A100", matched against offer GPU names
	Count       int
	MinMemoryGB float64 // per GPU, nominal GB, compared with Offer.GPUMemoryGB
}

// Matches reports whether a job with these runs-on labels fits the class:
// every job label is one of the class labels, ignoring case, and one of
// them names the class (is not one of GitHub's default labels, see
// policy.go). The class's repository policy is MatchJob's to apply.
func (c *Class) Matches(jobLabels []string) bool {
	return c.fitsLabels(jobLabels) && c.namedBy(jobLabels)
}

// MatchClass returns the first class that fits the job's labels, or nil,
// whatever the job's repository (MatchJob applies the policy too).
// Classes are tried in configuration order, so list specific ones first.
func MatchClass(classes []Class, jobLabels []string) *Class {
	for i := range classes {
		if classes[i].Matches(jobLabels) {
			return &classes[i]
		}
	}
	return nil
}
