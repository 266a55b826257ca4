#!/usr/bin/env bash
# deps.sh: installs the Debian 12 packages tern needs that are missing.
#   tools/deps.sh build   what building and running ternd needs
#   tools/deps.sh test    that, plus what the test suite and fuzzers need
# Packages already installed are skipped, so a second run costs nothing.
set -euo pipefail

build_pkgs=(cmake pkg-config gcc make libuv1-dev libsodium-dev libsqlite3-dev
	libc-ares-dev libsignal-protocol-c-dev libssl-dev libncurses-dev
	libinih-dev)
test_pkgs=(dnsmasq-base python3 python3-dissononce clang libclang-rt-14-dev
	tmux iproute2)

want=("${build_pkgs[@]}")
if [ "${1:-build}" = test ]; then
	want+=("${test_pkgs[@]}")
fi

missing=()
for p in "${want[@]}"; do
	if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null |
		grep -q '^install ok installed$'; then
		missing+=("$p")
	fi
done
[ ${#missing[@]} -eq 0 ] && exit 0

echo "tern: installing ${missing[*]}" >&2
if [ "$(id -u)" -ne 0 ]; then
	echo "tern: run as root to install packages (or install them yourself)" >&2
	exit 1
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
