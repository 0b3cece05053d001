package main

import (
	"strings"
	"testing"

	"github.com/crabbox/crabbox-runner/providers/local"
	"github.com/crabbox/crabbox-runner/provisioner"
)

// hostileGPUOutput is what a rented host's operator can make nvidia-smi
// print: workflow commands in both syntaxes the runner reads.
const hostileGPUOutput = `::set-output name=pwned::by-the-host
::add-mask::crabbox
  ::error::host says your build failed
::save-state name=s::host-state
::stop-commands::host-token
::endgroup::
##[set-output name=legacy;]host
note ##[add-mask]crabbox`

// runnerCommands reads a stream as the runner does and returns the
// commands it would execute (name → data), following stop-commands. From
// actions/runner: src/Runner.Common/ActionCommand.cs (TryParseV2: a line
// whose TrimStart begins with "::", the name up to a space or "::", data
// after the second "::"; TryParse: "##[" anywhere in the line, the name up
// to a space or "]") and src/Runner.Worker/ActionCommandManager.cs
// (TryProcessCommand: only registered names count; ::stop-commands::T
// stops processing until a command named T).
func runnerCommands(stream string) (cmds [][2]string, stopped bool) {
	registered := map[string]bool{}
	for _, c := range []string{"stop-commands", "set-env", "set-output", "save-state", "add-mask", "add-path",
		"add-matcher", "remove-matcher", "warning", "error", "notice", "debug", "group", "endgroup", "echo"} {
		registered[c] = true
	}
	token := ""
	for _, line := range strings.Split(stream, "\n") {
		name, data, ok := parseV2(line, registered)
		if !ok {
			name, data, ok = parseV1(line, registered)
		}
		if !ok {
			continue
		}
		switch {
		case token != "" && strings.EqualFold(name, token):
			delete(registered, strings.ToLower(token))
			token = ""
		case token != "":
			// stopped: ignored
		case name == "stop-commands":
			token = data
			registered[strings.ToLower(token)] = true
		default:
			cmds = append(cmds, [2]string{name, data})
		}
	}
	return cmds, token != ""
}

func parseV2(line string, registered map[string]bool) (name, data string, ok bool) {
	line = strings.TrimLeft(line, " \t\r\v\f")
	if !strings.HasPrefix(line, "::") {
		return "", "", false
	}
	end := strings.Index(line[2:], "::")
	if end < 0 {
		return "", "", false
	}
	info := line[2 : 2+end]
	name, _, _ = strings.Cut(info, " ")
	if !registered[strings.ToLower(name)] {
		return "", "", false
	}
	return strings.ToLower(name), line[2+end+2:], true
}

func parseV1(line string, registered map[string]bool) (name, data string, ok bool) {
	i := strings.Index(line, "##[")
	if i < 0 {
		return "", "", false
	}
	rb := strings.Index(line[i:], "]")
	if rb < 0 {
		return "", "", false
	}
	info := line[i+3 : i+rb]
	name, _, _ = strings.Cut(info, " ")
	if !registered[strings.ToLower(name)] {
		return "", "", false
	}
	return strings.ToLower(name), line[i+rb+1:], true
}

// checkNoHostCommands fails when the runner, reading out, would execute a
// command that came from the host, or be left with commands stopped.
func checkNoHostCommands(t *testing.T, what, out string, wantErrors int) {
	t.Helper()
	cmds, stopped := runnerCommands(out)
	if stopped {
		t.Errorf("%s: ends with workflow commands stopped", what)
	}
	errors := 0
	for _, c := range cmds {
		switch c[0] {
		case "set-output", "save-state", "set-env", "add-path", "stop-commands":
			t.Errorf("%s: the runner would execute ::%s::%s", what, c[0], c[1])
		case "add-mask":
			if c[1] == "crabbox" {
				t.Errorf("%s: the runner would execute the host's add-mask", what)
			}
		case "error":
			errors++
		}
	}
	if errors != wantErrors {
		t.Errorf("%s: %d error annotations, want %d: %v", what, errors, wantErrors, cmds)
	}
}

// Issue #15: host output reached the job log unescaped, and a ::command::
// line from a rented host was executed by the runner. Everything from the
// host is now text: on stdout between stop-commands markers, on stderr
// made inert.
func TestActionHostCannotIssueWorkflowCommands(t *testing.T) {
	for _, tt := range []struct {
		name   string
		behave local.Behavior
		code   int
	}{
		{"nvidia-smi answers", local.Behavior{GPUOutput: hostileGPUOutput}, 0},
		{"nvidia-smi fails", local.Behavior{GPUOutput: hostileGPUOutput, BrokenGPU: true}, 1},
	} {
		t.Run(tt.name, func(t *testing.T) {
			offers := []provisioner.Offer{{ID: "a100-m1", GPU: "A100 SXM4", GPUCount: 1, GPUMemoryGB: 80, PricePerHour: 1.10, Region: "local", MachineID: "m1"}}
			w := newActionWorld(t, false, offers, func(int, provisioner.CreateRequest) local.Behavior { return tt.behave })
			start := w.step(map[string]string{"mode": "start", "gpu": "A100", "timeout": "30s", "check-gpu": "true"})
			if start.code != tt.code {
				t.Fatalf("start exit %d, want %d", start.code, tt.code)
			}
			// The host's words are in the log, as text: the test proves
			// something only if they got there.
			if !strings.Contains(start.stdout, "::set-output name=pwned::by-the-host") {
				t.Fatalf("the host's output is not in the job log; nothing was tested")
			}
			checkNoHostCommands(t, "stdout", start.stdout, tt.code)
			checkNoHostCommands(t, "stderr", start.stderr, 0)
			if _, ok := start.outputs["pwned"]; ok {
				t.Errorf("the host set an output")
			}
			if tt.code == 0 {
				stop := w.step(map[string]string{"mode": "stop", "label": start.outputs["label"], "lease-id": start.outputs["lease-id"]})
				if stop.code != 0 {
					t.Errorf("stop: exit %d", stop.code)
				}
			}
		})
	}
}
