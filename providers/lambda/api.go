package lambda

import "time"

// The types below are the parts of Lambda's OpenAPI 1.8.3 schemas that
// crabbox-runner sends or reads, field for field. Request types carry only
// fields the schema declares, with omitempty where the field is optional,
// so that no request ever holds a field Lambda does not know (the fake
// server rejects one). Response types decode leniently: optional fields are
// pointers or zero values, statuses and region codes are open strings, and
// unknown fields are ignored, because Lambda adds to its API over time.

// Region is a Lambda region as responses carry it: an object, never a bare
// string.
type Region struct {
	Name        string `json:"name"`
	Description string `json:"description"`
}

// InstanceTypeSpecs are an instance type's resources.
type InstanceTypeSpecs struct {
	VCPUs      int `json:"vcpus"`
	MemoryGiB  int `json:"memory_gib"`
	StorageGiB int `json:"storage_gib"`
	GPUs       int `json:"gpus"`
}

// InstanceType is one machine shape, e.g. gpu_1x_a100_sxm4.
type InstanceType struct {
	Name              string            `json:"name"`
	Description       string            `json:"description"`     // "1x A100 (40 GB SXM4)"
	GPUDescription    string            `json:"gpu_description"` // "A100 (40 GB SXM4)"
	PriceCentsPerHour int               `json:"price_cents_per_hour"`
	Specs             InstanceTypeSpecs `json:"specs"`
}

// InstanceTypeAvailability is one entry of GET /instance-types, whose data
// is a map keyed by the type's name.
type InstanceTypeAvailability struct {
	InstanceType InstanceType `json:"instance_type"`
	// RegionsWithCapacity is empty when the type has no capacity anywhere.
	RegionsWithCapacity []Region `json:"regions_with_capacity_available"`
}

// Image is a machine image. Images are listed per region: one family shows
// once per region, each time with its own id.
type Image struct {
	ID           string    `json:"id"`
	CreatedTime  time.Time `json:"created_time"`
	UpdatedTime  time.Time `json:"updated_time"`
	Name         string    `json:"name"`
	Description  string    `json:"description"`
	Family       string    `json:"family"`
	Version      string    `json:"version"`
	Architecture string    `json:"architecture"` // x86_64 or arm64
	Region       Region    `json:"region"`
}

// SSHKey is a registered public key. PrivateKey is set only when Lambda
// generated the pair (AddSSHKey without a public key); crabbox-runner never
// asks for that.
type SSHKey struct {
	ID         string `json:"id"`
	Name       string `json:"name"`
	PublicKey  string `json:"public_key"`
	PrivateKey string `json:"private_key,omitempty"`
}

// AddSSHKeyRequest is the body of POST /ssh-keys.
type AddSSHKeyRequest struct {
	Name      string `json:"name"`                 // 1-64 characters
	PublicKey string `json:"public_key,omitempty"` // omitted: Lambda generates a pair
}

// ImageSpec chooses the launch image: exactly one of ID or Family. It is an
// object in the request ({"id": …} or {"family": …}), never a top-level
// image_id or image_family field.
type ImageSpec struct {
	ID     string `json:"id,omitempty"`
	Family string `json:"family,omitempty"`
}

// Tag is a key/value pair on an instance. Keys sent at launch must match
// ^[a-z][a-z0-9-:]+$ and be at most 55 characters; values at most 128.
type Tag struct {
	Key   string `json:"key"`
	Value string `json:"value"`
}

// FirewallRulesetEntry refers to a firewall ruleset by id.
type FirewallRulesetEntry struct {
	ID string `json:"id"`
}

// FileSystemMount mounts a file system at a chosen path.
type FileSystemMount struct {
	MountPoint   string `json:"mount_point"`
	FileSystemID string `json:"file_system_id"`
}

// LaunchRequest is the body of POST /instance-operations/launch
// (InstanceLaunchRequest). Lambda's own older examples also send
// "quantity"; the 1.8.3 schema does not have it, so neither does this type.
type LaunchRequest struct {
	RegionName       string                 `json:"region_name"`
	InstanceTypeName string                 `json:"instance_type_name"`
	SSHKeyNames      []string               `json:"ssh_key_names"` // exactly one
	FileSystemNames  []string               `json:"file_system_names,omitempty"`
	FileSystemMounts []FileSystemMount      `json:"file_system_mounts,omitempty"`
	Hostname         string                 `json:"hostname,omitempty"`
	Name             string                 `json:"name,omitempty"`
	Image            *ImageSpec             `json:"image,omitempty"`
	UserData         string                 `json:"user_data,omitempty"`
	Tags             []Tag                  `json:"tags,omitempty"`
	FirewallRulesets []FirewallRulesetEntry `json:"firewall_rulesets,omitempty"`
}

// LaunchResponse is the data of a successful launch.
type LaunchResponse struct {
	InstanceIDs []string `json:"instance_ids"`
}

// Instance states as Lambda reports them. Status is decoded as an open
// string: values not listed here may appear.
const (
	StatusBooting     = "booting"
	StatusActive      = "active"
	StatusUnhealthy   = "unhealthy"
	StatusTerminating = "terminating"
	StatusTerminated  = "terminated"
	StatusPreempted   = "preempted"
)

// Instance is one instance as GET /instances and friends return it. IP is
// absent while the instance boots; PrivateIP may be absent even when it is
// active.
type Instance struct {
	ID               string                 `json:"id"`
	Name             string                 `json:"name,omitempty"`
	IP               string                 `json:"ip,omitempty"`
	PrivateIP        string                 `json:"private_ip,omitempty"`
	Status           string                 `json:"status"`
	SSHKeyNames      []string               `json:"ssh_key_names"`
	FileSystemNames  []string               `json:"file_system_names"`
	Region           Region                 `json:"region"`
	InstanceType     InstanceType           `json:"instance_type"`
	Hostname         string                 `json:"hostname,omitempty"`
	Tags             []Tag                  `json:"tags,omitempty"`
	FirewallRulesets []FirewallRulesetEntry `json:"firewall_rulesets,omitempty"`
	Actions          InstanceActions        `json:"actions"`
}

// InstanceActions says which operations the instance's state allows
// (InstanceActionAvailability); crabbox-runner reads only terminate.
type InstanceActions struct {
	Terminate ActionAvailability `json:"terminate"`
}

// ActionAvailability is one operation's availability. ReasonCode is set
// when it is not available: vm-has-not-launched, vm-is-too-old,
// vm-is-terminating, or a code Lambda adds later.
type ActionAvailability struct {
	Available         bool   `json:"available"`
	ReasonCode        string `json:"reason_code,omitempty"`
	ReasonDescription string `json:"reason_description,omitempty"`
}

// terminateRequest is the body of POST /instance-operations/terminate.
type terminateRequest struct {
	InstanceIDs []string `json:"instance_ids"`
}

// terminateResponse is the data of a successful terminate.
type terminateResponse struct {
	TerminatedInstances []Instance `json:"terminated_instances"`
}
