package config

import (
	"encoding/hex"
	"fmt"
	"slices"
	"strings"

	"gopkg.in/yaml.v3"
)

// RunnerArchs are the architectures whose runner tarballs a host can get,
// in actions/runner's asset names (reference §5.1: linux-x64,
// linux-arm64), which are also the names GitHub's runners/downloads
// endpoint gives in `architecture`.
var RunnerArchs = []string{"x64", "arm64"}

// archAliases are names users may write for an architecture, with the name
// to write instead.
var archAliases = map[string]string{
	"amd64": "x64", "x86_64": "x64", "x86-64": "x64",
	"aarch64": "arm64",
}

// Checksums are the SHA-256 checksums of the runner tarballs, by
// architecture. In YAML, runner.sha256 is either one string, the x64
// tarball's checksum (as before arm64 hosts were supported), or a map of
// architecture to checksum: {x64: "…", arm64: "…"}.
type Checksums map[string]string

// UnmarshalYAML reads a string as the x64 checksum, or a map by
// architecture.
func (c *Checksums) UnmarshalYAML(n *yaml.Node) error {
	switch n.Kind {
	case yaml.ScalarNode:
		if n.Tag == "!!null" {
			*c = nil
			return nil
		}
		*c = Checksums{"x64": n.Value}
		return nil
	case yaml.MappingNode:
		m := map[string]string{}
		if err := n.Decode(&m); err != nil {
			return fmt.Errorf("runner.sha256: want a map of architecture to checksum, e.g. {x64: \"…\", arm64: \"…\"}: %w", err)
		}
		*c = m
		return nil
	}
	return fmt.Errorf("line %d: runner.sha256: want a string (the x64 tarball's checksum) or a map of architecture to checksum, e.g. {x64: \"…\", arm64: \"…\"}", n.Line)
}

// For is the configured checksum of arch's tarball, lower case; "" when
// none is configured.
func (c Checksums) For(arch string) string {
	return strings.ToLower(strings.TrimSpace(c[arch]))
}

// Archs lists the architectures with a configured checksum, sorted.
func (c Checksums) Archs() []string {
	var out []string
	for a, s := range c {
		if strings.TrimSpace(s) != "" {
			out = append(out, a)
		}
	}
	slices.Sort(out)
	return out
}

// validate checks each architecture's name and checksum. No checksum at
// all is valid: hosts then take the checksum GitHub's runners/downloads
// endpoint gives for their architecture and runner.version.
func (c Checksums) validate() error {
	keys := make([]string, 0, len(c))
	for k := range c {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, arch := range keys {
		key := "runner.sha256." + arch
		if !slices.Contains(RunnerArchs, arch) {
			hint := ""
			if to, ok := archAliases[strings.ToLower(arch)]; ok {
				hint = "; write " + to
			}
			return errf(key, "unknown architecture %q: want %s, the names of the runner's tarballs%s", arch, strings.Join(RunnerArchs, " or "), hint)
		}
		sum := strings.TrimSpace(c[arch])
		if sum == "" {
			return errf(key, "empty: give the checksum, or leave the architecture out to take GitHub's")
		}
		if b, err := hex.DecodeString(sum); err != nil || len(b) != 32 {
			return errf(key, "must be 64 hex characters (the SHA-256 of actions-runner-linux-%s-<version>.tar.gz)", arch)
		}
	}
	return nil
}
