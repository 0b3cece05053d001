#!/usr/bin/env bash
# Fake actions/runner @VERSION@: bin/installdependencies.sh. Needs root,
# like the real one, and installs nothing: the fake runner is bash + curl.
set -u

if [ "$(id -u)" -ne 0 ]; then
    echo "Need to run with sudo privilege" >&2
    exit 1
fi

for tool in bash curl base64 sed; do
    if ! command -v "$tool" >/dev/null 2>&1; then
        echo "fake runner: missing $tool" >&2
        exit 1
    fi
done
# The real script's package installs take their time (githubtest
# TarballOptions.InstallDepsTime; 0 by default).
sleep @DEPS_SECONDS@
echo "fake runner: nothing to install"
exit 0
