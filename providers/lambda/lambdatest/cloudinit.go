package lambdatest

// What Lambda's cloud-init does with a #cloud-config user_data, stage by
// stage, as far as the fake models it. The evidence (canonical/cloud-init):
//
//   - config/cloud.cfg.tmpl lists the modules of each stage in order:
//     cloud_init_modules (the network stage) starts with seed_random,
//     bootcmd, write_files, ... users_groups, ssh; cloud_final_modules
//     (the final stage) starts with package_update_upgrade_install and
//     runs scripts_user (the script runcmd wrote) later.
//   - systemd/cloud-init-network.service.tmpl (cloud-init.service.tmpl in
//     older releases), the network stage's unit: Before=sshd.service,
//     Before=sshd-keygen.service. So bootcmd runs, and ends, before sshd
//     starts; the final stage runs "as late in boot as possible"
//     (doc/rtd/explanation/boot.rst), after sshd.
//   - doc/rtd/explanation/boot.rst: the network stage "runs after local
//     stage and configured networking is up", so bootcmd has the network.
//   - cloudinit/config/cc_bootcmd.py: bootcmd is frequency PER_ALWAYS
//     (every boot) and its items, shellified like runcmd's, run with
//     /bin/sh, which cloud-init waits for.
//   - cloudinit/config/cc_package_update_upgrade_install.py: package_update
//     (or apt_update) and package_upgrade (apt_upgrade) update the package
//     sources; packages installs them, and the apt package manager's
//     install_packages (cloudinit/distros/package_management/apt.py)
//     updates the sources first too. On Ubuntu that is an apt-get update,
//     before runcmd's script runs.
//
// The fake runs bootcmd Behavior.InitStageLead before SSH is reachable,
// then serves SSH, then the final stage: the package step's delay if the
// user_data asks for it, then runcmd.

import (
	"bytes"
	"strings"
	"time"

	"golang.org/x/crypto/ssh"
	"gopkg.in/yaml.v3"
)

// DefaultPackageUpdateTime is how long the fake's final stage takes over
// package_update / packages before runcmd when Behavior.PackageUpdateTime
// is zero. No figure for Lambda is stored; an apt-get update of a fresh
// Ubuntu host fetches the index files of the archive's pockets (release,
// updates, security, backports) and of any third-party repositories the
// image adds (Lambda Stack's), typically some seconds to tens of seconds
// from a cloud region. 20 s stands for that; installing a package the
// image already has (curl) adds about nothing and is not modelled.
const DefaultPackageUpdateTime = 20 * time.Second

// cloudConfig is the part of a #cloud-config the fake acts on.
type cloudConfig struct {
	SSHKeys           map[string]string `yaml:"ssh_keys"`
	SSHAuthorizedKeys []string          `yaml:"ssh_authorized_keys"`
	BootCmd           []any             `yaml:"bootcmd"`
	RunCmd            []any             `yaml:"runcmd"`
	PackageUpdate     bool              `yaml:"package_update"`
	AptUpdate         bool              `yaml:"apt_update"`
	PackageUpgrade    bool              `yaml:"package_upgrade"`
	AptUpgrade        bool              `yaml:"apt_upgrade"`
	Packages          []any             `yaml:"packages"`
}

// userData is what the fake takes from an instance's user_data.
type userData struct {
	hostKey    []byte   // ssh_keys' ed25519 pair; nil: sshd makes one
	authorized []string // ssh_authorized_keys
	bootcmd    string   // the network stage's script; "" for none
	runcmd     string   // the final stage's script; "" for none
	// packages: the final stage updates the package sources (and
	// installs) before runcmd.
	packages bool
}

// shellify is the script cloud-init writes for a runcmd or bootcmd list
// (canonical/cloud-init, cc_runcmd: "If the item is a string, it will be
// interpreted by sh. If the item is a list, the items will be executed as
// if passed to execve(3)"; cc_bootcmd: "For invocation details, see
// runcmd"): a list item's words shell-quoted, a string as it is.
func shellify(items []any) (string, bool) {
	if len(items) == 0 {
		return "", true
	}
	var b strings.Builder
	b.WriteString("#!/bin/sh\n")
	for _, it := range items {
		switch v := it.(type) {
		case string:
			b.WriteString(v + "\n")
		case []any:
			for i, w := range v {
				ws, ok := w.(string)
				if !ok {
					return "", false
				}
				if i > 0 {
					b.WriteByte(' ')
				}
				b.WriteString("'" + strings.ReplaceAll(ws, "'", `'\''`) + "'")
			}
			b.WriteByte('\n')
		default:
			return "", false
		}
	}
	return b.String(), true
}

// cloudInit reads the user_data as cloud-init would: the keys, the
// package step and the scripts of bootcmd and runcmd. A user_data that
// cloud-init would reject is a violation, and the host then keeps a key of
// its own, as a real one would.
func (s *Server) cloudInit(raw string) (ud userData) {
	if raw == "" {
		return ud
	}
	if !strings.HasPrefix(raw, "#cloud-config\n") {
		s.violationLocked("launch: user_data is not a #cloud-config document; the fake applies only those")
		return ud
	}
	var cc cloudConfig
	if err := yaml.Unmarshal([]byte(raw), &cc); err != nil {
		s.violationLocked("launch: user_data is not valid YAML: %v", err)
		return ud
	}
	var ok bool
	if ud.runcmd, ok = shellify(cc.RunCmd); !ok {
		s.violationLocked("launch: user_data runcmd items must be strings or lists of strings")
	}
	if ud.bootcmd, ok = shellify(cc.BootCmd); !ok {
		s.violationLocked("launch: user_data bootcmd items must be strings or lists of strings")
	}
	ud.packages = cc.PackageUpdate || cc.AptUpdate || cc.PackageUpgrade || cc.AptUpgrade || len(cc.Packages) > 0
	for _, k := range cc.SSHAuthorizedKeys {
		if _, _, _, _, err := ssh.ParseAuthorizedKey([]byte(k)); err != nil {
			s.violationLocked("launch: user_data ssh_authorized_keys has an invalid key")
			continue
		}
		ud.authorized = append(ud.authorized, k)
	}
	priv, pub := cc.SSHKeys["ed25519_private"], cc.SSHKeys["ed25519_public"]
	if priv == "" {
		return ud
	}
	signer, err := ssh.ParsePrivateKey([]byte(priv))
	if err != nil {
		s.violationLocked("launch: user_data ssh_keys.ed25519_private is not an OpenSSH private key")
		return ud
	}
	if pk, _, _, _, err := ssh.ParseAuthorizedKey([]byte(pub)); err != nil || !bytes.Equal(pk.Marshal(), signer.PublicKey().Marshal()) {
		s.violationLocked("launch: user_data ssh_keys.ed25519_public does not match ed25519_private")
	}
	ud.hostKey = []byte(priv)
	return ud
}

// packageUpdateTime is the final stage's package step for the instance.
func (b Behavior) packageUpdateTime() time.Duration {
	switch {
	case b.PackageUpdateTime < 0:
		return 0
	case b.PackageUpdateTime == 0:
		return DefaultPackageUpdateTime
	}
	return b.PackageUpdateTime
}
