package bootstrap

import (
	"errors"
	"fmt"

	"gopkg.in/yaml.v3"

	"github.com/crabbox/crabbox-runner/provisioner"
)

// prepareHost creates the crabbox directory in every home on the host,
// owned by its user, because user-data runs as root before anyone knows
// which user SSH will log in as (root on Vast, ubuntu on Lambda).
//
// CRABBOX_HOST_ROOT, when set (the fake providers' hosts, which share one
// machine's /root and /home), is the only home.
const prepareHost = `for h in ${CRABBOX_HOST_ROOT:-/root /home/*}; do [ -d "$h" ] || continue; ` +
	`mkdir -p "$h/crabbox/.crabbox" && chown -R "$(stat -c %u:%g "$h")" "$h/crabbox" && chmod 700 "$h/crabbox"; done`

// cloudConfig is the part of cloud-init's #cloud-config that crabbox-runner
// uses, in the order it is written.
type cloudConfig struct {
	SSHDeleteKeys     bool              `yaml:"ssh_deletekeys,omitempty"`
	SSHKeys           map[string]string `yaml:"ssh_keys,omitempty"`
	SSHAuthorizedKeys []string          `yaml:"ssh_authorized_keys"`
	PackageUpdate     bool              `yaml:"package_update"`
	Packages          []string          `yaml:"packages"`
	RunCmd            [][]string        `yaml:"runcmd"`
}

// UserData returns cloud-init user-data that installs the host key pair
// (replacing the image's host keys, so the first connection can be
// verified), authorizes the lease's client key for the default user,
// installs curl and creates the crabbox directory.
func (b *Bootstrapper) UserData(c *provisioner.Credentials) (string, error) {
	if c == nil || c.ClientPublicKey == "" {
		return "", errors.New("bootstrap: user-data needs the client public key")
	}
	cc := cloudConfig{
		SSHAuthorizedKeys: []string{c.ClientPublicKey},
		PackageUpdate:     true,
		Packages:          []string{"curl"},
		RunCmd:            [][]string{{"sh", "-c", prepareHost}},
	}
	// runcmd runs in cloud-init's final stage, after sshd is up (cloud-init
	// docs, boot stages: "Final ... runs as late in boot as possible ...
	// user scripts, including runcmd"); and as root, while SSH logs in as
	// the image's default user, uid 1000 on Ubuntu's cloud images (Lambda's
	// "ubuntu"): its home gets the prefetch. A login as another user finds
	// no prefetch and downloads itself.
	if p := b.prefetchLauncher(lambdaRoot, ""); p != "" {
		cc.RunCmd = append(cc.RunCmd, []string{"bash", "-c", p})
	}
	if c.HostKey != nil {
		if c.HostKey.PublicKey == "" || len(c.HostKey.PrivatePEM) == 0 {
			return "", errors.New("bootstrap: user-data: incomplete host key pair")
		}
		cc.SSHDeleteKeys = true
		cc.SSHKeys = map[string]string{
			"ed25519_private": string(c.HostKey.PrivatePEM),
			"ed25519_public":  c.HostKey.PublicKey,
		}
	}
	out, err := yaml.Marshal(cc)
	if err != nil {
		return "", fmt.Errorf("bootstrap: user-data: %w", err)
	}
	return "#cloud-config\n" + string(out), nil
}

// lambdaRoot is the crabbox directory a cloud-init prefetch fills: in the
// home of uid 1000 (see UserData), root's when there is none.
const lambdaRoot = `${CRABBOX_HOST_ROOT:-$(h=$(getent passwd 1000 | cut -d: -f6); [ -d "$h" ] && echo "$h" || echo "${HOME:-/root}")}/crabbox`

// installCurl is what Vast's images may lack: curl, for the prefetch and
// host.sh.
const installCurl = `if ! command -v curl >/dev/null 2>&1 && command -v apt-get >/dev/null 2>&1; then ` +
	`(apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq curl) >/dev/null 2>&1 || true; fi; `

// OnStart returns a start script for providers without cloud-init (Vast's
// onstart): it turns off the image's automatic tmux, which would otherwise
// wrap every SSH command, creates the crabbox directory and, in the
// background, makes sure curl is there and prefetches the runner. Vast runs
// it as root, and SSH logs in as root: root's home gets the prefetch. The
// SSH keys reach such hosts through the provider's API.
func (b *Bootstrapper) OnStart(_ *provisioner.Credentials) string {
	s := `touch ~/.no_auto_tmux
mkdir -p "` + hostRoot + `/.crabbox"
chmod 700 "` + hostRoot + `"
`
	if p := b.prefetchLauncher(hostRoot, installCurl); p != "" {
		return s + p
	}
	return s + "(" + installCurl + ") </dev/null &\n"
}
