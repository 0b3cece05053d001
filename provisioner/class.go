package provisioner

import (
	"strings"
	"time"
)

// Class is a kind of GPU host a job can ask for with its labels.
type Class struct {
	Name string
	// Labels are the runner's labels; a job fits when every one of its
	// runs-on labels is among them (case-insensitive).
	Labels    []string
	GPU       GPURequirement
	Providers []string // candidates, in no particular order: the cheapest fitting offer wins

	MaxPricePerHour float64
	DiskGB          int
	Image           string // container image (Vast) or image family/id (Lambda)
	Region          string // optional region filter
	MinReliability  float64
	VerifiedOnly    bool
	DirectSSH       bool
	// CheckGPU runs nvidia-smi on the host before the runner starts.
	CheckGPU bool
	// FirewallRulesets and FileSystems are attached at launch where the
	// provider supports them (Lambda: ruleset ids, file system names).
	FirewallRulesets []string
	FileSystems      []string

	// MaxLeases caps this class's leases (0: no cap).
	MaxLeases int

	BootTimeout time.Duration // create call to runner online
	IdleTimeout time.Duration // runner online without a job
	MaxLifetime time.Duration // hard cap on the host's life
}

// GPURequirement is what a class needs in GPUs.
type GPURequirement struct {
	Name        string // e.g. "A100", matched against offer GPU names
	Count       int
	MinMemoryGB float64 // per GPU
}

// Matches reports whether a job with these runs-on labels fits the class:
// every job label is one of the class labels, ignoring case.
func (c *Class) Matches(jobLabels []string) bool {
	if len(jobLabels) == 0 {
		return false
	}
	for _, jl := range jobLabels {
		found := false
		for _, cl := range c.Labels {
			if strings.EqualFold(jl, cl) {
				found = true
				break
			}
		}
		if !found {
			return false
		}
	}
	return true
}

// MatchClass returns the first class that fits the job's labels, or nil.
// Classes are tried in configuration order, so list specific ones first.
func MatchClass(classes []Class, jobLabels []string) *Class {
	for i := range classes {
		if classes[i].Matches(jobLabels) {
			return &classes[i]
		}
	}
	return nil
}
