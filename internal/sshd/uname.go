package sshd

import "strings"

// UnameShim is a uname that answers machine for -m (and -p, -i) and
// leaves every other question to the real one. Put first on a test host's
// PATH (Options.Env), it makes the host look like another architecture to
// the scripts that ask uname, such as the bootstrap's host script and the
// runner: "aarch64" for an arm64 host like Lambda's GH200.
func UnameShim(machine string) string {
	m := strings.NewReplacer("'", "", "\n", "").Replace(machine)
	return `#!/bin/sh
# uname shim: this host poses as a '` + m + `' machine.
case "$*" in
-m | -p | -i | --machine | --processor | --hardware-platform) echo '` + m + `' ;;
*) PATH=/usr/bin:/bin exec uname "$@" ;;
esac
`
}
