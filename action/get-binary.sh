#!/usr/bin/env bash
# Gets the crabbox-runner binary for action.yml.
#
#   get-binary.sh fetch   download the release binary of the action's ref and
#                         verify it against the release's checksums.txt; when
#                         the ref has no release (a branch, a fork, a commit, a
#                         local checkout) say so in the outputs: build=true
#   get-binary.sh build   build it from the action's source with Go
#
# Outputs (GITHUB_OUTPUT): path (the binary), build (true when it must be
# built), have-go (a new enough Go is on PATH), source-hash (of go.sum, for
# the module cache key).
#
# Environment: GITHUB_ACTION_PATH, RUNNER_TEMP, RUNNER_OS, RUNNER_ARCH and
# GITHUB_SERVER_URL from the runner; CRABBOX_ACTION_REF and
# CRABBOX_ACTION_REPOSITORY from action.yml, which reads github.action_ref and
# github.action_repository in env: because they are empty inside a
# composite's run: script (actions/runner#2473). CRABBOX_RELEASE_BASE_URL
# replaces GITHUB_SERVER_URL (tests, mirrors); CRABBOX_RELEASE_RETRY_DELAY
# (seconds, default 10) is the pause before fetching a release again.
set -euo pipefail

src=${GITHUB_ACTION_PATH:?GITHUB_ACTION_PATH is not set}
ref=${CRABBOX_ACTION_REF:-}
repo=${CRABBOX_ACTION_REPOSITORY:-}
server=${CRABBOX_RELEASE_BASE_URL:-${GITHUB_SERVER_URL:-https://github.com}}
out=${GITHUB_OUTPUT:-/dev/null}

# An action used as owner/repo@ref lives in .../_actions/<owner>/<repo>/<ref>:
# the fallback when the runner left the context empty.
if [[ -z $ref || -z $repo ]] && [[ $src =~ /_actions/([^/]+)/([^/]+)/([^/]+)/?$ ]]; then
	repo=${BASH_REMATCH[1]}/${BASH_REMATCH[2]}
	ref=${BASH_REMATCH[3]}
fi

dir=${RUNNER_TEMP:-${TMPDIR:-/tmp}}/crabbox-runner/${ref:-source}
bin=$dir/crabbox-runner

now() { date +%s.%N; }
since() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1fs", b - a }'; }

sha256() {
	if command -v sha256sum >/dev/null; then
		sha256sum "$1" | cut -d' ' -f1
	else
		shasum -a 256 "$1" | cut -d' ' -f1
	fi
}

platform() {
	local os arch
	case ${RUNNER_OS:-$(uname -s)} in
	Linux) os=linux ;;
	*) return 1 ;;
	esac
	case ${RUNNER_ARCH:-$(uname -m)} in
	X64 | x86_64) arch=amd64 ;;
	ARM64 | aarch64 | arm64) arch=arm64 ;;
	*) return 1 ;;
	esac
	echo "$os-$arch"
}

need_build() {
	echo "$1; building crabbox-runner from the action's source instead"
	local have=false want
	want=$(awk '$1 == "go" { print $2; exit }' "$src/go.mod")
	if command -v go >/dev/null; then
		local v
		v=$(go env GOVERSION 2>/dev/null | sed 's/^go//')
		if [[ -n $v && $(printf '%s\n%s\n' "$want" "$v" | sort -V | head -n1) == "$want" ]]; then
			have=true
		fi
	fi
	{
		echo "build=true"
		echo "have-go=$have"
		echo "path=$bin"
		echo "source-hash=$(sha256 "$src/go.sum" | cut -c1-16)"
	} >>"$out"
}

# curl_to FILE URL: download, following redirects (release assets live on
# another host); prints the HTTP status, 000 when the request failed.
curl_to() {
	curl --silent --show-error --location --retry 3 --retry-connrefused --connect-timeout 10 --max-time 300 \
		--output "$1" --write-out '%{http_code}' "$2" || true
}

fetch() {
	if [[ -x $bin ]]; then
		echo "crabbox-runner already here from an earlier step: $("$bin" version)"
		{
			echo "build=false"
			echo "path=$bin"
		} >>"$out"
		return
	fi
	if [[ -z $ref || -z $repo ]]; then
		need_build "the action runs from a checkout (uses: ./), which has no release"
		return
	fi
	if [[ $ref =~ ^[0-9a-f]{40}$ ]]; then
		need_build "ref $ref is a commit, which has no release"
		return
	fi
	local plat
	if ! plat=$(platform); then
		need_build "no release binary for ${RUNNER_OS:-?}/${RUNNER_ARCH:-?}"
		return
	fi
	local base=$server/$repo/releases/download/$ref asset=crabbox-runner-$plat status
	tmp=$(mktemp -d)
	trap 'rm -rf "$tmp"' EXIT
	local start
	start=$(now)
	status=$(curl_to "$tmp/checksums.txt" "$base/checksums.txt")
	if [[ $status != 200 ]]; then
		need_build "no release $ref of $repo (checksums.txt: HTTP $status)"
		return
	fi
	local want
	want=$(awk -v f="$asset" '$2 == f || $2 == "*" f { print $1; exit }' "$tmp/checksums.txt")
	if [[ -z $want ]]; then
		need_build "release $ref of $repo has no $asset"
		return
	fi
	local got attempt
	for attempt in 1 2; do
		status=$(curl_to "$tmp/$asset" "$base/$asset")
		if [[ $status != 200 ]]; then
			echo "::error::downloading $base/$asset failed (HTTP $status)"
			exit 1
		fi
		got=$(sha256 "$tmp/$asset")
		[[ $got == "$want" ]] && break
		if [[ $attempt == 1 ]]; then
			# A release being updated (the moving major tag) can hold the new
			# binary and the old checksums for a moment.
			echo "checksum mismatch for $asset; fetching the release again in ${CRABBOX_RELEASE_RETRY_DELAY:-10}s"
			sleep "${CRABBOX_RELEASE_RETRY_DELAY:-10}"
			curl_to "$tmp/checksums.txt" "$base/checksums.txt" >/dev/null
			want=$(awk -v f="$asset" '$2 == f || $2 == "*" f { print $1; exit }' "$tmp/checksums.txt")
			continue
		fi
		echo "::error::checksum mismatch for $base/$asset: got sha256 $got, checksums.txt says $want; not running it"
		exit 1
	done
	mkdir -p "$dir"
	chmod 755 "$tmp/$asset"
	mv -f "$tmp/$asset" "$bin"
	echo "downloaded $asset of $repo@$ref and verified its sha256 ($want) in $(since "$start"): $("$bin" version)"
	{
		echo "build=false"
		echo "path=$bin"
	} >>"$out"
}

build() {
	local start version=${ref:-dev}
	start=$(now)
	mkdir -p "$dir"
	(
		cd "$src"
		CGO_ENABLED=0 go build -trimpath -ldflags "-s -w -X main.version=$version" -o "$bin" ./cmd/crabbox-runner
	)
	echo "built crabbox-runner from $src in $(since "$start"): $("$bin" version)"
}

case ${1:-} in
fetch) fetch ;;
build) build ;;
*)
	echo "usage: $0 fetch|build" >&2
	exit 2
	;;
esac
