#!/usr/bin/env bash
# Runs the time-to-runner benchmark (issue #18; docs/benchmarks.md "Time to
# runner") and prints its markdown report: the real serve against the Vast
# and Lambda fakes with drawn boot times, a real-size runner tarball at a
# realistic bandwidth and a dependency install that takes its time.
#
#   scripts/ttrbench.sh                      # every scenario, 50 jobs, scale 10
#   scripts/ttrbench.sh vast lambda          # some scenarios
#   JOBS=60 SCALE=30 SEED=7 scripts/ttrbench.sh vast vast-hedge
#   JOBS=100 SCALE=20 SEED=2 scripts/ttrbench.sh vast vast-hedge vast-hedge-2m
#
# The draws are paired on the job and the host's role (first host, hedge,
# replacement), so scenarios run with the same seed face the same boot
# times; the report compares each with its provider's plain run when both
# ran, and OUT.json holds the per-job totals for pooling seeds.
#
# Settings (environment): JOBS, SCALE, SEED, TARBALL_MB, BANDWIDTH_MBPS
# (megabytes per second), DEPS (a Go duration, e.g. 30s), IMAGE_DEPS (true:
# the Vast image has the runner's libraries, no install), IMAGE_RUNNER
# (true: the Vast image carries the runner and its libraries, nothing
# downloaded on the host, the runner's layer added to each boot),
# LAMBDA_INIT_LEAD (a Go duration: how long before SSH cloud-init's network
# stage runs the Lambda prefetch's bootcmd; 0 by default), OUT (the report
# file; a temporary one by default). Scenarios whose config key the build
# does not have yet (hedge_after, min_idle) are listed as skipped.
# Needs OpenSSH's sshd (/usr/sbin/sshd); several GB of free disk under
# TMPDIR while it runs (each booted host unpacks the tarball).
#
#   scripts/ttrbench.sh pool a.md.json b.md.json ...
#
# pools the per-job totals of earlier runs (each run's OUT.json) over their
# seeds, per scenario and setting, and compares each scenario with its
# provider's plain run over the seeds both ran.
#
#   HEDGES=0,90s,30s SEED=2 scripts/ttrbench.sh action
#   scripts/ttrbench.sh action-pool a.md.json b.md.json ...
#
# The Action mode (docs/benchmarks.md "Hedging in the Action"): workflows
# of start, GPU job and stop, one lease each, CONCURRENCY (5) at once, the
# runner in the image, each host within the Action's default boot-timeout
# (half of the 10 min timeout), once per HEDGES setting (0: off) with the
# same draws; action-pool pools their OUT.json files over seeds.
set -euo pipefail
cd "$(dirname "$0")/.."
# Settings both benchmarks read.
[ -n "${JOBS:-}" ] && export CRABBOX_TTR_JOBS="$JOBS"
[ -n "${SCALE:-}" ] && export CRABBOX_TTR_SCALE="$SCALE"
[ -n "${SEED:-}" ] && export CRABBOX_TTR_SEED="$SEED"
if [ "${1:-}" = action ] || [ "${1:-}" = action-pool ]; then
  mode=$1
  shift
  out=${OUT:-$(mktemp "${TMPDIR:-/tmp}/ttraction.XXXXXX.md")}
  export CRABBOX_TTR_OUT="$out"
  if [ "$mode" = action-pool ]; then
    [ $# -gt 0 ] || { echo "usage: scripts/ttrbench.sh action-pool OUT.json..." >&2; exit 2; }
    files=()
    for f in "$@"; do files+=("$(realpath "$f")"); done
    export CRABBOX_TTR_ACTION_POOL=$(IFS=,; echo "${files[*]}")
    test=TestTTRActionPool
  else
    export CRABBOX_TTR_ACTION_BENCH=1 CRABBOX_TTR_ACTION_HEDGES="${HEDGES:-0,90s}"
    [ -n "${CONCURRENCY:-}" ] && export CRABBOX_TTR_ACTION_CONCURRENCY="$CONCURRENCY"
    test=TestTTRActionBench
  fi
  log=$(mktemp "${TMPDIR:-/tmp}/ttraction.XXXXXX.log")
  if ! go test -count=1 -timeout 3h -run "^$test\$" -v ./cmd/crabbox-runner/ >"$log" 2>&1; then
    grep -E '^\s+(--- FAIL|ttrbench_action_test.go:[0-9]+:)' "$log" | head -40 >&2 || true
    echo "ttrbench $mode: the run failed; its log is $log" >&2
    exit 1
  fi
  cat "$out"
  echo "(log: $log; report: $out)" >&2
  exit 0
fi
if [ "${1:-}" = pool ]; then
  shift
  [ $# -gt 0 ] || { echo "usage: scripts/ttrbench.sh pool OUT.json..." >&2; exit 2; }
  files=()
  for f in "$@"; do files+=("$(realpath "$f")"); done
  out=$(mktemp "${TMPDIR:-/tmp}/ttrpool.XXXXXX.md")
  if ! log=$(CRABBOX_TTR_POOL=$(IFS=,; echo "${files[*]}") CRABBOX_TTR_OUT="$out" \
    go test -count=1 -run '^TestTTRPool$' ./cmd/crabbox-runner/ 2>&1); then
    echo "$log" | grep -E 'ttrbench_pool_test.go:[0-9]+:' | sed 's/^ *ttrbench_pool_test.go:[0-9]*: /ttrbench pool: /' >&2
    exit 1
  fi
  cat "$out"
  exit 0
fi
out=${OUT:-$(mktemp "${TMPDIR:-/tmp}/ttrbench.XXXXXX.md")}
scenarios=$(IFS=,; echo "$*")
export CRABBOX_TTR_BENCH=1 CRABBOX_TTR_SCENARIOS="$scenarios" CRABBOX_TTR_OUT="$out"
[ -n "${TARBALL_MB:-}" ] && export CRABBOX_TTR_TARBALL_MB="$TARBALL_MB"
[ -n "${BANDWIDTH_MBPS:-}" ] && export CRABBOX_TTR_BANDWIDTH_MBPS="$BANDWIDTH_MBPS"
[ -n "${DEPS:-}" ] && export CRABBOX_TTR_DEPS="$DEPS"
[ -n "${IMAGE_DEPS:-}" ] && export CRABBOX_TTR_IMAGE_DEPS="$IMAGE_DEPS"
[ -n "${IMAGE_RUNNER:-}" ] && export CRABBOX_TTR_IMAGE_RUNNER="$IMAGE_RUNNER"
[ -n "${LAMBDA_INIT_LEAD:-}" ] && export CRABBOX_TTR_LAMBDA_INIT_LEAD="$LAMBDA_INIT_LEAD"
log=$(mktemp "${TMPDIR:-/tmp}/ttrbench.XXXXXX.log")
if ! go test -count=1 -timeout 3h -run '^TestTTRBench$' -v ./cmd/crabbox-runner/ >"$log" 2>&1; then
  grep -E '^\s+(--- FAIL|ttrbench_test.go:[0-9]+: (invariant|job|scenario))' "$log" | head -40 >&2 || true
  echo "ttrbench: the run failed; its log is $log" >&2
  exit 1
fi
grep -E 'scenario .* skipped' "$log" | sed 's/^ *ttrbench_test.go:[0-9]*: /> /' || true
cat "$out"
echo "(log: $log; report: $out)" >&2
