#!/usr/bin/env bash
# Runs every test of crabbox-runner on a fresh Debian machine: installs what
# the tests need when it is missing (OpenSSH's sshd for the loopback hosts,
# cloud-init to validate user-data, curl for the host script, PostgreSQL for
# the store suite), then runs gofmt, go vet and go test -race. The tests get
# a throwaway PostgreSQL server of their own (scripts/lib/postgres.sh),
# removed when the script ends, whether the tests pass or not; set
# CRABBOX_TEST_POSTGRES_URL to use a server of yours instead.
#
# Usage: scripts/test.sh [go test flags...]   e.g. scripts/test.sh -run TestServe ./cmd/...
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=lib/postgres.sh
. scripts/lib/postgres.sh

sudo=""
if [ "$(id -u)" -ne 0 ]; then sudo="sudo"; fi

need=()
[ -x /usr/sbin/sshd ] || need+=(openssh-server)
command -v cloud-init >/dev/null 2>&1 || need+=(cloud-init)
command -v curl >/dev/null 2>&1 || need+=(curl)
command -v shellcheck >/dev/null 2>&1 || need+=(shellcheck)
command -v ssh-keygen >/dev/null 2>&1 || need+=(openssh-client)
ls /usr/lib/postgresql/*/bin/postgres >/dev/null 2>&1 || need+=(postgresql)
command -v chromium >/dev/null 2>&1 || need+=(chromium)
if [ ${#need[@]} -gt 0 ]; then
  echo "== installing: ${need[*]}"
  $sudo apt-get update -qq
  # policy-rc.d keeps the packages' own services from starting: the tests
  # start what they need on loopback and stop it again.
  printf '#!/bin/sh\nexit 101\n' | $sudo tee /usr/sbin/policy-rc.d >/dev/null
  $sudo chmod +x /usr/sbin/policy-rc.d
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
  $sudo rm -f /usr/sbin/policy-rc.d
fi

echo "== gofmt"
# Tracked files that still exist (a change in progress may delete some).
gofiles=$( (git ls-files '*.go' 2>/dev/null || find . -name '*.go') | while read -r f; do [ -e "$f" ] && echo "$f"; done)
unformatted=$(gofmt -l $gofiles)
if [ -n "$unformatted" ]; then
  echo "gofmt would change:"; echo "$unformatted"; exit 1
fi

echo "== go vet"
go vet ./...

trap pg_stop EXIT
trap 'exit 130' INT   # run the EXIT trap on ^C and kill too
trap 'exit 143' TERM
pg_start

echo "== go test -race"
if [ $# -gt 0 ]; then
  go test -race -count=1 "$@"
else
  go test -race -count=1 -timeout 60m ./...
fi
if [ $# -eq 0 ]; then
  # A short fuzzing pass on the two parsers that take untrusted or
  # hand-written input; their seed corpora live in testdata/fuzz.
  # The budgets are counts of inputs (about 10 s each on a quiet 2-core
  # machine), not durations: Go 1.26's fuzz coordinator can report its
  # own -fuzztime deadline as a failure ("context deadline exceeded", no
  # crasher) when a loaded machine starves a worker at that moment
  # (go.dev/issue/75804, fixed in Go 1.27). CI failed on it once.
  echo "== fuzz (brief)"
  go test -run='^$' -fuzz='^FuzzWebhook$' -fuzztime="${FUZZTIME:-40000x}" ./webhook/
  go test -run='^$' -fuzz='^FuzzConfig$' -fuzztime="${FUZZTIME:-80000x}" ./internal/config/
fi
echo "== all tests passed"
