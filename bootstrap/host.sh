#!/usr/bin/env bash
# crabbox-runner host script. Uploaded over SSH on every bootstrap and run
# one phase per SSH session:
#
#   host.sh arch                                    print x64 or arm64
#   host.sh gpu-check                               report what nvidia-smi tells of the GPUs
#   host.sh install URL VERSION SHA256 ARCH NAME [WAIT]
#                                                   take the image's runner of VERSION,
#                                                   or fetch (or take the boot-time
#                                                   prefetch's), verify, unpack it
#   host.sh start NAME                              start it; JIT config on stdin
#
# Everything lives under ROOT. The JIT config is a secret: it is read from
# stdin into a variable and handed to the runner through its environment,
# never echoed, never on a command line. Never add `set -x` here.
#
# This script's own files (itself, the cache, runner directories, logs)
# are private: umask 077. The runner, and so every job step, gets the
# umask runners normally have, 022 (see phase_start).
set -euo pipefail
umask 077

ROOT="${CRABBOX_HOST_ROOT:-$HOME}/crabbox"

# Exit codes the Go side tells apart.
EXIT_GPU=10
EXIT_CHECKSUM=11
EXIT_START=12

die() {
	local code=$1
	shift
	printf 'crabbox: %s\n' "$*" >&2
	exit "$code"
}

valid_name() {
	[[ $1 =~ ^[A-Za-z0-9][A-Za-z0-9._-]*$ ]] || die 2 "invalid name: $1"
}

phase_arch() {
	local m
	m=$(uname -m)
	case "$m" in
	x86_64 | amd64) echo x64 ;;
	aarch64 | arm64) echo arm64 ;;
	*) die 2 "unsupported machine architecture: $m" ;;
	esac
}

