package bootstrap

import (
	"errors"
	"fmt"
	"strconv"

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
	BootCmd           [][]string        `yaml:"bootcmd,omitempty"`
	RunCmd            [][]string        `yaml:"runcmd"`
}

// UserData returns cloud-init user-data that installs the host key pair
// (replacing the image's host keys, so the first connection can be
// verified), authorizes the lease's client key for the default user,
// starts the runner's prefetch as early as cloud-init runs anything, and
// creates the crabbox directory.
//
// There is no package_update or packages: cloud-init's final stage runs
// package_update_upgrade_install (an apt-get update, tens of seconds)
// first, before scripts_user runs runcmd (canonical/cloud-init,
// config/cloud.cfg.tmpl, cloud_final_modules). curl, which the prefetch
// and host.sh need, is installed by the prefetch's background job only
// when the image lacks it; Lambda's images are full Ubuntu installs
// (reference lambda-cloud-api.md §8) and taken to have it, so they pay
// nothing.
func (b *Bootstrapper) UserData(c *provisioner.Credentials) (string, error) {
	if c == nil || c.ClientPublicKey == "" {
		return "", errors.New("bootstrap: user-data needs the client public key")
	}
	cc := cloudConfig{
		SSHAuthorizedKeys: []string{c.ClientPublicKey},
		RunCmd:            [][]string{{"sh", "-c", prepareHost}},
	}
	// bootcmd runs in cloud-init's network stage, with the network up and
	// before sshd starts (canonical/cloud-init: cloud_init_modules in
	// config/cloud.cfg.tmpl; systemd/cloud-init-network.service.tmpl,
	// Before=sshd.service), so the download starts before anyone can log
	// in; runcmd would start it in the final stage, after sshd. bootcmd
	// runs as root on every boot (cc_bootcmd: PER_ALWAYS): after a reboot
	// the prefetch finds its cache complete and ends, which is all an
	// ephemeral host needs. cloud-init waits for bootcmd, so the launcher
	// puts everything in the background (bootLauncher).
	if p := b.prefetchLauncher(`$R`, installCurl); p != "" {
		cc.BootCmd = [][]string{{"bash", "-c", bootLauncher(p)}}
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
// home of uid 1000, root's when there is none. SSH logs in as the image's
// default user, uid 1000 on Ubuntu's cloud images (Lambda's "ubuntu",
// reference lambda-cloud-api.md §7); cloud-init runs as root. A login as
// another user finds no prefetch and downloads itself.
const lambdaRoot = `${CRABBOX_HOST_ROOT:-$(h=$(getent passwd 1000 | cut -d: -f6); [ -d "$h" ] && echo "$h" || echo "${HOME:-/root}")}/crabbox`

// homeWait is how long, in tenths of a second, bootcmd's background job
// waits for uid 1000's home before it falls back to root's.
const homeWait = 300

// bootLauncher wraps a prefetch launcher (written for root "$R") for
// bootcmd. bootcmd runs before users_groups (cloud_init_modules), so on an
// image whose default user cloud-init creates at first boot, uid 1000's
// home does not exist yet: the background job waits for it (it appears in
// the same stage, before sshd starts; an image that has the user already,
// or the fakes' CRABBOX_HOST_ROOT, does not wait), then creates the
// crabbox directory owned by the home's owner (runcmd's prepareHost comes
// only after SSH) and launches the prefetch. cloud-init's unit lets the
// job outlive bootcmd: cloud-init-main.service has KillMode=process, the
// older per-stage cloud-init.service is a oneshot with RemainAfterExit.
func bootLauncher(launcher string) string {
	return `(if [ -z "${CRABBOX_HOST_ROOT:-}" ]; then i=0; ` +
		`until h=$(getent passwd 1000 | cut -d: -f6) && [ -n "$h" ] && [ -d "$h" ] || [ $i -ge ` + strconv.Itoa(homeWait) + ` ]; do sleep 0.1; i=$((i+1)); done; fi
R="` + lambdaRoot + `"
mkdir -p "$R/.crabbox" && chown "$(stat -c %u:%g "$(dirname "$R")")" "$R" "$R/.crabbox" && chmod 700 "$R"
` + launcher + `) >/dev/null 2>&1 </dev/null &
`
}

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
