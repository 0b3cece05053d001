package vast

import (
	"cmp"
	"strconv"
	"strings"

	"github.com/crabbox/crabbox-runner/provisioner"
)

// fatalMessages in status_msg mean the container will never start, whatever
// actual_status says (it sits at "created" or "loading"): the host's driver
// is too old for the image, or the image cannot be pulled.
var fatalMessages = []string{
	"oci runtime create failed",
	"error response from daemon",
	"unsatisfied condition",
	"pull access denied",
	"manifest unknown",
}

// instanceStatus maps Vast's actual_status (and status_msg) to the
// provisioner's states. Running needs SSH details as well; see convert.
//
// A host lost after it ran is told apart by kind (provisioner/hostwatch.go):
//   - stopped on an interruptible (is_bid) instance is an outbid: "If another
//     user places a higher bid or creates an on demand rental for the same
//     resources then your instance will be stopped" (vast-ai/docs
//     instances/rental-types.mdx); "When outbid, the instance moves to
//     `stopped` (not destroyed) and storage charges continue"
//     (vast-ai/vast-cli vastai/SKILL.md). Whether cur_state or only
//     actual_status says stopped is not documented: either counts.
//   - stopped or frozen otherwise: we never stop an instance, so the host
//     (a contract that ran out, maintenance) or Vast did.
//   - exited: the container's process exited unexpectedly (docs
//     show-instance; SKILL.md): the host failed.
//   - unknown, offline: no recent heartbeat, host disconnected: maybe a
//     blip; the host watch waits before counting it lost.
func instanceStatus(in *Instance) (provisioner.InstanceStatus, string) {
	st := strings.ToLower(in.ActualStatus)
	msg := in.StatusMsg
	stopped := st == "stopped" || st == "frozen" || strings.EqualFold(in.CurState, "stopped")
	switch {
	case in.IsBid && stopped && !strings.EqualFold(in.IntendedStatus, "stopped"):
		return provisioner.InstanceOutbid, describe("interruptible instance stopped (outbid)", msg)
	case st == "running":
		return provisioner.InstanceRunning, msg
	case st == "exited":
		return provisioner.InstanceFailed, describe("instance exited", msg)
	case st == "offline" || st == "unknown":
		return provisioner.InstanceUnreachable, describe("instance "+st, msg)
	case st == "stopped" || st == "frozen":
		// They do not come back on their own (stopped and frozen only by
		// a call we never make).
		return provisioner.InstanceStopped, describe("instance "+st, msg)
	}
	lower := strings.ToLower(msg)
	for _, f := range fatalMessages {
		if strings.Contains(lower, f) {
			return provisioner.InstanceFailed, describe("container failed to start", msg)
		}
	}
	if in.IntendedStatus == "stopped" || in.CurState == "unloaded" || in.CurState == "stopped" {
		return provisioner.InstanceStopped, describe("instance stopped (intended "+in.IntendedStatus+", state "+in.CurState+")", msg)
	}
	// null (provisioning), created, loading, rebooting, restarting,
	// scheduling, and anything new: wait, and let the boot timeout decide.
	return provisioner.InstancePending, describe(cmp.Or(st, "provisioning"), msg)
}

func describe(what, msg string) string {
	if msg == "" {
		return what
	}
	return what + ": " + msg
}

// endpoint is where to SSH: direct (public_ipaddr and the host port mapped
// to 22/tcp) when Vast mapped one, else the SSH proxy (ssh_host:ssh_port,
// one port up for Jupyter runtypes as Vast's CLI does).
func (p *Provider) endpoint(in *Instance) provisioner.Endpoint {
	user := cmp.Or(p.sshUser, DefaultSSHUser)
	if port, ok := in.HostPort("22/tcp"); ok {
		if f := strings.Fields(in.PublicIPAddr); len(f) > 0 {
			return provisioner.Endpoint{Host: f[0], Port: port, User: user}
		}
	}
	if in.SSHHost != "" && in.SSHPort > 0 {
		port := in.SSHPort
		if strings.Contains(in.ImageRunType, "jupyter") {
			port++
		}
		return provisioner.Endpoint{Host: in.SSHHost, Port: port, User: user}
	}
	return provisioner.Endpoint{}
}

// convert turns Vast's instance into the provisioner's view.
func (p *Provider) convert(in *Instance) *provisioner.Instance {
	status, msg := instanceStatus(in)
	out := &provisioner.Instance{
		Provider:      Name,
		ID:            strconv.FormatInt(in.ID, 10),
		Status:        status,
		StatusMessage: msg,
		PricePerHour:  in.DphTotal,
		GPU:           in.GPUName,
		Region:        in.Geolocation,
		CreatedAt:     in.StartDate,
	}
	if m, ok := provisioner.ParseMarker(in.Label); ok {
		out.Marker = m
	}
	if in.MachineID > 0 {
		out.MachineID = strconv.FormatInt(in.MachineID, 10)
	}
	if status == provisioner.InstanceRunning {
		out.SSH = p.endpoint(in)
		if out.SSH.Host == "" {
			// Running, but the ports are not mapped yet.
			out.Status = provisioner.InstancePending
			out.StatusMessage = describe("running, waiting for SSH details", msg)
		}
	}
	return out
}
