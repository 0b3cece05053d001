package provisioner

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// Provider rents hosts from one cloud. Every method takes a context first and
// is safe for concurrent use. Implementations live in providers/<name>.
type Provider interface {
	// Name is the provider's name in configuration ("vast", "lambda", "local").
	Name() string

	// Capabilities tells the provisioner how to prepare a host.
	Capabilities() Capabilities

	// Offers returns the offers that fit the class, cheapest first, with
	// PricePerHour including everything billed per hour for the class (disk).
	Offers(ctx context.Context, class Class) ([]Offer, error)

	// Create rents the offered host, tagged with the marker. It returns
	// ErrOfferUnavailable when the offer was taken or has no capacity, so the
	// caller can try the next one. The returned instance may still be booting.
	Create(ctx context.Context, req CreateRequest) (*Instance, error)

	// Get returns the instance's current state, or ErrNotFound once it is gone.
	Get(ctx context.Context, id string) (*Instance, error)

	// ListOwned returns every instance carrying the deployment's marker, and
	// nothing else: instances of other deployments and untagged ones are never
	// listed, so nothing built on this list can destroy them.
	ListOwned(ctx context.Context, deployment string) ([]*Instance, error)

	// Destroy terminates the instance and stops its billing. An instance that
	// is already gone counts as destroyed (nil error). Provider-side leftovers
	// created for the lease (such as a registered SSH key) are removed too.
	Destroy(ctx context.Context, inst *Instance) error
}

// Adopter is implemented by providers whose create takes more than one
// call (Vast attaches the SSH key after creating the instance, and again
// once it runs). Adopt repeats the calls after the first for an instance
// this process did not create: one found by its marker after a crash cut
// the create short, or one still booting when the process restarted. It is
// called once per instance and process, and may be called again for an
// instance that already has everything.
type Adopter interface {
	Adopt(ctx context.Context, inst *Instance, req CreateRequest) error
}

// Capabilities says what a provider can do for a new host.
type Capabilities struct {
	// CloudInit: the host runs the user-data given at create.
	CloudInit bool
	// HostKeyInjection: the host uses the host key given at create, so the
	// first SSH connection is verified rather than trusted.
	HostKeyInjection bool
	// MachinePools: the provider's Offer.MachineID names a capacity pool
	// (Lambda: an instance type in a region), not one physical machine.
	// A pool whose host failed is tried after the other offers for a
	// while, never skipped (badmachines.go).
	MachinePools bool
}

// Offer is a host that can be rented now, normalised across providers.
type Offer struct {
	Provider     string
	ID           string // provider's offer id (Vast ask id, Lambda "type@region")
	GPU          string // e.g. "A100 SXM4"
	GPUCount     int
	GPUMemoryGB  float64 // per GPU, nominal GB (the size the card is sold with; docs/providers/gpus.md)
	PricePerHour float64 // USD, all hourly costs for the class included
	Region       string
	Reliability  float64 // 0..1; 1 when the provider does not report it
	// MachineID identifies the physical machine where the provider tells it,
	// so a bad machine can be avoided for a while.
	MachineID string
	// Exclusive: the offer is one machine that one create takes (a Vast
	// ask), so concurrent leases must not go after the same offer. Offers
	// with capacity behind them (a Lambda type in a region) are not.
	Exclusive bool
	// Interruptible: the offer is a bid (Vast interruptible instance) at
	// BidPerHour; PricePerHour is that bid plus the hourly storage. The
	// market may take the host back mid-job (InstanceOutbid).
	Interruptible bool
	// BidPerHour is the bid sent with the create, USD per machine-hour.
	BidPerHour float64
	// Image is what the host would run: the container image of a Vast
	// offer, the machine image chosen for a Lambda offer's region and
	// architecture ("<family>@<arch>", or the image id the class names).
	Image string
}

// CreateRequest is everything a provider needs to rent one host for a lease.
type CreateRequest struct {
	Offer  Offer
	Class  Class
	Marker Marker
	// SSHPublicKey is the lease's client key (authorized_keys format).
	SSHPublicKey string
	// UserData is cloud-init user-data for providers with CloudInit.
	UserData string
	// HostKey is the host key pair to install, for providers with
	// HostKeyInjection. PrivatePEM is a secret.
	HostKey *HostKeyPair
	// OnStart is a shell script that prepares the host, for providers that
	// have no cloud-init but run a start command (Vast's onstart).
	OnStart string
}

