#!/usr/bin/env bash
# Installs the Debian packages listed in scripts/apt-packages.txt that are missing, without
# starting any of their system services (tests run their own throw-away instances on loopback).
set -euo pipefail
cd "$(dirname "$0")/.."

# npm peers, pinned: @redocly/cli lints the OpenAPI document of transport/httpapi
# (TestAPIRedoclyLint). It needs Node.js >= 20.19; without npm the test fails under
# MSSANTE_REQUIRE_PEERS=1.
REDOCLY_VERSION=2.77.0
install_npm_peers() {
	if [ "$(redocly --version 2>/dev/null)" = "$REDOCLY_VERSION" ]; then
		echo "install-peers: @redocly/cli $REDOCLY_VERSION present"
		return 0
	fi
	if ! command -v npm >/dev/null; then
		echo "install-peers: npm missing: install Node.js >= 20.19 for @redocly/cli, or TestAPIRedoclyLint fails" >&2
		return 0
	fi
	local s=""
	if [ "$(id -u)" -ne 0 ] && command -v sudo >/dev/null; then s="sudo"; fi
	echo "install-peers: installing @redocly/cli@$REDOCLY_VERSION (npm)"
	$s npm install -g --no-fund --no-audit --loglevel=error "@redocly/cli@$REDOCLY_VERSION" >/dev/null
}
install_npm_peers

mapfile -t wanted < <(grep -v '^\s*#' scripts/apt-packages.txt | grep -v '^\s*$')
missing=()
for p in "${wanted[@]}"; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && { echo "install-peers: all ${#wanted[@]} packages present"; exit 0; }

sudo=""
if [ "$(id -u)" -ne 0 ]; then
	if command -v sudo >/dev/null; then sudo="sudo"; else
		echo "install-peers: missing ${missing[*]} and not root: install them, or the peer tests fail" >&2
		exit 1
	fi
fi
echo "install-peers: installing ${missing[*]}"
# Keep package scripts from starting daemons on the system ports.
policy=/usr/sbin/policy-rc.d
had_policy=0; [ -e "$policy" ] && had_policy=1
if [ $had_policy -eq 0 ]; then
	printf '#!/bin/sh\nexit 101\n' | $sudo tee "$policy" >/dev/null
	$sudo chmod +x "$policy"
fi
# An if, not `[ ] && rm`: a trap's last status becomes the script's, and a policy file the
# machine already had must leave a successful run successful.
cleanup() { if [ $had_policy -eq 0 ]; then $sudo rm -f "$policy"; fi; }
trap cleanup EXIT
$sudo debconf-set-selections <<'SEL'
postfix postfix/main_mailer_type select No configuration
slapd slapd/no_configuration boolean true
SEL
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -qq
$sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
echo "install-peers: done"
