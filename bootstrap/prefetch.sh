#!/bin/bash
# crabbox-runner boot-time prefetch (bootstrap/prefetch.go): runs as root
# while the host boots, in the background, and does the slow part of
# host.sh install before anyone logs in. It must stay short: Vast's onstart
# holds it (4048 characters in all).
#   prefetch.sh ROOT URL VERSION X64_SHA256 ARM64_SHA256
# Same cache and marker as host.sh install; same lock (flock on
# cache/.lock), held until done, so install waits rather than download too.
# No secrets: the URL, version and checksums are public.
set -u
umask 077
R=$1 U=$2 V=$3
case $(uname -m) in
x86_64 | amd64) A=x64 S=$4 ;;
aarch64 | arm64) A=arm64 S=$5 ;;
*) exit 0 ;;
esac
# No checksum for this architecture, or no flock: host.sh does it all.
[ -n "$S" ] && command -v flock >/dev/null || exit 0
# N: host.sh uptime_ms.
N() {
	local u=
	read -r u _ </proc/uptime
	[[ $u =~ ^[0-9]+\.[0-9]{2}$ ]] && echo $((10#${u/./} * 10))
	:
}
U=${U//\{version\}/$V}
U=${U//\{arch\}/$A}
C=$R/cache/runner-$V-$A-${S:0:16}
M=$R/.crabbox/dependencies-installed
mkdir -p "$R/cache" "$R/.crabbox"
# The files belong to the login user whose home R is in (root on Vast,
# ubuntu on Lambda).
O=$(stat -c %u:%g "$R")
: >>"$R/cache/.lock"
chown "$O" "$R/cache" "$R/.crabbox" "$R/cache/.lock"
exec 9>>"$R/cache/.lock"
flock 9
if [ ! -f "$C/.complete" ]; then
	T=$(mktemp -d "$R/cache/.prefetch.XXXXXX")
	# A runner of version V in the image (host.sh image_runner: where,
	# and why its copy is what gets checked) is cached, not downloaded.
	# A copy, not links: the chown below would reach the image's files.
	for d in "${CRABBOX_IMAGE_RUNNER:-}" "${CRABBOX_IMAGE_FS:-}"/{opt/actions-runner,home/runner,actions-runner}; do
		{ [ -x "$d/bin/Runner.Listener" ] && [ -x "$d/run.sh" ] && [[ $R/ != "$d/"* ]]; } || continue
		cp -a "$d" "$T/x" &&
			(cd "$T/x" && timeout 60 env -u ACTIONS_RUNNER_PRINT_LOG_TO_STDOUT DOTNET_SYSTEM_GLOBALIZATION_INVARIANT=1 ./bin/Runner.Listener --version) 2>/dev/null | grep -qxF "$V" &&
			rm -rf "$T/x/_diag" && touch "$T/x/.image" && echo "crabbox prefetch: runner $V in the image at $d" && break
		rm -rf "$T/x"
	done
	# .fetched: when the download began, when it ended, when the runner
	# was unpacked (ms of uptime: host.sh uptime_ms says why) and the
	# tarball's size, which host.sh install reports (how much of the
	# download the boot hid).
	if [ -d "$T/x" ] || { P=$(N) && curl -fsSL --retry 3 --connect-timeout 30 -o "$T/r.tgz" "$U" &&
		E=$(N) && [ "$(sha256sum <"$T/r.tgz" | cut -d' ' -f1)" = "$S" ] &&
		mkdir "$T/x" && tar -xzf "$T/r.tgz" -C "$T/x" &&
		echo "$P $E $(N) $(stat -c %s "$T/r.tgz")" >"$T/x/.fetched"; }; then
		touch "$T/x/.complete"
		chown -R "$O" "$T/x"
		rm -rf "$C"
		mv "$T/x" "$C"
		echo "crabbox prefetch: runner $V ($A) ready"
	else
		echo "crabbox prefetch: download, checksum or unpack failed; install will download"
	fi
	rm -rf "$T"
fi
# Dependencies, as root now rather than over SSH later (same check as
# host.sh deps_present).
if [ ! -f "$M" ]; then
	D=skipped
	L=$(ldconfig -p 2>/dev/null) || L=
	for x in libicuuc.so libssl.so libgssapi_krb5.so libz.so; do
		[[ $L == *"$x"* ]] || D=
	done
	if [ -z "$D" ] && [ -x "$C/bin/installdependencies.sh" ]; then
		"$C/bin/installdependencies.sh" && D=prefetched
	fi
	if [ -n "$D" ]; then
		echo "$D" >"$M"
		chown "$O" "$M"
	fi
	echo "crabbox prefetch: dependencies ${D:-not installed}"
fi
