#!/usr/bin/env bash
# Fake actions/runner @VERSION@ for crabbox-runner's tests: run.sh.
# Like the real one it refuses root unless RUNNER_ALLOW_RUNASROOT is set,
# then runs the listener; like the real one it exits 0 whatever happened
# (the job's result is reported to GitHub, not through this exit code).
set -u

RUNNER_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"

if [ "$(id -u)" -eq 0 ] && [ -z "${RUNNER_ALLOW_RUNASROOT:-}" ]; then
    echo "Must not run with sudo" >&2
    exit 1
fi

"$RUNNER_ROOT/bin/Runner.Listener" run "$@"
exit 0