# phase_gpu_check prints what nvidia-smi tells of the GPUs as tagged lines,
# for the Go side (bootstrap/gpureport.go) to judge; only a host without
# nvidia-smi at all fails here. Every GPU failure (a GPU that does not
# answer, nvidia-smi exiting non-zero, a field the driver does not know)
# is a finding reported, not a crash:
#
#   gpu <index>, <name>, <memory.total MiB>, <driver_version>, <pci.bus_id>
#   health <index>, <ecc uncorrected volatile>, <retired pending>, <remap pending>, <remap failure>
#   field <name> <index>, <value>     (health field by field, old drivers)
#   cuda <X.Y>                        (from nvidia-smi's header)
#   say <line>                        (anything else nvidia-smi printed)
#   exit <query> <status>             (each call's exit status)
phase_gpu_check() {
	command -v nvidia-smi >/dev/null 2>&1 || die "$EXIT_GPU" "nvidia-smi not found on PATH"
	echo "crabbox-gpu-report 1"
	local out rc=0
	out=$(nvidia-smi --query-gpu=index,name,memory.total,driver_version,pci.bus_id --format=csv,noheader,nounits 2>&1) || rc=$?
	tag gpu "$out"
	echo "exit gpu $rc"
	[ "$rc" -eq 0 ] || return 0

	# Memory health, where the GPU keeps it. Drivers before the Ampere
	# generation's do not know remapped_rows.*: the whole query then fails
	# naming the field, so each field is asked alone.
	local health=ecc.errors.uncorrected.volatile.total,retired_pages.pending,remapped_rows.pending,remapped_rows.failure
	rc=0
	out=$(nvidia-smi --query-gpu="index,$health" --format=csv,noheader,nounits 2>&1) || rc=$?
	if [ "$rc" -ne 0 ] && [[ $out == *"is not a valid field"* ]]; then
		local f
		for f in ${health//,/ }; do
			rc=0
			out=$(nvidia-smi --query-gpu="index,$f" --format=csv,noheader,nounits 2>&1) || rc=$?
			tag "field $f" "$out"
			echo "exit $f $rc"
		done
	else
		tag health "$out"
		echo "exit health $rc"
	fi

	# The CUDA version the driver supports is no --query-gpu field; the
	# header of the plain output carries it ("CUDA Version: 12.4"), and
	# `nvidia-smi -q` a line "CUDA Version : 12.4".
	local cuda
	cuda=$(nvidia-smi 2>/dev/null | sed -n 's/.*CUDA Version: *\([0-9][0-9.]*\).*/\1/p' | sed -n 1p) || true
	if [ -z "$cuda" ]; then
		cuda=$(nvidia-smi -q 2>/dev/null | sed -n 's/^CUDA Version *: *\([0-9][0-9.]*\).*/\1/p' | sed -n 1p) || true
	fi
	[ -z "$cuda" ] || echo "cuda $cuda"
}

# tag prints each line of its second argument after the tag: lines that
# look like a query's answer (they start with an index) as they are, and
# any other line (nvidia-smi's errors) as "say".
tag() {
	local t=$1 line
	while IFS= read -r line; do
		[ -n "${line//[[:space:]]/}" ] || continue
		if [[ $line =~ ^[0-9]+, ]]; then
			printf '%s %s\n' "$t" "$line"
		else
			printf 'say %s\n' "$line"
		fi
	done <<<"$2"
}

download() {
	local url=$1 dest=$2
	if command -v curl >/dev/null 2>&1; then
		curl -fsSL --retry 3 --connect-timeout 30 -o "$dest" "$url"
	elif command -v wget >/dev/null 2>&1; then
		wget -q --tries=3 --timeout=30 -O "$dest" "$url"
	else
		die 2 "neither curl nor wget is installed"
	fi
}

# stop_runner kills a runner an earlier attempt started in dir, so that a
# retried bootstrap starts from a clean directory.
stop_runner() {
	local dir=$1 pid
	[ -f "$dir/runner.pid" ] || return 0
	pid=$(cat "$dir/runner.pid")
	[[ $pid =~ ^[0-9]+$ ]] || return 0
	if [ "$(readlink "/proc/$pid/cwd" 2>/dev/null)" = "$(cd "$dir" && pwd -P)" ]; then
		# run.sh was started by setsid, so it leads its own process group.
		kill -KILL -- "-$pid" 2>/dev/null || true
	fi
}

# Facts the Go side reads from the end of the install phase's output (bootstrap.go
# parseInstall): how the runner was got and what was done about its
# dependencies, and how long the phase's steps took.
#
#   crabbox-runner prefetched|waited|downloaded|image
#   crabbox-deps skipped|installed|prefetched|failed|none
#   crabbox-time <step> <milliseconds>
#   crabbox-fetch prefetch|install <age> <download> <total> <bytes>
#
# crabbox-fetch is the runner tarball's download, when this install got the
# runner from one: by whom; how long ago it began, as the line is printed
# (an age, not a time: the host's clock need not agree with the Go side's);
# the transfer, and the transfer, checksum and unpack together
# (milliseconds); the tarball's size in bytes.

# now_ms is the wall clock in milliseconds (GNU date).
now_ms() { date +%s%3N; }

# uptime_ms is the time since the kernel booted, in milliseconds, or
# nothing. The fetch is timed on it, not on the wall clock: the prefetch
# starts early in the boot (on Lambda in cloud-init's network stage, which
# systemd orders before chronyd), and a clock stepped once NTP answers
# would put the download's start anywhere. A container (Vast) reads its
# host's uptime: as steady.
uptime_ms() {
	local u= _
	read -r u _ </proc/uptime 2>/dev/null || true
	[[ $u =~ ^[0-9]+\.[0-9]{2}$ ]] && echo $((10#${u/./} * 10))
	return 0
}

# fetch_fact prints the crabbox-fetch line from FETCHED ("by began
# downloaded unpacked bytes", uptime_ms times as .fetched has them), if it
# is well formed.
fetch_fact() {
	local by p e d n now
	read -r by p e d n <<<"${FETCHED:-}" || true
	[[ $p =~ ^[0-9]{1,15}$ && $e =~ ^[0-9]{1,15}$ && $d =~ ^[0-9]{1,15}$ && $n =~ ^[0-9]{1,15}$ ]] || return 0
	now=$(uptime_ms)
	[ -n "$now" ] && ((p <= e && e <= d && d <= now)) || return 0
	echo "crabbox-fetch $by $((now - p)) $((e - p)) $((d - p)) $n"
}

# deps_present reports whether the libraries the runner loads are known to
# the dynamic linker already, asked the way the loader finds them
# (ldconfig -p lists the linker cache). The runner's .NET needs libicu,
# libssl, Kerberos' GSSAPI and zlib (actions/runner
# src/Misc/layoutbin/installdependencies.sh installs those: liblttng-ust,
# libkrb5, zlib, libssl, libicu; its docs/start/envlinux.md lists the same).
# lttng is only CoreCLR's tracing provider, not needed to run: Arch Linux's
# dotnet-runtime package has lttng-ust as "(optional) - CoreCLR tracing"
# (archlinux.org/packages/extra/x86_64/dotnet-runtime), so it is not asked
# for.
deps_present() {
	local l
	l=$(ldconfig -p 2>/dev/null) || return 1
	local x
	for x in libicuuc.so libssl.so libgssapi_krb5.so libz.so; do
		[[ $l == *"$x"* ]] || return 1
	done
}

# take_lock waits for the cache lock prefetch.sh holds while it downloads,
# unpacks and installs dependencies, at most $1 seconds, on fd 9. It sets
# LOCK_WAITED=1 when it had to wait. flock(1) is util-linux's, Essential
# in Debian and Ubuntu (all the CUDA and Lambda images); an image without
# it gets no prefetch (prefetch.sh exits), so nothing to wait for, and a
# mkdir lock (below) keeps two installs apart.
take_lock() {
	local wait=$1
	if command -v flock >/dev/null 2>&1; then
		exec 9>>"$ROOT/cache/.lock"
		flock -n 9 && return 0
		echo "waiting for the runner prefetch under way" >&2
		LOCK_WAITED=1
		if ! flock -w "$wait" 9; then
			echo "warning: the prefetch still holds the cache lock after ${wait}s; downloading anyway" >&2
		fi
		return 0
	fi
	local i=0
	until mkdir "$ROOT/cache/.lock.d" 2>/dev/null; do
		i=$((i + 1))
		[ "$i" -lt "$wait" ] || {
			echo "warning: cache lock not free after ${wait}s; going on" >&2
			return 0
		}
		LOCK_WAITED=1
		sleep 1
	done
	trap 'rmdir "$ROOT/cache/.lock.d" 2>/dev/null || true' EXIT
}

# Where an image may carry the runner already unpacked, in the order
# looked at. The file system the image's paths are in is
# CRABBOX_IMAGE_FS, empty (/) on real hosts: the fakes' hosts share the
# test machine's file system and point it at their image's directory.
#   CRABBOX_IMAGE_RUNNER  a path the host's environment names. An image's
#                         ENV reaches its container's processes (Vast's
#                         onstart) but not an SSH login, whose environment
#                         OpenSSH's sshd builds afresh (sshd(8), LOGIN
#                         PROCESS): set it in /etc/environment, or rely on
#                         the paths below.
#   /opt/actions-runner   examples/images/cuda-runner/Dockerfile
#   /home/runner          GitHub's own image, ghcr.io/actions/actions-runner
#                         (actions/runner images/Dockerfile: the release is
#                         unpacked in a build stage and copied into WORKDIR
#                         /home/runner)
#   /actions-runner       where that Dockerfile's build stage unpacks it
image_runner_dirs() {
	local fs=${CRABBOX_IMAGE_FS:-}
	[ -z "${CRABBOX_IMAGE_RUNNER:-}" ] || printf '%s\n' "$CRABBOX_IMAGE_RUNNER"
	printf '%s\n' "$fs/opt/actions-runner" "$fs/home/runner" "$fs/actions-runner"
}

# image_runner VERSION DEST copies the first runner of VERSION an image
# carries into DEST (absent), for the cache: so the image's own tree is
# never run or written (the listener writes its _diag logs next to its
# bin/, even for --version: actions/runner src/Runner.Listener/Program.cs
# makes its HostContext, whose trace listener writes _diag, before it reads
# the arguments). A tree counts when it has what phase_start runs (run.sh,
# which starts bin/Runner.Listener) and its listener names the version
# wanted: `Runner.Listener --version` prints BuildConstants.RunnerPackage.
# Version alone and exits 0 (src/Runner.Listener/Runner.cs,
# ExecuteCommand). It runs with DOTNET_SYSTEM_GLOBALIZATION_INVARIANT so
# that an image without libicu still answers (the dependencies are dealt
# with after, as for a downloaded runner), and without
# ACTIONS_RUNNER_PRINT_LOG_TO_STDOUT (GitHub's image sets it) so that no
# trace lines mix with the answer. A listener of another architecture
# cannot run at all, so fails here too.
#
# No checksum exists for an unpacked tree: what the release's SHA-256
# guards (the bytes between GitHub and this host) is here the image's
# own content, which the user chose and pulled like every other program
# in it that their jobs run. The version check keeps a stale image from
# giving a runner GitHub would refuse or update.
image_runner() {
	local want=$1 dest=$2 d have
	while IFS= read -r d; do
		{ [ -x "$d/bin/Runner.Listener" ] && [ -x "$d/run.sh" ]; } || continue
		# A tree holding ROOT itself (the login user's home is the
		# image's runner home) would be copied into itself.
		[[ "$ROOT/" != "$d/"* ]] || continue
		rm -rf "$dest"
		# Hard links where the file system allows: overlayfs copies a
		# lower layer's file up before linking it, a plain file system
		# links; a user who may not link another's files
		# (fs.protected_hardlinks) or another mount gets a copy.
		cp -al "$d" "$dest" 2>/dev/null || {
			rm -rf "$dest"
			cp -a "$d" "$dest" || continue
		}
		have=$(cd "$dest" && timeout 60 env -u ACTIONS_RUNNER_PRINT_LOG_TO_STDOUT DOTNET_SYSTEM_GLOBALIZATION_INVARIANT=1 \
			./bin/Runner.Listener --version 2>/dev/null) || have=
		rm -rf "$dest/_diag"
		if grep -qxF "$want" <<<"$have"; then
			echo "the image has runner $want in $d: not downloading it"
			touch "$dest/.image"
			return 0
		fi
		echo "the image's runner in $d is not version $want (it says: $(head -c 64 <<<"$have" | tr -cd '[:alnum:]._-')); not using it" >&2
		rm -rf "$dest"
	done < <(image_runner_dirs)
	return 1
}

phase_install() {
	[ $# -eq 5 ] || [ $# -eq 6 ] || die 2 "usage: install URL VERSION SHA256 ARCH NAME [LOCK_WAIT_SECONDS]"
	local url=$1 version=$2 sum=$3 arch=$4 name=$5 wait=${6:-600}
	valid_name "$version"
	valid_name "$arch"
	valid_name "$name"
	[[ $sum =~ ^[0-9a-f]{64}$ ]] || die 2 "invalid sha256: $sum"
	[[ $wait =~ ^[0-9]+$ ]] || die 2 "invalid lock wait: $wait"

	local cache="$ROOT/cache/runner-$version-$arch-${sum:0:16}"
	mkdir -p "$ROOT/cache" "$ROOT/runners" "$ROOT/.crabbox"
	local t0 got=prefetched
	FACTS=""
	t0=$(now_ms)
	[ -f "$cache/.complete" ] || got=waited
	LOCK_WAITED=0
	take_lock "$wait"
	FACTS+="crabbox-time lock $(($(now_ms) - t0))"$'\n'
	if [ "$got" = waited ] && [ "$LOCK_WAITED" = 0 ]; then
		# Nothing under way: a prefetch that failed, none at all, or one
		# that finished between the two looks.
		[ -f "$cache/.complete" ] && got=prefetched || got=downloaded
	fi
	if [ ! -f "$cache/.complete" ]; then
		local img
		img=$(mktemp -d "$ROOT/cache/.image.XXXXXX")
		TMP=$img
		trap 'rm -rf "$TMP"; rmdir "$ROOT/cache/.lock.d" 2>/dev/null || true' EXIT
		t0=$(now_ms)
		if image_runner "$version" "$img/x"; then
			touch "$img/x/.complete"
			rm -rf "$cache"
			mv "$img/x" "$cache"
			FACTS+="crabbox-time image $(($(now_ms) - t0))"$'\n'
		fi
		rm -rf "$img"
	fi
	if [ ! -f "$cache/.complete" ]; then
		got=downloaded
		t0=$(now_ms)
		local tmp
		tmp=$(mktemp -d "$ROOT/cache/.download.XXXXXX")
		TMP=$tmp
		trap 'rm -rf "$TMP"; rmdir "$ROOT/cache/.lock.d" 2>/dev/null || true' EXIT
		echo "downloading runner $version ($arch)"
		local u0 u1
		u0=$(uptime_ms)
		download "$url" "$tmp/runner.tar.gz" || die 2 "download of $url failed"
		u1=$(uptime_ms)
		local have
		have=$(sha256sum "$tmp/runner.tar.gz" | cut -d' ' -f1)
		if [ "$have" != "$sum" ]; then
			die "$EXIT_CHECKSUM" "runner tarball checksum mismatch: expected sha256 $sum, got $have (from $url)"
		fi
		mkdir "$tmp/x"
		tar -xzf "$tmp/runner.tar.gz" -C "$tmp/x" || die 2 "cannot extract the runner tarball"
		# As the prefetch writes it (prefetch.sh).
		echo "$u0 $u1 $(uptime_ms) $(stat -c %s "$tmp/runner.tar.gz")" >"$tmp/x/.fetched"
		touch "$tmp/x/.complete"
		rm -rf "$cache"
		mv "$tmp/x" "$cache"
		rm -rf "$tmp"
		FACTS+="crabbox-time download $(($(now_ms) - t0))"$'\n'
	fi
	# The runner came from the image whoever put it in the cache (the
	# prefetch, or this install just now): nothing was downloaded.
	[ ! -f "$cache/.image" ] || got=image
	FACTS+="crabbox-runner $got"$'\n'
	# The download's times, told once: a later install on this host
	# downloaded nothing.
	FETCHED=
	if [ "$got" != image ] && [ -f "$cache/.fetched" ]; then
		FETCHED=$(head -c 200 "$cache/.fetched")
		mv -f "$cache/.fetched" "$cache/.fetched.told"
		[ "$got" = downloaded ] && FETCHED="install $FETCHED" || FETCHED="prefetch $FETCHED"
	fi

	local dir="$ROOT/runners/$name"
	stop_runner "$dir"
	rm -rf "$dir"
	# Hard links, not a copy of ~200 MB: the runner only adds files to its
	# directory (.runner, .credentials, .env, .path, _diag, _work, and
	# run-helper.sh, which run.sh copies from run-helper.sh.template and is
	# not in the tarball: actions/runner src/Misc/layoutroot/run.sh, whose
	# layoutroot has only the .template), and its self-update moves bin/
	# and externals/ aside and links new ones rather than writing into them
	# (src/Misc/layoutbin/update.sh.template; it rewrites runsvc.sh in
	# place, a file only svc.sh install makes). A JIT runner (our only kind) is never reconfigured. So no
	# shipped file is written through a link into the cache, which only a
	# retried install on this same host reads again. A file system that
	# cannot link (the cache on another mount) gets a copy.
	t0=$(now_ms)
	cp -al "$cache" "$dir" 2>/dev/null || {
		rm -rf "$dir"
		mkdir -p "$dir"
		cp -a "$cache/." "$dir/"
	}
	rm -f "$dir/.complete" "$dir/.image"
	FACTS+="crabbox-time copy $(($(now_ms) - t0))"$'\n'

	# Dependencies are per host, and need root. The marker says who dealt
	# with them: prefetch.sh at boot, or an earlier install.
	t0=$(now_ms)
	local done_marker="$ROOT/.crabbox/dependencies-installed" deps
	if [ -f "$done_marker" ]; then
		deps=$(cat "$done_marker")
		[[ $deps =~ ^(skipped|installed|prefetched)$ ]] || deps=installed
	elif deps_present; then
		echo "the runner's libraries are present (ldconfig -p): skipping installdependencies.sh"
		deps=skipped
		echo skipped >"$done_marker"
	elif [ ! -x "$dir/bin/installdependencies.sh" ]; then
		echo "no bin/installdependencies.sh in the runner; skipping dependencies"
		deps=none
	else
		local rc=0
		echo "installing the runner's dependencies (bin/installdependencies.sh)"
		if [ "$(id -u)" -eq 0 ]; then
			"$dir/bin/installdependencies.sh" || rc=$?
		elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
			sudo -n "$dir/bin/installdependencies.sh" || rc=$?
		else
			echo "not root and no passwordless sudo: skipping runner dependencies" >&2
			rc=-1
		fi
		deps=failed
		if [ "$rc" -eq 0 ]; then
			deps=installed
			echo installed >"$done_marker"
		elif [ "$rc" -gt 0 ]; then
			# Images often have the libraries already; if not, the runner
			# crashes at start and that phase reports it.
			echo "warning: installdependencies.sh exited with status $rc" >&2
		fi
	fi
	FACTS+="crabbox-time deps $(($(now_ms) - t0))"$'\n'
	FACTS+="crabbox-deps $deps"$'\n'
	echo "runner $version installed in $dir"
	# Last, so that no installer's output pushes them out of what the Go
	# side keeps (the tail of stdout).
	printf '%s' "$FACTS"
	fetch_fact
}

phase_start() {
	[ $# -eq 1 ] || die 2 "usage: start NAME"
	local name=$1
	valid_name "$name"
	local dir="$ROOT/runners/$name"
	[ -x "$dir/run.sh" ] || die "$EXIT_START" "no runner installed in $dir"

	# Builtins only from here until the runner starts: the JIT config must
	# not reach any command line.
	local jit=""
	IFS= read -r jit || true
	[ -n "$jit" ] || die "$EXIT_START" "no JIT config on stdin"
	export ACTIONS_RUNNER_INPUT_JITCONFIG="$jit"
	unset jit
	if [ "${EUID:-1}" -eq 0 ]; then
		export RUNNER_ALLOW_RUNASROOT=1
	fi

	cd "$dir"
	# runner.log is made here, under 077, so it stays 0600 while the
	# runner writes to it. The runner starts with umask 022, as on any
	# machine set up the usual way: files a job writes in its workspace
	# are readable by the job's other users and containers. The runner
	# directory itself stays 0700.
	: >runner.log
	umask 022
	setsid nohup ./run.sh >>runner.log 2>&1 </dev/null &
	local pid=$!
	umask 077
	unset ACTIONS_RUNNER_INPUT_JITCONFIG
	echo "$pid" >runner.pid

	# A runner that cannot start (missing libraries, bad config) exits at
	# once; one that is alive after this is connecting to GitHub.
	local _
	for _ in 1 2 3 4 5 6 7 8 9 10; do
		sleep 0.3
		if ! kill -0 "$pid" 2>/dev/null; then
			# A runner that connected may take a job at once and, a JIT
			# runner, be done with it within this check: that is a start.
			# run.sh's exit status cannot tell (it exits 0 on fatal errors
			# too), the listener's own "Listening for Jobs" line can.
			if grep -qi "listening for jobs" runner.log 2>/dev/null; then
				echo "runner connected and has already finished its job"
				return 0
			fi
			echo "runner exited right after start; last lines of runner.log:" >&2
			tail -n 20 runner.log >&2 || true
			die "$EXIT_START" "runner $name did not start"
		fi
	done
	echo "runner $name started (pid $pid)"
}

phase=${1:-}
[ $# -gt 0 ] && shift
case "$phase" in
arch) phase_arch "$@" ;;
gpu-check) phase_gpu_check "$@" ;;
install) phase_install "$@" ;;
start) phase_start "$@" ;;
*) die 2 "unknown phase: ${phase:-<none>} (want arch, gpu-check, install or start)" ;;
esac
