#!/usr/bin/env bash
# Runs the demo on a fresh Debian machine with Go: installs OpenSSH's sshd
# and curl if missing (the demo's hosts are real sshd servers on loopback),
# then runs `crabbox-runner demo`. No credentials, no traffic off loopback.
set -euo pipefail
cd "$(dirname "$0")/.."
sudo=""
if [ "$(id -u)" -ne 0 ]; then sudo="sudo"; fi
need=()
[ -x /usr/sbin/sshd ] || need+=(openssh-server)
command -v curl >/dev/null 2>&1 || need+=(curl)
if [ ${#need[@]} -gt 0 ]; then
  $sudo apt-get update -qq
  printf '#!/bin/sh\nexit 101\n' | $sudo tee /usr/sbin/policy-rc.d >/dev/null
  $sudo chmod +x /usr/sbin/policy-rc.d
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
  $sudo rm -f /usr/sbin/policy-rc.d
fi
exec go run ./cmd/crabbox-runner demo "$@"
