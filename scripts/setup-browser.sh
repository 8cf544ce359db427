#!/usr/bin/env bash
# setup-browser.sh installs what the web UI's browser tests need: Debian's
# Chromium (/usr/bin/chromium) and playwright-core from npm (relay/ui/e2e).
# Idempotent: it installs nothing that is already there.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
sudo=""
if [ "$(id -u)" -ne 0 ]; then sudo="sudo"; fi

if [ ! -x /usr/bin/chromium ]; then
	# apt-get update only when the package lists do not know chromium yet.
	if ! apt-cache show chromium >/dev/null 2>&1; then
		$sudo apt-get update
	fi
	DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y --no-install-recommends chromium fonts-dejavu-core
fi

if ! command -v node >/dev/null 2>&1; then
	echo "setup-browser: node is missing (apt-get install nodejs npm)" >&2
	exit 1
fi

e2e="$root/relay/ui/e2e"
want="$(node -p "require('$e2e/package-lock.json').packages['node_modules/playwright-core'].version")"
have=""
if [ -f "$e2e/node_modules/playwright-core/package.json" ]; then
	have="$(node -p "require('$e2e/node_modules/playwright-core/package.json').version")"
fi
if [ "$want" != "$have" ]; then
	(cd "$e2e" && npm ci --no-audit --no-fund)
fi
echo "setup-browser: chromium $(/usr/bin/chromium --version 2>/dev/null | awk '{print $2}'), playwright-core $want"
