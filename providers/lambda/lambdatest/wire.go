package lambdatest

// The fake's own wire types, written from the OpenAPI document separately
// from the client's, so that a misreading shared by both cannot hide: what
// the fake sends is checked against the document, and so is what the client
// sends.

type wRegion struct {
	Name        string `json:"name"`
	Description string `json:"description"`
}

type wSpecs struct {
	VCPUs      int `json:"vcpus"`
	MemoryGiB  int `json:"memory_gib"`
	StorageGiB int `json:"storage_gib"`
	GPUs       int `json:"gpus"`
}

type wInstanceType struct {
	Name              string `json:"name"`
	Description       string `json:"description"`
	GPUDescription    string `json:"gpu_description"`
	PriceCentsPerHour int    `json:"price_cents_per_hour"`
	Specs             wSpecs `json:"specs"`
}

type wInstanceTypesItem struct {
	InstanceType wInstanceType `json:"instance_type"`
	Regions      []wRegion     `json:"regions_with_capacity_available"`
}

type wImage struct {
	ID           string  `json:"id"`
	CreatedTime  string  `json:"created_time"`
	UpdatedTime  string  `json:"updated_time"`
	Name         string  `json:"name"`
	Description  string  `json:"description"`
	Family       string  `json:"family"`
	Version      string  `json:"version"`
	Architecture string  `json:"architecture"`
	Region       wRegion `json:"region"`
}

type wSSHKey struct {
	ID         string `json:"id"`
	Name       string `json:"name"`
	PublicKey  string `json:"public_key"`
	PrivateKey string `json:"private_key,omitempty"` // GeneratedSSHKey only
}

type wAction struct {
	Available         bool   `json:"available"`
	ReasonCode        string `json:"reason_code,omitempty"`
	ReasonDescription string `json:"reason_description,omitempty"`
}

type wActions struct {
	Migrate    wAction `json:"migrate"`
	Rebuild    wAction `json:"rebuild"`
	Restart    wAction `json:"restart"`
	ColdReboot wAction `json:"cold_reboot"`
	Terminate  wAction `json:"terminate"`
}

// Tag is a key/value pair on an instance.
type Tag struct {
	Key   string `json:"key"`
	Value string `json:"value"`
}

// RulesetRef refers to a firewall ruleset by id.
type RulesetRef struct {
	ID string `json:"id"`
}

type wInstance struct {
	ID              string        `json:"id"`
	Name            string        `json:"name,omitempty"`
	IP              string        `json:"ip,omitempty"`
	PrivateIP       string        `json:"private_ip,omitempty"`
	Status          string        `json:"status"`
	SSHKeyNames     []string      `json:"ssh_key_names"`
	FileSystemNames []string      `json:"file_system_names"`
	Region          wRegion       `json:"region"`
	InstanceType    wInstanceType `json:"instance_type"`
	Hostname        string        `json:"hostname,omitempty"`
	// JupyterToken and JupyterURL: lambda-openapi.json Instance (not
	// required); the recorded GET /instances
	// (alexandervaneck/lambda-ai-cloud-api-client tests/data/
	// m_instances_response.json) has both on a running instance, the token
	// repeated in the URL's query. When they first appear is not said:
	// the fake shows them once the instance is active.
	JupyterToken     string       `json:"jupyter_token,omitempty"`
	JupyterURL       string       `json:"jupyter_url,omitempty"`
	Actions          wActions     `json:"actions"`
	Tags             []Tag        `json:"tags,omitempty"`
	FirewallRulesets []RulesetRef `json:"firewall_rulesets,omitempty"`
}

type wError struct {
	Code       string `json:"code"`
	Message    string `json:"message"`
	Suggestion string `json:"suggestion,omitempty"`
}

// LaunchRequest is a launch body as the fake received it.
type LaunchRequest struct {
	RegionName       string   `json:"region_name"`
	InstanceTypeName string   `json:"instance_type_name"`
	SSHKeyNames      []string `json:"ssh_key_names"`
	FileSystemNames  []string `json:"file_system_names"`
	FileSystemMounts []struct {
		MountPoint   string `json:"mount_point"`
		FileSystemID string `json:"file_system_id"`
	} `json:"file_system_mounts"`
	Hostname string `json:"hostname"`
	Name     string `json:"name"`
	Image    *struct {
		ID     string `json:"id"`
		Family string `json:"family"`
	} `json:"image"`
	UserData         string       `json:"user_data"`
	Tags             []Tag        `json:"tags"`
	FirewallRulesets []RulesetRef `json:"firewall_rulesets"`
}