// HostKeyPair is a host key crabbox-runner generated for a host.
type HostKeyPair struct {
	PublicKey  string // authorized_keys format
	PrivatePEM []byte // OpenSSH PEM; secret
}

// InstanceStatus is a provider-neutral view of an instance's state.
type InstanceStatus string

// Instance states. Failed instances never become running on their own.
// Outbid, preempted and stopped hosts are lost to the job they hold (the
// provider may resume them later, without its processes); an unreachable
// host may be a heartbeat blip and counts as lost only once it stays so
// (hostwatch.go). While a host boots, every state that is not pending or
// running fails the boot (Ended).
const (
	InstancePending InstanceStatus = "pending"
	InstanceRunning InstanceStatus = "running"
	InstanceFailed  InstanceStatus = "failed"
	InstanceGone    InstanceStatus = "gone"
	// InstanceOutbid: an interruptible host stopped because a higher bid
	// or an on-demand rental took its GPUs (Vast).
	InstanceOutbid InstanceStatus = "outbid"
	// InstancePreempted: the provider took the host back (Lambda's
	// "preempted").
	InstancePreempted InstanceStatus = "preempted"
	// InstanceStopped: the host was stopped or terminated by the provider
	// or the machine's owner, not by us.
	InstanceStopped InstanceStatus = "stopped"
	// InstanceUnreachable: the provider has no recent word from the host
	// (Vast's unknown, offline).
	InstanceUnreachable InstanceStatus = "unreachable"
)

// Ended reports whether an instance in this state will not serve a job:
// anything but pending and running.
func (s InstanceStatus) Ended() bool { return s != InstancePending && s != InstanceRunning }

// Instance is one rented host.
type Instance struct {
	Provider string
	ID       string
	Status   InstanceStatus
	// StatusMessage is the provider's detail, e.g. why it failed.
	StatusMessage string
	SSH           Endpoint // empty until the host is reachable
	Marker        Marker   // parsed from the instance's tags; zero if untagged
	PricePerHour  float64
	GPU           string
	Region        string
	MachineID     string
	CreatedAt     time.Time
}

// Marker is the ownership tag on every instance crabbox-runner creates. It
// carries enough for gc to act on an instance with no database: whose it is,
// which lease, and when it must be gone.
type Marker struct {
	Deployment string
	LeaseID    string
	Expires    time.Time
	// Smoke marks the host of a `crabbox-runner smoke` run: the next smoke
	// destroys any such host it finds, as one a killed smoke left behind.
	// gc treats it as any other lease's host.
	Smoke bool
}

const (
	markerPrefix = "crabbox"
	markerSmoke  = "smoke"
)

// String encodes the marker as a single label:
// crabbox:<deployment>:<lease>:<expiry unix>, with ":smoke" after it for a
// smoke's host. It fits Vast's label and Lambda's instance name (64
// characters) for deployment names up to 24 characters (18 for a smoke).
func (m Marker) String() string {
	s := fmt.Sprintf("%s:%s:%s:%d", markerPrefix, m.Deployment, m.LeaseID, m.Expires.Unix())
	if m.Smoke {
		s += ":" + markerSmoke
	}
	return s
}

// IsZero reports whether the marker is unset.
func (m Marker) IsZero() bool { return m.Deployment == "" && m.LeaseID == "" }

// ParseMarker decodes a label written by Marker.String. ok is false for any
// label crabbox-runner did not write. Markers written before the smoke
// mark existed (four fields) stay valid.
func ParseMarker(label string) (m Marker, ok bool) {
	parts := strings.Split(strings.TrimSpace(label), ":")
	smoke := len(parts) == 5 && parts[4] == markerSmoke
	if (len(parts) != 4 && !smoke) || parts[0] != markerPrefix || parts[1] == "" || parts[2] == "" {
		return Marker{}, false
	}
	exp, err := strconv.ParseInt(parts[3], 10, 64)
	if err != nil || exp <= 0 {
		return Marker{}, false
	}
	return Marker{Deployment: parts[1], LeaseID: parts[2], Expires: time.Unix(exp, 0).UTC(), Smoke: smoke}, true
}
