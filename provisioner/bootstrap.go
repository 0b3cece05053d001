package provisioner

import "context"

// Bootstrapper turns a reachable host into a one-job runner over SSH. The
// implementation (package bootstrap) generates the per-lease keys, writes
// the cloud-init user-data, and runs the embedded host script.
type Bootstrapper interface {
	// NewCredentials generates the lease's SSH client key pair, and a host key
	// pair when withHostKey is set (for providers that install it). A non-nil
	// seed derives the keys from it, so that the same lease gets the same
	// keys after a restart without any key being stored; nil gives random keys.
	NewCredentials(seed []byte, withHostKey bool) (*Credentials, error)

	// UserData is the cloud-init user-data that prepares a host and installs
	// the credentials' keys. It holds the host private key, nothing else secret.
	UserData(c *Credentials) (string, error)

	// OnStart is a start script for providers without cloud-init (Vast's
	// onstart): it prepares the host the same way. It holds no secret.
	OnStart(c *Credentials) string

	// Probe connects over SSH, checking the host key, and runs a no-op. With
	// no known key it trusts and returns the first key seen (pinning).
	Probe(ctx context.Context, req ProbeRequest) (hostKey string, err error)

	// Bootstrap checks the GPU when asked, installs the runner, and starts it
	// detached with the JIT config delivered on stdin.
	Bootstrap(ctx context.Context, req BootstrapRequest) (*BootstrapResult, error)
}

// Credentials are a lease's keys. They are kept in memory only.
type Credentials struct {
	ClientPublicKey  string // authorized_keys format
	ClientPrivatePEM []byte // secret
	HostKey          *HostKeyPair
	// FallbackPrivatePEMs are further client keys offered when logging in
	// (the lease's key under the previous KeySecret); secret.
	FallbackPrivatePEMs [][]byte
}

// ProbeRequest says where and how to connect.
type ProbeRequest struct {
	// Endpoint's Host is an IP address the provisioner checked
	// (endpoint.go); the bootstrapper dials it as is and refuses a name.
	Endpoint    Endpoint
	Credentials *Credentials
	// KnownHostKey is the expected host key (authorized_keys format); empty
	// means trust on first use.
	KnownHostKey string
}

// BootstrapRequest is one bootstrap of one host.
type BootstrapRequest struct {
	ProbeRequest
	// JIT is the runner's config; with Ready it only names the runner,
	// and Ready returns the config.
	JIT      *JITConfig
	CheckGPU bool
	// Ready, when set, is called once the host has been checked (res.GPU
	// holds the GPU report when CheckGPU) and before anything is installed:
	// it judges the host and registers the runner, returning the JIT config
	// to start it with. Its error ends the bootstrap as it is.
	Ready func(ctx context.Context, res *BootstrapResult) (*JITConfig, error)
	// Scope is where the runner registers; the bootstrapper may ask GitHub
	// there which runner release (and checksum) a host of its architecture
	// should install.
	Scope Scope
	// InstallOnly checks the host and installs the runner but does not
	// start it: JIT names the runner and carries no config (a smoke
	// without GitHub credentials).
	InstallOnly bool
}

// BootstrapResult is what the host reported.
type BootstrapResult struct {
	HostKey string
	GPUInfo string // the GPU report's summary when the GPU was checked
	// GPU is what nvidia-smi told when the GPU was checked.
	GPU *GPUReport
	// Arch is the host's architecture ("x64", "arm64"); RunnerVersion
	// and RunnerSHA256 the runner tarball installed for it.
	Arch, RunnerVersion, RunnerSHA256 string
	// RunnerGot is how the runner was got (RunnerPrefetched, RunnerWaited,
	// RunnerDownloaded) and Deps what was done about its dependencies
	// (DepsSkipped, DepsInstalled, DepsPrefetched, or the host's word for
	// a failure); "" when the bootstrapper does not say (prefetch.go).
	RunnerGot, Deps string
	// Fetch is the runner tarball's download this bootstrap's runner came
	// from (the boot-time prefetch's or the install's own); nil when the
	// host told of none (the runner came from the image, or the host's
	// tools could not time it).
	Fetch *RunnerFetch
	// Phases are the bootstrap's steps and their durations, in order.
	Phases []PhaseTime
}
