#!/usr/bin/env bash
# Fake actions/runner @VERSION@: config.sh. The fake only knows just-in-time
# runners, which need no configuration step.
set -u

if [ "$(id -u)" -eq 0 ] && [ -z "${RUNNER_ALLOW_RUNASROOT:-}" ]; then
    echo "Must not run with sudo" >&2
    exit 1
fi

echo "This fake runner supports only just-in-time runners: ./run.sh --jitconfig <config>" >&2
exit 1
